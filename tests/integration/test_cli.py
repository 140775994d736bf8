"""`python -m pipeline` end to end: the default job, bad input, a crash, Ctrl-C and SIGTERM."""
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import PROJECT, compose_config, tracking_overrides
from tests.integration.cli import FAST, children, job_runs, pipeline_command, run_pipeline, runs

STAGES = ["compile", "accuracy", "latency", "profile", "score"]


def test_default_pipeline_runs_every_stage(tracking, tmp_path):
    result = run_pipeline(FAST, tracking, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "USDT" not in result.stderr + result.stdout  # kineto's profiler_start/stop markers
    assert "pipeline job: " in result.stdout and "MLflow:" in result.stdout
    (job,) = job_runs(tracking)
    assert job.info.status == "FINISHED"
    metrics = job.data.metrics
    assert metrics["accuracy.passed"] == 1.0
    assert metrics["latency.e2e_p99_ms"] > 0 and metrics["latency.throughput_tok_s"] > 0
    assert metrics["latency.ttft_ms"] > 0 and metrics["latency.tpot_ms"] > 0
    assert metrics["score.cpu_time_mean"] == 1.0  # the baseline scored against itself
    assert metrics["score.cpu_time"] == 2.0  # the contest sums over prompts (smoke: two)
    assert metrics["score.cpu_time_min"] <= metrics["score.cpu_time_median"] and metrics["score.cpu_time_spread"] >= 0
    assert "score.contest" not in metrics and metrics["latency.est.score"] > 0  # the CPU headline: the estimate
    tags = job.data.tags
    description = tags["mlflow.note.content"]  # the summary table, as printed
    assert description.startswith("```\npipeline job: latency.runs=1 ") and description.endswith("```")
    assert all(f"  {s}" in description for s in STAGES) and description.strip("`\n") in result.stdout
    assert tags["kernels"] == "norm=baseline,attention=baseline,router=baseline,experts=baseline,lm_head=baseline"
    assert len(tags["config_hash"]) == 16 and tags["platform"] == "cpu" and tags["git_commit"]
    assert job.data.params["parallel.tp_degree"] == "1" and job.data.params["kernel.experts"] == "baseline"
    stages = {r.info.run_name: r for r in children(tracking, job.info.run_id)}
    assert sorted(stages) == sorted(STAGES)
    assert all(r.info.status == "FINISHED" for r in stages.values())
    assert_record_schema(job, stages)
    artifacts = Path(tracking["artifact_root"]) / "pipeline"
    files = {p.name for p in artifacts.rglob("*") if p.is_file()}
    assert {"plan.json", "report.json", "latency.json", "trace.json", "top_ops.txt", "kernel_times.png",
            "score.json", "resolved_config.yaml", "config.yaml", "overrides.yaml", "pipeline.log"} <= files


def assert_record_schema(job, stages) -> None:
    """README "The record": `<stage>.<key>` everywhere, each figure once, no variant in a key, machine paths as
    tags, rounded values."""
    for name, stage in stages.items():
        assert all(k.startswith(f"{name}.") for k in stage.data.metrics), sorted(stage.data.metrics)
        assert not set(stage.data.metrics) & set(job.data.metrics)
    chosen = [k.removeprefix("kernel.") + f".{v}" for k, v in job.data.tags.items() if k.startswith("kernel.")]
    keys = set(job.data.metrics).union(*(s.data.metrics for s in stages.values()))
    assert not [k for k in keys if any(c in k for c in chosen)]  # e.g. cpu_ms.norm.baseline
    assert not [k for k in job.data.params if k.startswith(("paths.", "tracking."))]
    assert {"paths.root", "paths.output_dir", "tracking.uri"} <= set(job.data.tags)
    values = [*job.data.metrics.values(), *(v for s in stages.values() for v in s.data.metrics.values())]
    assert all(float(f"{v:.5g}") == v for v in values)


def test_unknown_variant_is_one_line_and_opens_no_run(tracking, tmp_path):
    result = run_pipeline(["kernel.experts=no_such_variant"], tracking, tmp_path)
    assert result.returncode == 2
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: kernel.experts=no_such_variant is not a registered variant; choose one of:")
    assert "baseline" in lines[0] and "Traceback" not in result.stderr + result.stdout
    assert not [r for r in runs(tracking) if r.info.status == "RUNNING"]


def test_stage_crash_fails_the_run_and_keeps_artifacts(tracking, tmp_path, monkeypatch):
    from pipeline.runner import JobFailed, prepare, run_job
    from pipeline.stages import STAGES as REGISTRY

    def explode(job):
        raise RuntimeError("simulated kernel crash")

    monkeypatch.setattr(REGISTRY["latency"], "run", explode)
    out = tmp_path / "out"
    out.mkdir()
    overrides = [*FAST, *tracking_overrides(tracking)]
    cfg = compose_config(overrides, out)
    try:
        run_job(cfg, prepare(cfg, out), overrides)
    except JobFailed as error:
        assert "simulated kernel crash" in str(error)
    else:
        raise AssertionError("a crashing stage must fail the job")
    (job,) = job_runs(tracking)
    assert job.info.status == "FAILED"
    stages = {r.info.run_name: r.info.status for r in children(tracking, job.info.run_id)}
    assert stages == {"compile": "FINISHED", "accuracy": "FINISHED", "latency": "FAILED"}
    assert "simulated kernel crash" in (out / "latency" / "traceback.txt").read_text()
    logged = {p.name for p in Path(tracking["artifact_root"]).rglob("*") if p.is_file()}
    assert {"traceback.txt", "plan.json", "report.json"} <= logged


@pytest.mark.parametrize("signum,exit_code,message", [
    (signal.SIGINT, 130, "interrupted (Ctrl-C)"),
    pytest.param(signal.SIGTERM, 143, "terminated (SIGTERM)", marks=pytest.mark.slow),  # as `timeout` or `kill`
], ids=["ctrl-c", "sigterm"])
def test_an_interrupt_marks_the_runs_killed_and_keeps_artifacts(tracking, tmp_path, signum, exit_code, message):
    args = ["latency.runs=200", "latency.warmup=0", "workload.max_new_tokens=4", "stages=[compile,accuracy,latency]"]
    # SIGINT back to its default in the child: a suite started in the background by a non-interactive shell
    # inherits SIGINT ignored, and Python then installs no Ctrl-C handler.
    process = subprocess.Popen(
        pipeline_command(args, tracking, tmp_path), cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 300
    for line in process.stdout:
        if "stage latency: started" in line or time.monotonic() > deadline:
            break
    time.sleep(2)
    process.send_signal(signum)
    output = process.communicate(timeout=300)[0]  # generous: a loaded machine slows the shutdown
    assert process.returncode == exit_code, output[-2000:]
    assert f"{message}: runs marked KILLED, artifacts so far kept" in output
    (job,) = job_runs(tracking)
    assert job.info.status == "KILLED"
    stages = {r.info.run_name: r.info.status for r in children(tracking, job.info.run_id)}
    assert stages == {"compile": "FINISHED", "accuracy": "FINISHED", "latency": "KILLED"}
    logged = {p.name for p in Path(tracking["artifact_root"]).rglob("*") if p.is_file()}
    assert {"plan.json", "report.json", "pipeline.log", "resolved_config.yaml"} <= logged


@pytest.mark.slow
@pytest.mark.parametrize("override,error", [
    ("+kernel_params.norm.foo=1", "kernel_params.norm: unknown knob(s) foo for variant 'baseline' (valid: none)"),
    ("kernel_params.norm.foo=1", "kernel_params.norm: unknown knob(s) foo for variant 'baseline' (valid: none)"),
    ("stages=[score,compile]", "stages=[score,compile]: score needs latency earlier in stages"),
    # Hydra's and OmegaConf's composition errors, one line instead of their multi-line text
    ("workload.seq_len=abc", "Error merging override workload.seq_len=abc: Value 'abc' of type 'str' could not be "
                             "converted to Integer"),
    ("foo=1", "Could not override 'foo': Key 'foo' not in 'PipelineConf'"),
    ("model=no_such_model", "In 'config': Could not find 'model/no_such_model'"),
    ("platform.neuron.lock_timeout_s=1", "an override sets a key under a node that is null in this config "
                                         "(platform.neuron.* needs platform=trn2 or trn3, model.dims.* a seeded model): "
                                         "Unexpected type for root: NoneType"),
])
def test_config_errors_are_one_line_before_any_run(tracking, tmp_path, override, error):
    result = run_pipeline([override], tracking, tmp_path)
    assert result.returncode == 2
    assert [l for l in result.stderr.splitlines() if l.strip()] == [f"error: {error}"]
    assert result.stdout == "" and runs(tracking) == []


def test_help_lists_groups_variants_and_stages(tracking, tmp_path):
    result = run_pipeline(["--help"], tracking, tmp_path)
    assert result.returncode == 0
    text = result.stdout
    assert "model: qwen3_30b_a3b, qwen3_30b_a3b_slice, qwen3_moe_tiny" in text
    for layer in ("norm", "attention", "router", "experts", "lm_head"):
        assert f"  {layer}:" in text
    assert "perturbed" in text and "(test only)" in text
    assert "compile, accuracy, latency, profile, score" in text and "also: cutpoints" in text and "report\n" in text
