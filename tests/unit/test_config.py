"""Every preset composes and validates; the dotted kernel selector works; typos fail with one line."""
from pathlib import Path

import pytest
import torch

from pipeline.config import CONF_DIR
from pipeline.config.validate import ConfigError, to_pipeline_conf, validate
from tests.conftest import compose_config

GROUPS = {g: sorted(p.stem for p in (CONF_DIR / g).glob("*.yaml")) for g in ("model", "workload", "platform")}
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def conf(overrides, tmp_path):
    return to_pipeline_conf(compose_config(overrides, tmp_path))


@pytest.mark.parametrize("group,option", [(g, o) for g, options in GROUPS.items() for o in options])
def test_every_group_option_composes(group, option, tmp_path):
    extra = ["model.path=/some/checkpoint"] if option == "qwen3_30b_a3b" else []
    c = conf([f"{group}={option}", *extra], tmp_path)
    validate(c)
    assert getattr(c, group).name == option


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes(experiment, tmp_path):
    validate(conf([f"+experiment={experiment}"], tmp_path))


def test_defaults(tmp_path):
    c = conf([], tmp_path)
    assert (c.model.name, c.workload.name, c.platform.name) == ("qwen3_moe_tiny", "smoke", "cpu")
    assert c.stages == ["compile", "accuracy", "latency", "profile", "score"]
    assert c.tracking.uri == f"sqlite:///{Path(c.paths.root) / 'mlflow.db'}"
    assert Path(c.paths.root).is_absolute()


def test_dotted_kernel_selector_selects_a_variant(tmp_path):
    c = conf(["kernel.lm_head=perturbed", "kernel_params.lm_head.relative_noise=0.2"], tmp_path)
    validate(c)
    assert c.kernel.lm_head == "perturbed" and c.kernel_params.lm_head.relative_noise == 0.2


def test_unknown_variant_is_one_line_listing_the_variants(tmp_path):
    with pytest.raises(ConfigError) as error:
        validate(conf(["kernel.experts=no_such_variant"], tmp_path))
    assert str(error.value).startswith("kernel.experts=no_such_variant is not a registered variant")
    assert "baseline" in str(error.value) and "\n" not in str(error.value)


def test_unknown_knob_and_stage_and_types_fail(tmp_path):
    with pytest.raises(ConfigError, match="unknown knob"):
        validate(conf(["kernel_params.lm_head.relative_noise=0.1"], tmp_path))
    with pytest.raises(ConfigError, match="unknown stage"):
        validate(conf(["stages=[compile,bench]"], tmp_path))
    with pytest.raises(Exception, match="tp_degree"):
        conf(["parallel.tp_degree=two"], tmp_path)
    with pytest.raises(Exception, match="no_such_key"):
        conf(["kernel.no_such_key=1"], tmp_path)
    with pytest.raises(Exception, match="relative_nois"):
        conf(["kernel_params.lm_head.relative_nois=0.1"], tmp_path)
    with pytest.raises(ConfigError, match="could not be converted"):
        validate(conf(["kernel.lm_head=perturbed", "kernel_params.lm_head.seed=abc"], tmp_path))


def test_rpl_reduce_dtype_defaults_to_the_model_dtype_as_nxdi(tmp_path):
    from pipeline.job import Job

    assert conf([], tmp_path).parallel.rpl_reduce_dtype is None
    assert Job(conf(["parallel.rpl_reduce_dtype=float32"], tmp_path), tmp_path).tp.rpl_reduce_dtype is torch.float32
    with pytest.raises(ConfigError, match="parallel.rpl_reduce_dtype=float16: choose null"):
        validate(conf(["parallel.rpl_reduce_dtype=float16"], tmp_path))


def test_contest_workload(tmp_path):
    c = conf(["workload=contest"], tmp_path)
    assert (c.workload.seq_len, c.workload.batch_size, len(c.workload.prompts)) == (640, 1, 5)
    assert c.workload.max_new_tokens is None
