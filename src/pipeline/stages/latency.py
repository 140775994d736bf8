"""Measured latency per prompt as the contest measures it (NxDI `benchmark_sampling` + `generate_report`):
warm-up, then N timed end-to-end generations; p50/p99 of the end-to-end times; throughput = runs x
sequence length x batch / total time; plus TTFT (context encoding and the first token) and the mean time
per decode step. On the CPU these are CPU times, not Trainium times.

Next to them, the model-level Trainium ESTIMATE of the same config (pipeline.estimate): `est.*` metrics (TTFT,
time per token, e2e, throughput, the weight-bytes floor and the contest score against the contest's measured
baseline for the contest setup, else against this config's all-baseline estimate), and a breakdown per phase
and op (est_breakdown.json, est_breakdown.png)."""
from __future__ import annotations

import json
import statistics

import numpy as np

from pipeline.estimate import JobEstimate, estimate_job, job_tracer, nki_kernels
from pipeline.estimate.breakdown import write_breakdown
from pipeline.estimate.job_estimate import SCORE_KEYS
from pipeline.estimate.settings import EstimateSettings
from pipeline.job import Job, Prompt
from pipeline.progress import Progress
from pipeline.stages.base import StageResult, register_stage
from pipeline.stages.compile import mac_ratio

HEADLINE = ("e2e_p50_ms", "e2e_p99_ms", "throughput_tok_s", "ttft_ms", "tpot_ms")
RUNS_KEY = "e2e_runs_ms"


def measure(job: Job, kernels, label: str) -> dict[int, dict]:
    """Per prompt index: e2e_p50_ms, e2e_p99_ms, throughput_tok_s, ttft_ms, tpot_ms, and RUNS_KEY (each timed
    run's e2e, for the score's spread over repeats)."""
    settings = job.conf.latency
    model = job.model(kernels)
    total = sum((settings.warmup + settings.runs) * p.max_new_tokens for p in job.prompts)
    progress = Progress(label, total)
    return {p.index: _measure_prompt(job, model, p, progress) for p in job.prompts}


def _measure_prompt(job: Job, model, prompt: Prompt, progress: Progress) -> dict:
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
        RUNS_KEY: e2e.tolist(),
    }


def headline(per_prompt: dict[int, dict[str, float]]) -> dict[str, float]:
    """Means over prompts (the per-prompt values are in the stage run)."""
    return {k: statistics.fmean(m[k] for m in per_prompt.values()) for k in HEADLINE}


def nki_ratio(job: Job) -> float:
    """The compile stage's NKI MAC ratio, or the same count from traces made here when it did not run."""
    compiled = job.results.get("compile")
    if compiled:
        return float(compiled.data["nki_mac_ratio"])
    tracer = job_tracer(job, EstimateSettings.from_conf(job.conf, job.dims.num_hidden_layers))
    traced = {(k.layer, k.phase.value): {"macs": sum(t.total_macs for t in tracer.traces(k.key, k.variant, k.params))}
              for k in nki_kernels(job)}
    return mac_ratio(job, traced)[0]


def estimate_metrics(estimate: JobEstimate) -> tuple[dict[str, float], dict[str, float]]:
    """(stage-run metrics, headline): per prompt in the stage run, means over prompts on both."""
    ours, baseline, scores = estimate.ours, estimate.baseline, estimate.scores
    versus_baseline = estimate.scores_vs_baseline_estimate
    per_prompt = {f"est.p{p.index}.{k}": v for p in ours.prompts for k, v in p.metrics().items()}
    per_prompt |= {f"est.p{i}.score": s for i, s in scores.items()}
    head = {f"est.{k}": ours.mean(k) for k in SCORE_KEYS}
    head |= {"est.score": statistics.fmean(scores.values()),
             "est.tkg_step_ms": ours.mean("tpot_ms") - estimate.host_ms, "est.host_ms": estimate.host_ms,
             **{f"est.{k}": v for k, v in estimate.bands().items()},
             "est.score_vs_baseline_estimate": statistics.fmean(versus_baseline.values()),
             **{f"est.baseline.{k}": baseline.mean(k) for k in SCORE_KEYS}}
    return {**per_prompt, **head}, head


@register_stage("latency")
class LatencyStage:
    def run(self, job: Job) -> StageResult:
        out = job.stage_dir(self.name)
        per_prompt = measure(job, job.kernels, "latency")
        (out / "latency.json").write_text(json.dumps(per_prompt, indent=2))
        metrics = {f"p{i}.{k}": m[k] for i, m in per_prompt.items() for k in HEADLINE}
        head = headline(per_prompt)
        estimate = estimate_job(job, nki_ratio(job))
        write_breakdown(estimate, job.kernels.choices(), out)
        est_metrics, est_head = estimate_metrics(estimate)
        s = estimate.settings
        return StageResult(
            metrics={**metrics, **head, **est_metrics},
            headline={**head, **metrics, **est_head},
            tags={"est.score_reference": estimate.reference, "est.accuracy": estimate.accuracy_source,
                  "est.target": s.target, "est.layers": str(s.layers), "est.lnc": str(s.lnc),
                  "est.calibration": s.calibration},
            summary=(
                f"CPU: e2e p99 {head['e2e_p99_ms']:.0f} ms, TTFT {head['ttft_ms']:.1f} ms, "
                f"{head['tpot_ms']:.1f} ms/token, {head['throughput_tok_s']:.1f} tok/s (mean of {len(per_prompt)} prompts)"
                f" | {estimate.summary()}"
            ),
            data=per_prompt,
        )
