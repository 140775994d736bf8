"""What a build leaves for MLflow: rank-0 HLOs of every bucket, NEFF metadata, the compile log and the
neuron config."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from pipeline.platforms.neuron.cache import BuildDirs
from pipeline.platforms.neuron.hlo import SUBMODELS


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def neff_metadata(work: Path) -> list[dict]:
    return [{"path": str(p.relative_to(work)), "bytes": p.stat().st_size, "sha256": _sha256(p)}
            for p in sorted(work.rglob("*.neff"))]


def write_build_artifacts(dirs: BuildDirs, out: Path) -> dict:
    """Copy into `out`; returns counts for metrics."""
    out.mkdir(parents=True, exist_ok=True)
    hlos = 0
    for tag in SUBMODELS:
        for bucket in sorted((dirs.work / tag).glob("_tp0_bk*")):
            for hlo in bucket.iterdir():
                if "hlo_module" in hlo.name.lower():
                    target = out / "hlo" / tag / bucket.name
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(hlo, target / hlo.name)
                    hlos += 1
    neffs = neff_metadata(dirs.work) if dirs.work.is_dir() else []
    (out / "neffs.json").write_text(json.dumps(neffs, indent=2))
    for source in (dirs.log, dirs.traced / "neuron_config.json"):
        if source.is_file():
            shutil.copy2(source, out / source.name)
    return {"hlo_files": hlos, "neffs": len(neffs), "neff_bytes": sum(n["bytes"] for n in neffs)}
