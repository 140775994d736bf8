"""kernel.attention=nki_prefill_decode and kernel.lm_head=nki_tiled inside the model (CPU interpreter) through
the compile and accuracy stages: both phases on NKI, their MACs counted as NKI, the gate passed."""
import pytest


@pytest.mark.slow
def test_attention_and_lm_head_on_nki_in_both_phases_pass_the_gate(tracking, tmp_path):
    from pipeline.runner import prepare, run_job
    from tests.conftest import compose_config, tracking_overrides
    from tests.integration.cli import children, job_runs

    overrides = ["kernel.attention=nki_prefill_decode", "kernel.lm_head=nki_tiled", "parallel.tp_degree=2",
                 "stages=[compile,accuracy]", "workload.max_new_tokens=4", *tracking_overrides(tracking)]
    out = tmp_path / "out"
    out.mkdir()
    cfg = compose_config(overrides, out)
    run_job(cfg, prepare(cfg, out), overrides)
    (job,) = job_runs(tracking)
    metrics = job.data.metrics
    assert job.info.status == "FINISHED" and metrics["accuracy.passed"] == 1.0
    assert job.data.tags["fallbacks"] == "none"
    (compile_run,) = [r for r in children(tracking, job.info.run_id) if "compile.nki_kernels_traced" in r.data.metrics]
    for layer, phase in (("attention", "context"), ("attention", "token"), ("lm_head", "context"),
                         ("lm_head", "token")):
        assert compile_run.data.metrics[f"compile.{layer}.{phase}.macs"] > 0
    assert 0 < metrics["compile.nki_mac_ratio"] < 1


@pytest.mark.slow
def test_all_nki_preset_puts_every_layer_on_nki_and_passes_the_gate(tracking, tmp_path):
    """Issue 12's acceptance: +experiment=all_nki at TP 2 on the tiny model."""
    from pipeline.runner import prepare, run_job
    from tests.conftest import compose_config, tracking_overrides
    from tests.integration.cli import job_runs

    overrides = ["+experiment=all_nki", "parallel.tp_degree=2", "stages=[compile,accuracy]",
                 "workload.max_new_tokens=4", *tracking_overrides(tracking)]
    out = tmp_path / "out"
    out.mkdir()
    cfg = compose_config(overrides, out)
    assert all(cfg.kernel[layer] != "baseline" for layer in ("norm", "attention", "router", "experts", "lm_head"))
    run_job(cfg, prepare(cfg, out), overrides)
    (job,) = job_runs(tracking)
    assert job.info.status == "FINISHED" and job.data.metrics["accuracy.passed"] == 1.0
    assert job.data.tags["fallbacks"] == "none"
    assert job.data.metrics["compile.nki_mac_ratio"] >= 0.99
