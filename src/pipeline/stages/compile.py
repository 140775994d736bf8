"""CPU compile: resolve every kernel slot, check each variant serves the workload's per-rank shapes in the
phases it runs, and record what would run (and what falls back to the baseline)."""
from __future__ import annotations

import dataclasses
import json

import kernels
from kernels.types import Phase
from pipeline.job import Job
from pipeline.stages.base import StageResult, register_stage


class UnsupportedShapes(RuntimeError):
    """A selected variant cannot serve the workload; the message lists every reason."""


def plan(job: Job) -> dict:
    shapes = job.layer_shapes()
    layers = {}
    for layer, slot in job.kernels.slots.items():
        layers[layer] = {
            "variant": slot.variant.name,
            "params": dataclasses.asdict(slot.params),
            "runs_in": {p.value: slot.resolve(p)[0].name for p in Phase},
            "nki": slot.variant.nki is not None,
            "summary": slot.variant.summary,
        }
    return {
        "executor": job.conf.platform.executor,
        "target": job.conf.platform.target,
        "tp_degree": job.tp.degree,
        "per_rank_shapes": {k: (str(v) if k == "dtype" else v) for k, v in dataclasses.asdict(shapes).items()},
        "context_buckets": list(job.context_buckets),
        "kv_buckets": list(job.kv_buckets),
        "prompts": [{"index": p.index, "tokens": len(p.ids), "new_tokens": p.max_new_tokens} for p in job.prompts],
        "layers": layers,
    }


def check_shapes(job: Job) -> None:
    shapes = job.layer_shapes()
    problems = [
        f"kernel.{layer}={slot.variant.name}: {problem}"
        for layer, slot in job.kernels.slots.items()
        for problem in slot.variant.problems(shapes, slot.params)
    ]
    if problems:
        raise UnsupportedShapes("; ".join(problems))


@register_stage("compile")
class CompileStage:
    def run(self, job: Job) -> StageResult:
        check_shapes(job)
        record = plan(job)
        (job.stage_dir(self.name) / "plan.json").write_text(json.dumps(record, indent=2))
        fallbacks = job.kernels.fallbacks()
        nki_layers = [layer for layer, entry in record["layers"].items() if entry["nki"]]
        tags = {"fallbacks": ";".join(f"{k}:{','.join(v)}->baseline" for k, v in fallbacks.items()) or "none"}
        return StageResult(
            metrics={"nki_variants": len(nki_layers), "layers_falling_back": len(fallbacks)},
            tags=tags,
            summary=(
                f"{len(kernels.LAYERS)} slots resolved, NKI in {', '.join(nki_layers) or 'none'}; "
                f"shapes ok; fallbacks: {tags['fallbacks']}"
            ),
            data=record,
        )
