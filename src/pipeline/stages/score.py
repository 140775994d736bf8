"""The contest score per prompt against a baseline: accuracy x (base latency / latency) x (throughput /
base throughput) x (1 + NKI MAC ratio), with latency = end-to-end p99 and throughput as NxDI reports it.
The headline is the contest's figure, the sum over prompts (nki-moe main.py `evaluate_all`: total_score), and
the mean per prompt (1.0 = the baseline): `score.contest` / `score.contest_mean` on the device.

The baseline is the same workload with every kernel `baseline`: this job's own latency if it is the
baseline, else the newest FINISHED all-baseline run in MLflow with the same workload key that logged the
latencies needed, else measured here.
On the CPU the latencies are CPU times of the PyTorch model (and of the NKI interpreter), so the figure says
how the CPU model changed, not Trainium: it is named `score.cpu_time` (sum) / `score.cpu_time_mean`, logged with
its spread over the latency stage's repeated runs, and flagged when it cannot mean anything (`noise_warning`).
The CPU headline score is the Trainium estimate, `latency.est.score`.
"""
from __future__ import annotations

import json
import logging
import statistics

from pipeline.estimate import nki_kernels
from pipeline.evaluation.contest_score import contest_score
from pipeline.identity import all_baseline, workload_key
from pipeline.job import Job
from pipeline.stages.base import StageResult, register_stage
from pipeline.stages.latency import RUNS_KEY, measure

log = logging.getLogger(__name__)

CPU_SCORE = "cpu_time"  # the CPU's measured score: CPU times, not kernel quality
MAX_SPREAD = 0.2  # (max - min) / median of the per-repeat CPU-time scores above this: load noise, not a result


def nki_mac_ratio(job: Job) -> float:
    """NKI MACs over all MACs of the model; 0 while every layer runs torch."""
    compiled = job.results.get("compile")
    return float(compiled.data["nki_mac_ratio"]) if compiled else 0.0


BASELINE_KEYS = ("e2e_p99_ms", "throughput_tok_s")  # what the contest formula takes from the baseline


def _lookup_baseline(job: Job) -> tuple[dict[int, dict[str, float]], str] | None:
    """The newest FINISHED all-baseline job run of this workload key that logged every latency the score
    needs (a newer one without them, e.g. `stages=[compile]`, does not hide an older complete one)."""
    store = job.tracking
    needed = [f"latency.p{p.index}.{key}" for p in job.prompts for key in BASELINE_KEYS]
    runs = store.client.search_runs(
        [store.experiment_id],
        " and ".join([f"tags.workload_key = '{workload_key(job.conf)}'", "tags.all_baseline = 'true'",
                      "attributes.status = 'FINISHED'", *(f"metrics.`{k}` >= 0" for k in needed)]),
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        return None
    metrics = runs[0].data.metrics
    per_prompt = {p.index: {key: metrics[f"latency.p{p.index}.{key}"] for key in BASELINE_KEYS} for p in job.prompts}
    return per_prompt, f"run {runs[0].info.run_id}"


def baseline_latency(job: Job, own: dict[int, dict[str, float]]) -> tuple[dict[int, dict[str, float]], str]:
    if all_baseline(job.conf):
        return own, "this run"
    if job.conf.score.baseline == "lookup":
        found = _lookup_baseline(job)
        if found:
            return found
    return measure(job, job.baseline_kernels, "score: baseline latency"), "measured in this job"


@register_stage("score")
class ScoreStage:
    requires = ("latency",)

    def run(self, job: Job) -> StageResult:
        latency = job.results["latency"]
        base, source = baseline_latency(job, latency.data)
        ratio = nki_mac_ratio(job)
        result = score_prompts(job, latency.data, base, source, ratio, "CPU-time", " (accuracy not checked: assumed "
                               "passing)", CPU_SCORE)
        spread, repeats = repeat_spread(job, latency.data, base, ratio)
        result.headline |= {f"{CPU_SCORE}_{k}": v for k, v in spread.items()}
        result.metrics[f"{CPU_SCORE}_repeats"] = repeats
        estimate = latency.headline.get("est.score")
        shown = f"est. score {estimate:.3f} (Trainium estimate, higher is better) | " if estimate is not None else ""
        result.summary = (f"{shown}{result.summary}; over {repeats} repeats min {spread['min']:.3f}, "
                          f"median {spread['median']:.3f}, spread {spread['spread']:.0%}")
        warning = noise_warning(job, spread["spread"])
        if warning:
            log.warning("score: %s", warning)
            result.tags["score.warning"] = warning
            result.summary += f" | WARNING: {warning}"
        return result


def repeat_spread(job: Job, measured: dict, base: dict, ratio: float) -> tuple[dict[str, float], int]:
    """The summed CPU-time score of each timed repeat on its own (its e2e as latency and throughput) against the
    same base figures: ({min, median, spread = (max - min) / median}, number of repeats)."""
    accuracy = job.results.get("accuracy")
    passed = accuracy.data["per_prompt"] if accuracy else {}
    repeats = min(len(measured[p.index][RUNS_KEY]) for p in job.prompts)
    totals = []
    for r in range(repeats):
        total = 0.0
        for prompt in job.prompts:
            e2e = measured[prompt.index][RUNS_KEY][r]
            throughput = prompt.total_length * job.conf.workload.batch_size / (e2e / 1000)
            theirs = base[prompt.index]
            total += contest_score(float(passed.get(prompt.index, True)), theirs["e2e_p99_ms"], e2e, throughput,
                                   theirs["throughput_tok_s"], ratio)
        totals.append(total)
    median = statistics.median(totals)
    spread = (max(totals) - min(totals)) / median if median else 0.0
    return {"min": min(totals), "median": median, "spread": spread}, repeats


def noise_warning(job: Job, spread: float) -> str:
    """Why the CPU-time score says nothing about the kernels, or "" (the two rules of README "The record")."""
    interpreted = sorted({k.layer for k in nki_kernels(job)}) if job.conf.platform.executor == "interp" else []
    if interpreted:
        return (f"NKI variant(s) of {', '.join(interpreted)} run on the CPU interpreter: the CPU-time score measures "
                f"the interpreter, not the kernel; compare latency.est.score")
    if spread > MAX_SPREAD:
        return (f"the CPU-time score varies by {spread:.0%} over the timed repeats (> {MAX_SPREAD:.0%}): CPU load "
                f"noise, not a kernel difference")
    return ""


def score_prompts(job: Job, measured: dict, base: dict, source: str, ratio: float, label: str,
                  unchecked: str, name: str = "contest") -> StageResult:
    """The contest's score of every prompt against its base figures; the headline `<name>` is the contest's sum,
    `<name>_mean` the mean per prompt."""
    accuracy = job.results.get("accuracy")
    per_prompt_accuracy = accuracy.data["per_prompt"] if accuracy else {}
    scores = {}
    for prompt in job.prompts:
        ours, theirs = measured[prompt.index], base[prompt.index]
        scores[prompt.index] = contest_score(
            float(per_prompt_accuracy.get(prompt.index, True)), theirs["e2e_p99_ms"], ours["e2e_p99_ms"],
            ours["throughput_tok_s"], theirs["throughput_tok_s"], ratio,
        )
    total, mean = sum(scores.values()), statistics.fmean(scores.values())
    (job.stage_dir("score") / "score.json").write_text(
        json.dumps({"baseline": source, "baseline_latency": base, "nki_mac_ratio": ratio, "scores": scores,
                    "accuracy_checked": accuracy is not None}, indent=2)
    )
    checked = "" if accuracy else unchecked
    return StageResult(
        metrics={f"p{i}": s for i, s in scores.items()},  # the NKI MAC ratio is compile's figure (and score.json's)
        headline={name: total, f"{name}_mean": mean},
        tags={"score.baseline": source},
        summary=(f"{label} score {total:.3f} over {len(scores)} prompts, {mean:.3f} per prompt (1.0 = baseline; "
                 f"baseline from {source}){checked}"),
        data=scores,
    )
