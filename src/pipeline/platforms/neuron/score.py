"""Device score per prompt, as aws-neuron/nki-moe main.py `calculate_score`: accuracy x (base latency /
latency) x (throughput / base throughput) x (1 + NKI FLOP ratio), latency = e2e p99, throughput as
`generate_report` gives it. The base figures are the contest's measured baseline (prompt_data_<target>.csv)
when the workload is the contest's five prompts at seq_len 640, else the baseline build benchmarked in this
job. The ratio is the compile stage's HLO count (or counted here from the job's build)."""
from __future__ import annotations

from pipeline.estimate.contest import CONTEST_SEQ_LEN, baseline_rows, contest_prompts
from pipeline.platforms.neuron.compile import hlo_ratio
from pipeline.platforms.neuron.latency import benchmark_prompt, prompt_metrics
from pipeline.platforms.neuron.session import BASELINE, CANDIDATE
from pipeline.stages.base import StageResult
from pipeline.stages.score import score_prompts


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
    base, source = base_figures(job)
    return score_prompts(job, latency.data, base, source, ratio, job.conf.platform.name,
                         " (accuracy not checked: assumed passing, as the contest on trn2)")
