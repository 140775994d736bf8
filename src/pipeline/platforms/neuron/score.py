"""Device score per prompt, as aws-neuron/nki-moe main.py `calculate_score`: accuracy x (base latency /
latency) x (throughput / base throughput) x (1 + NKI FLOP ratio), latency = e2e p99, throughput as
`generate_report` gives it. The base figures are the contest's measured baseline (prompt_data_<target>.csv)
when the workload is the contest's five prompts at seq_len 640, else the baseline build benchmarked in this
job. The ratio is the compile stage's HLO count (or counted here from the job's build)."""
from __future__ import annotations

import json
import statistics

from pipeline.estimate.contest import CONTEST_SEQ_LEN, baseline_rows, contest_prompts
from pipeline.evaluation.contest_score import contest_score
from pipeline.platforms.neuron.compile import hlo_ratio
from pipeline.platforms.neuron.latency import benchmark_prompt, prompt_metrics
from pipeline.platforms.neuron.session import BASELINE, CANDIDATE
from pipeline.stages.base import StageResult


def is_contest_workload(conf) -> bool:
    w = conf.workload
    return list(w.prompts) == contest_prompts() and w.max_new_tokens is None and w.seq_len == CONTEST_SEQ_LEN


def base_figures(job) -> tuple[dict[int, dict[str, float]], str]:
    target = job.conf.platform.target
    if is_contest_workload(job.conf):
        rows = {r.prompt: r for r in baseline_rows(target)}
        return ({p.index: {"e2e_p99_ms": rows[p.index].latency_ms, "throughput_tok_s": rows[p.index].throughput_tok_s}
                 for p in job.prompts}, f"prompt_data_{target}.csv")
    build = job.platform.session(job).build(BASELINE)
    runs = job.conf.latency.runs
    return ({p.index: prompt_metrics(*benchmark_prompt(build, p, runs), runs) for p in job.prompts},
            "baseline build measured in this job")


def run(job) -> StageResult:
    latency = job.results.get("latency")
    if latency is None:
        raise RuntimeError("the score stage needs the latency stage earlier in `stages`")
    compiled = job.results.get("compile")
    if compiled:
        ratio = float(compiled.data["nki_mac_ratio"])
    else:
        ratio = hlo_ratio(job.platform.session(job).build(CANDIDATE).dirs.work)[0]
    accuracy = job.results.get("accuracy")
    per_prompt_accuracy = accuracy.data["per_prompt"] if accuracy else {}
    base, source = base_figures(job)
    scores = {}
    for prompt in job.prompts:
        ours, theirs = latency.data[prompt.index], base[prompt.index]
        scores[prompt.index] = contest_score(
            float(per_prompt_accuracy.get(prompt.index, True)), theirs["e2e_p99_ms"], ours["e2e_p99_ms"],
            ours["throughput_tok_s"], theirs["throughput_tok_s"], ratio,
        )
    mean = statistics.fmean(scores.values())
    (job.stage_dir("score") / "score.json").write_text(json.dumps(
        {"baseline": source, "baseline_latency": base, "nki_mac_ratio": ratio, "scores": scores,
         "accuracy_checked": accuracy is not None}, indent=2))
    checked = "" if accuracy else " (accuracy not checked: assumed passing, as the contest on trn2)"
    return StageResult(
        metrics={**{f"p{i}": s for i, s in scores.items()}, "contest": mean, "nki_mac_ratio": ratio},
        headline={"contest": mean, "contest_total": sum(scores.values()), "nki_mac_ratio": ratio},
        tags={"score.baseline": source},
        summary=f"{job.conf.platform.name} score {mean:.3f} per prompt, total {sum(scores.values()):.3f} "
                f"(baseline: {source}){checked}",
        data=scores,
    )
