"""Device compile: the NxDI baseline, then the job's kernels (one build when they are the baseline), each into
its keyed directory or reused from it (session.py, cache.py); HLOs, NEFF metadata, the compile log and
the neuron config as artifacts per build; compile time, cache hit and retries as metrics; the contest's
NKI FLOP ratio from the job's own HLOs (hlo.py), under the name the CPU home gives its MAC ratio."""
from __future__ import annotations

import json

from pipeline.platforms.neuron.artifacts import write_build_artifacts
from pipeline.platforms.neuron.hlo import count_macs, find_hlos, nki_flop_ratio, parse_hlo
from pipeline.platforms.neuron.session import BASELINE, CANDIDATE
from pipeline.stages.base import StageResult


def hlo_ratio(work_dir) -> tuple[float, dict]:
    counts = [count_macs(parse_hlo(path)) for path in find_hlos(work_dir)]
    ratio = nki_flop_ratio(counts)
    return ratio, {"nki_macs": sum(c.nki for c in counts), "total_macs": sum(c.total for c in counts)}


def run(job) -> StageResult:
    session = job.platform.session(job)
    out = job.stage_dir("compile")
    metrics, lines, record = {}, [], {}
    for build in session.all_builds():
        counts = write_build_artifacts(build.dirs, out / build.role)
        metrics |= {f"{build.role}.compile_s": build.compile_s, f"{build.role}.cache_hit": float(build.cache_hit),
                    f"{build.role}.attempts": build.attempts, f"{build.role}.purged_cache_entries": len(build.purged),
                    **{f"{build.role}.{k}": v for k, v in counts.items()}}
        record[build.role] = {"key": build.key, "dir": str(build.dirs.root), "choices": build.choices,
                              "cache_hit": build.cache_hit, "compile_s": build.compile_s, "purged": build.purged}
        lines.append(f"{build.role} {'cached' if build.cache_hit else f'{build.compile_s:.0f} s'}")
    candidate = session.build(CANDIDATE)
    tags = {f"compile.{role}_key": session.build(role).key for role in (BASELINE, CANDIDATE)}
    ratio, macs = hlo_ratio(candidate.dirs.work)
    record |= {"nki_mac_ratio": ratio, **macs}
    (out / "builds.json").write_text(json.dumps(record, indent=2))
    metrics |= {"nki_mac_ratio": ratio, **macs}
    return StageResult(
        metrics=metrics,
        headline={"nki_mac_ratio": ratio, "compile_s": candidate.compile_s},
        tags=tags,
        summary=f"{job.conf.platform.name}: {', '.join(lines)}; NKI FLOP ratio {ratio:.4f} (contest count)",
        data=record,
    )
