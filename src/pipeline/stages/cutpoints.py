"""The cut-point map (pipeline.evaluation.cutpoints) of the compiled baseline at the workload's shapes, MPA
on and off: `cutpoints.json` (one record per block, boundary, token count and MPA setting), `cutpoints.md`
(the table, with R2's published shares beside ours) and per-boundary metrics."""
from __future__ import annotations

import json
import logging

from pipeline.evaluation.cutpoints import as_rows, measure, table
from pipeline.job import Job
from pipeline.stages.base import StageResult, register_stage

log = logging.getLogger(__name__)


def token_counts(job: Job) -> list[int]:
    """`cutpoints.tokens`, else every context bucket the workload uses and one decode token."""
    return list(job.conf.cutpoints.tokens or [*job.context_buckets, 1])


@register_stage("cutpoints")
class CutpointsStage:
    def run(self, job: Job) -> StageResult:
        settings = job.conf.cutpoints
        if not 0 <= settings.layer < job.dims.num_hidden_layers:
            raise ValueError(f"cutpoints.layer={settings.layer}: the model has {job.dims.num_hidden_layers} layers")
        model = job.model(job.baseline_kernels)
        ids = list(job.prompts[0].ids)
        records = []
        for mpa in (True, False):
            for tokens in token_counts(job):
                found = measure(model, lambda n: job.compiled_kernels(n, baseline=True), job.numerics(mpa), ids,
                                tokens, settings.layer, list(job.buckets), settings.lm_head_rows)
                log.info("cutpoints mpa=%s tokens=%d: %d lossy of %d", mpa, tokens,
                         sum(r.verdict == "lossy" for r in found), len(found))
                records += found
        out = job.stage_dir(self.name)
        (out / "cutpoints.json").write_text(json.dumps(as_rows(records), indent=2))
        (out / "cutpoints.md").write_text(table(records))
        metrics = {}
        for r in records:
            key = f"{'mpa' if r.mpa else 'no_mpa'}.t{r.tokens}.{r.point}"
            metrics[f"{key}.mismatch_pct"] = r.mismatch_pct
            metrics[f"{key}.max_divergence"] = r.max_divergence
        free = sorted({r.boundary for r in records if r.mpa and r.verdict == "free"})
        return StageResult(
            metrics=metrics,
            headline={"lossy_mpa": float(sum(r.verdict == "lossy" for r in records if r.mpa)),
                      "lossy_no_mpa": float(sum(r.verdict == "lossy" for r in records if not r.mpa))},
            summary=f"{len(records)} cut points measured (layer {settings.layer}); free with MPA: {', '.join(free)}",
            data=records,
        )
