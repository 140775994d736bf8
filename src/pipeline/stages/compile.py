"""CPU compile: resolve every kernel slot, check each variant serves the workload's per-rank shapes,
trace every NKI kernel through the CPU interpreter at those shapes (hardware limits are checked there;
a violation fails the stage with the kernel's source line), compare each against its torch reference,
and count MACs for the NKI MAC ratio the contest score uses."""
from __future__ import annotations

import copy
import dataclasses
import json

from kernels.examples import example_call
from kernels.executors import interpret
from kernels.macs import baseline_macs
from kernels.registry import max_relative_error
from kernels.slots import CALLS_PER_LAYER, CALLS_PER_MODEL, KernelSlot
from kernels.types import Phase
from pipeline.config.validate import ConfigError
from pipeline.job import Job
from pipeline.stages.base import StageResult, register_stage

class UnsupportedShapes(ConfigError):
    """A selected variant cannot serve the workload; the message lists every reason (checked before any
    run is opened, like every other config error)."""


class KernelMismatch(RuntimeError):
    """An NKI kernel disagrees with its torch reference by more than the variant's declared tolerance."""


def check_shapes(job: Job) -> None:
    shapes = job.layer_shapes()
    problems = [
        f"kernel.{layer}={slot.variant.name}: {problem}"
        for layer, slot in job.kernels.slots.items()
        for problem in slot.variant.problems(shapes, slot.params)
    ]
    if problems:
        raise UnsupportedShapes("; ".join(problems))


def plan(job: Job) -> dict:
    shapes = job.layer_shapes()
    layers = {
        layer: {
            "variant": slot.variant.name,
            "params": dataclasses.asdict(slot.params),
            "runs_in": {p.value: slot.resolve(p)[0].name for p in Phase},
            "nki": slot.variant.nki is not None,
            "summary": slot.variant.summary,
        }
        for layer, slot in job.kernels.slots.items()
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


def trace_kernel(job: Job, layer: str, slot: KernelSlot, phase: Phase) -> dict:
    """Run one NKI variant on example inputs through the interpreter; its traces and its error against
    the torch reference on the same inputs."""
    variant = slot.variant
    call = example_call(layer, phase, job.layer_shapes(), transposed=variant.transpose_weights)
    untouched = copy.deepcopy(call.args)  # kernels may write their inputs (the KV cache) in place
    actual, traces = interpret(variant, slot.params, call.args, job.conf.platform.target)
    expected = variant.reference(*untouched, params=slot.params)
    return {
        "layer": layer, "variant": variant.name, "phase": phase.value, "shapes": call.label,
        "launches": len(traces),
        "instructions": sum(len(t) for t in traces),
        "macs": sum(t.total_macs for t in traces),
        "dma_bytes": sum(t.total_dma_bytes for t in traces),
        "max_relative_error_vs_reference": max_relative_error(actual, expected),
        "traces": traces,
    }


def mac_ratio(job: Job, traced: dict[tuple[str, str], dict]) -> tuple[float, dict]:
    """NKI MACs / all MACs over one context-encoding and one token-generation graph (rank 0, bucket 0)."""
    shapes, layers = job.layer_shapes(), job.dims.num_hidden_layers
    nki = torch_macs = 0
    for phase in Phase:
        for layer, slot in job.kernels.slots.items():
            count = CALLS_PER_LAYER.get(layer, 0) * layers + CALLS_PER_MODEL.get(layer, 0)
            entry = traced.get((layer, phase.value))
            if entry is not None:
                nki += count * entry["macs"]
            else:
                torch_macs += count * baseline_macs(layer, phase, shapes)
    total = nki + torch_macs
    return (nki / total if total else 0.0), {"nki_macs": nki, "torch_macs": torch_macs}


@register_stage("compile")
class CompileStage:
    def run(self, job: Job) -> StageResult:
        check_shapes(job)
        out = job.stage_dir(self.name)
        record = plan(job)
        traced, traces_by_kernel = {}, {}
        for layer, slot in job.kernels.slots.items():
            if slot.variant.nki is None:
                continue
            for phase in sorted(slot.variant.phases, key=lambda p: p.value):
                entry = trace_kernel(job, layer, slot, phase)
                traces = entry.pop("traces")
                for i, trace in enumerate(traces):
                    (out / f"trace_{layer}_{phase.value}_{i}.json").write_text(trace.to_json())
                traced[(layer, phase.value)] = entry
                traces_by_kernel[(layer, phase.value)] = traces
                if entry["max_relative_error_vs_reference"] > slot.variant.rtol:
                    raise KernelMismatch(
                        f"kernel.{layer}={slot.variant.name} ({phase.value}, {entry['shapes']}): max error "
                        f"{entry['max_relative_error_vs_reference']:.3g} of max|reference| exceeds its rtol "
                        f"{slot.variant.rtol}"
                    )
        ratio, counts = mac_ratio(job, traced)
        record |= {"nki_kernels": list(traced.values()), "nki_mac_ratio": ratio, **counts}
        (out / "plan.json").write_text(json.dumps(record, indent=2))
        fallbacks = job.kernels.fallbacks()
        tags = {"fallbacks": ";".join(f"{k}:{','.join(v)}->baseline" for k, v in fallbacks.items()) or "none"}
        metrics = {"nki_mac_ratio": ratio, "nki_kernels_traced": len(traced)}
        for (layer, phase), entry in traced.items():
            prefix = f"{layer}.{phase}"
            metrics |= {f"{prefix}.instructions": entry["instructions"], f"{prefix}.macs": entry["macs"],
                        f"{prefix}.max_rel_err": entry["max_relative_error_vs_reference"]}
        nki_layers = sorted({layer for layer, _ in traced})
        return StageResult(
            metrics=metrics,
            headline={"nki_mac_ratio": ratio},
            tags=tags,
            summary=(
                f"NKI in {', '.join(nki_layers) or 'no layer'} ({len(traced)} kernel traces, hardware checks "
                f"passed); NKI MAC ratio {ratio:.3f}; fallbacks: {tags['fallbacks']}"
            ),
            data={**record, "traces": traces_by_kernel},  # traces for the estimates of later stages
        )
