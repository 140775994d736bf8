"""Device profile of the job's build: `neuron-profile capture` of the rank-0, bucket-0 NEFF of the
context-encoding and the token-generation sub-model (collectives across the TP workers), then
`neuron-profile view --output-format summary-json` (and `json`, every event) per capture: the NTFFs, NEFFs
and summaries as artifacts, each summary's numeric fields as metrics `<cte|tkg>.<field>`.

Not done yet: per-kernel times from the event JSON under the cost model's metric names (`est.<layer>.<phase>
.time_us` beside a measured `<layer>.<phase>.time_us`): the event schema has to be read on a device first."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from pipeline.platforms.neuron.hlo import SUBMODELS
from pipeline.platforms.neuron.session import CANDIDATE
from pipeline.stages.base import StageResult

SHORT = {"context_encoding_model": "cte", "token_generation_model": "tkg"}


def profile_commands(tool: str, neff: Path, out: Path, tp_degree: int) -> list[list[str]]:
    """capture, summary, full JSON (SDK tools/profiler/neuron-profile-user-guide.rst)."""
    ntff = out / "profile.ntff"
    workers = ["--collectives-workers-per-node", str(tp_degree)] if tp_degree > 1 else []
    return [
        [tool, "capture", "-n", str(neff), *workers, "-s", str(ntff)],
        [tool, "view", "--output-format", "summary-json", "--output-file", str(out / "summary.json"),
         "-n", str(neff), "-s", str(_first_ntff(out, ntff))],
        [tool, "view", "--output-format", "json", "--output-file", str(out / "profile.json"),
         "-n", str(neff), "-s", str(_first_ntff(out, ntff))],
    ]


def _first_ntff(out: Path, default: Path) -> Path:
    """With collectives the capture writes profile_rank_<i>.ntff; rank 0 is the one the HLO count reads."""
    ranked = out / "profile_rank_0.ntff"
    return ranked if ranked.exists() else default


def numeric_fields(summary, prefix: str) -> dict[str, float]:
    found = {}
    if isinstance(summary, list):
        summary = summary[0] if summary else {}
    for key, value in (summary or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            found[f"{prefix}.{key}"] = float(value)
        elif isinstance(value, dict):
            found |= numeric_fields(value, f"{prefix}.{key}")
    return found


def run(job) -> StageResult:
    build = job.platform.session(job).build(CANDIDATE)
    tool = job.conf.platform.neuron.profile_tool
    if shutil.which(tool) is None:
        raise RuntimeError(f"{tool} not found (aws-neuronx-tools installs it to /opt/aws/neuron/bin)")
    out_root = job.stage_dir("profile")
    metrics = {}
    for tag in SUBMODELS:
        neffs = sorted((build.dirs.work / tag / "_tp0_bk0").glob("*.neff"))
        if not neffs:
            raise FileNotFoundError(f"no NEFF in {build.dirs.work / tag / '_tp0_bk0'}")
        out = out_root / SHORT[tag]
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy2(neffs[0], out / neffs[0].name)
        for command in profile_commands(tool, neffs[0], out, job.conf.parallel.tp_degree):
            with (out / "neuron-profile.log").open("a") as log:
                subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT)
        metrics |= numeric_fields(json.loads((out / "summary.json").read_text()), SHORT[tag])
    return StageResult(
        metrics=metrics,
        summary=f"{job.conf.platform.name}: neuron-profile of the CTE and TKG NEFFs (rank 0, bucket 0); "
                f"{len(metrics)} summary figures; per-kernel times not extracted yet",
    )
