"""Choosing a platform: one clear line for what cannot run, before any MLflow run opens; compile keys."""
import dataclasses

import pytest

from pipeline.config.validate import ConfigError
from pipeline.platforms.neuron.cache import compile_key, poisoned_entries
from pipeline.runner import prepare
from tests import neuron_fakes
from tests.conftest import compose_config
from tests.integration.cli import run_pipeline, runs


@pytest.mark.slow
def test_device_platform_without_the_sdk_is_one_line_and_opens_no_run(tracking, tmp_path):
    platform = "trn3"
    result = run_pipeline([f"platform={platform}"], tracking, tmp_path, timeout=300)
    assert result.returncode == 2
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr + result.stdout, result.stderr
    assert lines[0].startswith(f"error: platform={platform} needs the Neuron SDK, which is not installed here")
    assert "neuronx_distributed_inference" in lines[0] and "aws_neuronx_venv_pytorch_" in lines[0]
    assert not [r for r in runs(tracking) if r.info.status == "RUNNING"]


def compose(tmp_path, *overrides):
    return compose_config(list(overrides), tmp_path)


def test_unwired_variant_on_the_device_is_a_config_error(monkeypatch, tmp_path):
    neuron_fakes.install(monkeypatch)
    cfg = compose(tmp_path, "platform=trn3", "kernel.lm_head=perturbed")
    with pytest.raises(ConfigError, match=r"platform=trn3: kernel.lm_head=perturbed has no NxDI slot: is a torch-only "
                                          r"test variant.*\(wired: kernel.attention=nki_decode, kernel.experts="):
        prepare(cfg, tmp_path)


def test_mismatched_target_and_unexportable_choice_are_config_errors(monkeypatch, tmp_path):
    neuron_fakes.install(monkeypatch)
    with pytest.raises(ConfigError, match="platform.target=trn2 on platform=trn3"):
        prepare(compose(tmp_path, "platform=trn3", "platform.target=trn2"), tmp_path)
    with pytest.raises(ConfigError, match="accuracy.reference=transformers: on platform=trn3 the reference is the baseline"):
        prepare(compose(tmp_path, "platform=trn3", "accuracy.reference=transformers"), tmp_path)
    with pytest.raises(ConfigError, match="estimate.lnc=1 but platform.neuron.logical_nc_config=2"):
        prepare(compose(tmp_path, "platform=trn3", "estimate.lnc=1"), tmp_path)
    with pytest.raises(ConfigError, match="stage export: kernel.lm_head=perturbed has no NxDI slot: is a torch-only"):
        prepare(compose(tmp_path, "stages=[export]", "kernel.lm_head=perturbed"), tmp_path)


def conf_of(tmp_path, *overrides):
    from pipeline.config.validate import to_pipeline_conf

    return to_pipeline_conf(compose(tmp_path, "platform=trn3", *overrides))


def key(conf, choices=None):
    return compile_key(conf, choices or dataclasses.asdict(conf.kernel), {}, [128])


def test_compile_key_follows_what_changes_the_graph(tmp_path):
    base = conf_of(tmp_path)
    assert key(base) == key(conf_of(tmp_path, "latency.runs=9", "accuracy.num_tokens_to_check=3"))
    assert key(base) != key(base, {**dataclasses.asdict(base.kernel), "norm": "nki_rmsnorm"})
    assert key(base) != key(conf_of(tmp_path, "compiler.mpa=false"))
    assert key(base) != key(conf_of(tmp_path, "parallel.tp_degree=2"))
    assert key(base) != compile_key(base, dataclasses.asdict(base.kernel), {}, [128, 256])


def test_poisoned_entries_are_read_from_the_log_and_kept_inside_the_cache(tmp_path):
    cache = tmp_path / "cache"
    log = (f"INFO ||NCC_WRAPPER||: Got a cached failed neff at {cache}/neuronxcc-2.24/MODULE_1+a/model.neff. Will skip\n"
           f"INFO ||NCC_WRAPPER||: Got a cached failed neff at {cache}/neuronxcc-2.24/MODULE_1+a/model.neff. again\n"
           f"[ERROR]: Got a cached failed neff at /opt/other/MODULE_2+b/model.neff.\n")
    assert poisoned_entries(log, cache) == [(cache / "neuronxcc-2.24" / "MODULE_1+a").resolve()]


def test_contest_workload_scores_against_the_contest_baseline_csv(tmp_path):
    import types

    from pipeline.estimate.contest import baseline_rows
    from pipeline.platforms.neuron.score import base_figures

    conf = conf_of(tmp_path, "+experiment=contest")
    job = types.SimpleNamespace(conf=conf, prompts=[types.SimpleNamespace(index=i) for i in range(5)])
    base, source = base_figures(job)
    rows = baseline_rows("trn3")
    assert source == "prompt_data_trn3.csv"
    assert [base[i]["e2e_p99_ms"] for i in range(5)] == [r.latency_ms for r in rows]
    assert [base[i]["throughput_tok_s"] for i in range(5)] == [r.throughput_tok_s for r in rows]


def test_compile_log_takes_children_output_and_does_not_wait_for_stragglers(tmp_path, monkeypatch):
    import subprocess
    import time

    from pipeline.platforms.neuron import cache

    monkeypatch.setattr(cache, "TEE_DRAIN_S", 0.5)
    log = tmp_path / "compile.log"
    start = time.monotonic()
    with cache.captured_output(log):
        subprocess.run(["echo", "from neuronx-cc"], check=True)
        straggler = subprocess.Popen(["sleep", "5"])  # inherits the log's pipe, outlives the compile
    assert time.monotonic() - start < 3
    straggler.kill()
    assert log.read_text() == "from neuronx-cc\n"
