"""Where the estimated time goes, per phase and op over the workload's prompts: a JSON artifact and a stacked
bar chart (this config next to the all-baseline one). Every figure is a cost-model estimate."""
from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from pathlib import Path

from kernels.types import Phase
from pipeline.estimate.job_estimate import JobEstimate, KernelSetEstimate
from pipeline.estimate.step import StepEstimate

OPS = ("embedding", "norm", "attention", "router", "experts", "lm_head", "all_reduce", "lm_head_gather", "runtime",
       "host")
PHASE_TITLES = {Phase.CONTEXT: "context encoding (per call)", Phase.TOKEN: "decode (per step)"}


def weighted_steps(kernel_set: KernelSetEstimate, phase: Phase) -> list[tuple[StepEstimate, int]]:
    """The model calls of `phase` over all prompts, as (step, times it runs)."""
    estimator = kernel_set.estimator
    if phase is Phase.CONTEXT:
        return [(estimator.step(phase, p.context_bucket), 1) for p in kernel_set.prompts]
    return [(estimator.step(phase, kv), n) for p in kernel_set.prompts for kv, n in p.steps.items()]


def phase_breakdown(kernel_set: KernelSetEstimate, phase: Phase) -> dict:
    """Mean per model call of `phase`: each op's time, floor and share, the total and the weight floor."""
    steps = weighted_steps(kernel_set, phase)
    calls = sum(n for _, n in steps)
    if not calls:
        return {"calls": 0, "time_ms": 0.0, "weight_floor_ms": 0.0, "ops": []}
    time, floor, source, variants = defaultdict(float), defaultdict(float), {}, defaultdict(set)
    for step, n in steps:
        for part in step.parts:
            time[part.name] += n * step.count(part) * part.time_ns / calls
            floor[part.name] += n * step.count(part) * part.floor_ns / calls
            source[part.name] = part.source
            variants[part.name].add(part.variant)
    total = sum(time.values())
    ops = [{"op": op, "source": source[op], "variants": sorted(variants[op]), "time_ms": time[op] / 1e6,
            "floor_ms": floor[op] / 1e6, "share": time[op] / total} for op in OPS if op in time]
    return {"calls": calls, "time_ms": total / 1e6,
            "weight_floor_ms": sum(s.weight_floor_ns * n for s, n in steps) / calls / 1e6, "ops": ops}


def breakdown(estimate: JobEstimate, kernels: dict[str, str]) -> dict:
    scores, versus_baseline = estimate.scores, estimate.scores_vs_baseline_estimate
    prompts = [{"index": p.index, "prompt_tokens": p.prompt_tokens, "new_tokens": p.new_tokens,
                "context_bucket": p.context_bucket, "decode_steps_per_kv_bucket": p.steps, **p.metrics(),
                "score": scores[p.index], "score_vs_baseline_estimate": versus_baseline[p.index]}
               for p in estimate.ours.prompts]
    return {
        "what": "Trainium cost-model ESTIMATE of one TP rank (ranks run in lockstep), not a measurement",
        "settings": dataclasses.asdict(estimate.settings), "kernels": kernels,
        "phases": {ph.value: phase_breakdown(estimate.ours, ph) for ph in Phase},
        "all_baseline_phases": {ph.value: phase_breakdown(estimate.baseline, ph) for ph in Phase},
        "prompts": prompts, "score_reference": estimate.reference, "accuracy": estimate.accuracy_source,
        "nki_mac_ratio": estimate.nki_ratio, "contest_measured_baseline_ms_per_token": estimate.measured_ms_per_token,
    }


def write_breakdown(estimate: JobEstimate, kernels: dict[str, str], out_dir: Path) -> dict:
    """Write est_breakdown.json and est_breakdown.png into out_dir; return the JSON body."""
    body = breakdown(estimate, kernels)
    (out_dir / "est_breakdown.json").write_text(json.dumps(body, indent=2))
    plot_breakdown(body, estimate, out_dir / "est_breakdown.png")
    return body


def plot_breakdown(body: dict, estimate: JobEstimate, path: Path) -> None:
    from nki_cpu.cost.plots import agg_figure

    s = estimate.settings
    figure = agg_figure((12, 5))
    for column, phase in enumerate(Phase):
        axes = figure.add_subplot(1, 2, column + 1)
        bars = {"this config": body["phases"][phase.value], "all baseline": body["all_baseline_phases"][phase.value]}
        for x, data in enumerate(bars.values()):
            bottom = 0.0
            for op in data["ops"]:
                axes.bar(x, op["time_ms"], bottom=bottom, color=f"C{OPS.index(op['op'])}",
                         label=op["op"] if x == 0 else None)
                bottom += op["time_ms"]
            axes.hlines(data["weight_floor_ms"], x - 0.4, x + 0.4, colors="black", linestyles="--",
                        label="weight-bytes floor" if x == 0 else None)
        if phase is Phase.TOKEN and estimate.measured_ms_per_token:
            axes.axhline(estimate.measured_ms_per_token, color="red", linestyle=":",
                         label=f"contest baseline, measured by the contest ({estimate.measured_ms_per_token} ms)")
        axes.set_xticks(range(len(bars)), list(bars))
        axes.set_ylabel("ms (estimated)")
        axes.set_title(f"est. {PHASE_TITLES[phase]}", fontsize=10)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    figure.suptitle(f"Trainium ESTIMATE: {s.target}, LNC={s.lnc}, {s.layers} layers, mean over the workload's "
                    f"prompts", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
