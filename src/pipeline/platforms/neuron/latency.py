"""Device latency per prompt, as aws-neuron/nki-moe main.py `benchmark_sampling` measures it: NxDI's
`Benchmark` (one warm-up, then `latency.runs` timed `HuggingFaceGenerationAdapter.generate` calls, each after
`model.reset()`), `generate_report` for end to end, and the context-encoding and token-generation latency
collectors registered after the warm-up, reported as the harness's `generate_submodule_reports` does.

Per prompt: e2e p50/p99 and throughput (the contest's latency and throughput), `cte_ms` (one context
encoding, i.e. TTFT on the device), `tkg_step_ms` (one token-generation call) and `host_ms` (per run, end to
end minus the time inside both sub-models: the HF generate loop, logits to the host, sampling), so the three
parts sit beside the CPU home's estimate (`est.*`, logged here too)."""
from __future__ import annotations

import copy
import json
import statistics

import torch

from pipeline.platforms.neuron.session import CANDIDATE, Build
from pipeline.stages.base import StageResult
from pipeline.stages.latency import estimate_metrics, headline

CTE, TKG = "context_encoding_model", "token_generation_model"


def submodule_reports(collectors: dict, neuron_config, num_runs: int) -> dict:
    """CONTEST:main.py generate_submodule_reports: tokens per CTE = prompt length, per TKG = new tokens."""
    from neuronx_distributed_inference.utils.benchmark import generate_report

    reports = {}
    for key, collector in collectors.items():
        tokens = neuron_config.max_length
        if key == CTE:
            tokens = neuron_config.seq_len - neuron_config.max_new_tokens
        elif key == TKG:
            tokens = neuron_config.max_new_tokens
        reports[key] = generate_report(collector.latency_list, tokens, neuron_config.max_batch_size, num_runs)
    return reports


def benchmark_prompt(build: Build, prompt, num_runs: int) -> tuple[dict, dict]:
    """(report as the harness writes benchmark_report.json, raw latency lists in seconds)."""
    from neuronx_distributed_inference.modules.generation.sampling import prepare_sampling_params
    from neuronx_distributed_inference.utils.benchmark import (Benchmark, create_submodule_latency_collectors,
                                                               generate_report, register_latency_collectors)
    from neuronx_distributed_inference.utils.hf_adapter import HuggingFaceGenerationAdapter

    model, generation_config = build.model, build.generation_config
    neuron_config = model.neuron_config
    sampling_params = prepare_sampling_params(
        batch_size=neuron_config.batch_size, top_k=[generation_config.top_k], top_p=[generation_config.top_p],
        temperature=[generation_config.temperature],
    )
    modified = copy.deepcopy(generation_config)
    if model.on_device_sampling:
        modified.eos_token_id = []
    input_ids = torch.tensor([list(prompt.ids)])
    neuron_config.max_new_tokens = prompt.max_new_tokens
    input_param = {
        "input_ids": input_ids, "generation_config": modified, "attention_mask": torch.ones_like(input_ids),
        "min_new_tokens": neuron_config.max_new_tokens, "max_new_tokens": neuron_config.max_new_tokens,
        "top_k": 1, "do_sample": not neuron_config.enable_fused_speculation, "sampling_params": sampling_params,
        "max_length": None,
    }
    collectors = create_submodule_latency_collectors(model)
    benchmark = Benchmark(HuggingFaceGenerationAdapter(model).generate, input_param, num_runs=num_runs,
                          preprocess_func=model.reset,
                          post_warmup_func=lambda: register_latency_collectors(collectors, model))
    benchmark.run()
    report = {"e2e_model": generate_report(benchmark.latency_list, neuron_config.max_length,
                                           neuron_config.max_batch_size, n_runs=benchmark.num_runs)}
    report.update(submodule_reports(collectors, neuron_config, benchmark.num_runs))
    model.reset()
    raw = {"e2e_model": benchmark.latency_list, **{k: c.latency_list for k, c in collectors.items()}}
    return report, raw


def prompt_metrics(report: dict, raw: dict, num_runs: int) -> dict[str, float]:
    e2e = report["e2e_model"]
    cte, tkg = raw.get(CTE, []), raw.get(TKG, [])
    e2e_mean_s = statistics.fmean(raw["e2e_model"])
    host_s = e2e_mean_s - (sum(cte) + sum(tkg)) / num_runs
    tkg_calls = len(tkg) / num_runs
    return {
        "e2e_p50_ms": e2e["latency_ms_p50"], "e2e_p99_ms": e2e["latency_ms_p99"], "throughput_tok_s": e2e["throughput"],
        "ttft_ms": statistics.fmean(cte) * 1000 if cte else 0.0,
        "tpot_ms": (e2e_mean_s - sum(cte) / num_runs) / tkg_calls * 1000 if tkg_calls else 0.0,
        "cte_ms": statistics.fmean(cte) * 1000 if cte else 0.0,
        "tkg_step_ms": statistics.fmean(tkg) * 1000 if tkg else 0.0,
        "host_ms": host_s * 1000,
        "host_ms_per_step": host_s / (tkg_calls + 1) * 1000,
    }


def run(job) -> StageResult:
    build = job.platform.session(job).build(CANDIDATE)
    out = job.stage_dir("latency")
    runs = job.conf.latency.runs
    per_prompt, reports = {}, {}
    for prompt in job.prompts:
        report, raw = benchmark_prompt(build, prompt, runs)
        reports[prompt.index] = report
        per_prompt[prompt.index] = prompt_metrics(report, raw, runs)
    (out / "benchmark_report.json").write_text(json.dumps(reports, indent=2, default=float))
    (out / "latency.json").write_text(json.dumps(per_prompt, indent=2))
    metrics = {f"p{i}.{k}": v for i, m in per_prompt.items() for k, v in m.items()}
    head = headline(per_prompt) | {k: statistics.fmean(m[k] for m in per_prompt.values())
                                   for k in ("cte_ms", "tkg_step_ms", "host_ms")}
    est_metrics, est_head, est_summary = _estimate(job)
    return StageResult(
        metrics={**metrics, **head, **est_metrics},
        headline={**head, **metrics, **est_head},
        summary=(f"{job.conf.platform.name}: e2e p99 {head['e2e_p99_ms']:.0f} ms, CTE {head['cte_ms']:.1f} ms, "
                 f"TKG step {head['tkg_step_ms']:.2f} ms, host {head['host_ms']:.0f} ms/run, "
                 f"{head['throughput_tok_s']:.1f} tok/s (mean of {len(per_prompt)} prompts, {runs} runs){est_summary}"),
        data=per_prompt,
    )


def _estimate(job) -> tuple[dict, dict, str]:
    """The CPU home's estimate of the same config, beside the measurement."""
    from pipeline.estimate import estimate_job

    compiled = job.results.get("compile")
    ratio = float(compiled.data["nki_mac_ratio"]) if compiled else 0.0
    estimate = estimate_job(job, ratio)
    metrics, head = estimate_metrics(estimate)
    return metrics, head, f" | {estimate.summary()}"
