"""Measured latency per prompt as the contest measures it (NxDI `benchmark_sampling` + `generate_report`):
warm-up, then N timed end-to-end generations; p50/p99 of the end-to-end times; throughput = runs x
sequence length x batch / total time; plus TTFT (context encoding and the first token) and the mean time
per decode step. On the CPU these are CPU times, not Trainium times."""
from __future__ import annotations

import json
import statistics

import numpy as np

from pipeline.job import Job, Prompt
from pipeline.progress import Progress
from pipeline.stages.base import StageResult, register_stage

HEADLINE = ("e2e_p50_ms", "e2e_p99_ms", "throughput_tok_s", "ttft_ms", "tpot_ms")


def measure(job: Job, kernels, label: str) -> dict[int, dict[str, float]]:
    """Per prompt index: e2e_p50_ms, e2e_p99_ms, throughput_tok_s, ttft_ms, tpot_ms."""
    settings = job.conf.latency
    model = job.model(kernels)
    total = sum((settings.warmup + settings.runs) * p.max_new_tokens for p in job.prompts)
    progress = Progress(label, total)
    return {p.index: _measure_prompt(job, model, p, progress) for p in job.prompts}


def _measure_prompt(job: Job, model, prompt: Prompt, progress: Progress) -> dict[str, float]:
    settings = job.conf.latency
    for _ in range(settings.warmup):
        job.generate(model, prompt.ids, prompt.max_new_tokens, progress=progress)
    runs = [job.generate(model, prompt.ids, prompt.max_new_tokens, progress=progress) for _ in range(settings.runs)]
    e2e = np.array([r.e2e_s for r in runs]) * 1000
    steps = [s for r in runs for s in r.step_s]
    return {
        "e2e_p50_ms": float(np.percentile(e2e, 50)),
        "e2e_p99_ms": float(np.percentile(e2e, 99)),
        "throughput_tok_s": settings.runs * prompt.total_length * job.conf.workload.batch_size / (e2e.sum() / 1000),
        "ttft_ms": statistics.fmean(r.ttft_s for r in runs) * 1000,
        "tpot_ms": statistics.fmean(steps) * 1000 if steps else 0.0,
    }


def headline(per_prompt: dict[int, dict[str, float]]) -> dict[str, float]:
    """Means over prompts (the per-prompt values are in the stage run)."""
    return {k: statistics.fmean(m[k] for m in per_prompt.values()) for k in HEADLINE}


@register_stage("latency")
class LatencyStage:
    def run(self, job: Job) -> StageResult:
        per_prompt = measure(job, job.kernels, "latency")
        (job.stage_dir(self.name) / "latency.json").write_text(json.dumps(per_prompt, indent=2))
        metrics = {f"p{i}.{k}": v for i, m in per_prompt.items() for k, v in m.items()}
        head = headline(per_prompt)
        return StageResult(
            metrics={**metrics, **head},
            headline={**head, **metrics},
            summary=(
                f"CPU: e2e p99 {head['e2e_p99_ms']:.0f} ms, TTFT {head['ttft_ms']:.1f} ms, "
                f"{head['tpot_ms']:.1f} ms/token, {head['throughput_tok_s']:.1f} tok/s (mean of {len(per_prompt)} prompts)"
            ),
            data=per_prompt,
        )
