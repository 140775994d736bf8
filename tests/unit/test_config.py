"""Every preset composes and validates; the dotted kernel selector works; typos, stage lists and numbers out of
range fail with one line."""
from pathlib import Path

import pytest
import torch

from pipeline.config import CONF_DIR
from pipeline.config.validate import BOUNDS, ConfigError, to_pipeline_conf, validate
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
    with pytest.raises(ConfigError, match="could not be converted"):
        validate(conf(["kernel.lm_head=perturbed", "kernel_params.lm_head.seed=abc"], tmp_path))


def test_rpl_reduce_dtype_defaults_to_the_model_dtype_as_nxdi(tmp_path):
    from pipeline.job import Job

    assert conf([], tmp_path).parallel.rpl_reduce_dtype is None
    assert Job(conf(["parallel.rpl_reduce_dtype=float32"], tmp_path), tmp_path).tp.rpl_reduce_dtype is torch.float32
    with pytest.raises(ConfigError, match="parallel.rpl_reduce_dtype=float16: choose null or bfloat16 or float32"):
        validate(conf(["parallel.rpl_reduce_dtype=float16"], tmp_path))


def test_contest_workload(tmp_path):
    c = conf(["workload=contest"], tmp_path)
    assert (c.workload.seq_len, c.workload.batch_size, len(c.workload.prompts)) == (640, 1, 5)
    assert c.workload.max_new_tokens is None


@pytest.mark.parametrize("plus", ["", "+"])
def test_misspelt_knob_with_or_without_plus_is_one_line_naming_the_variants_knobs(plus, tmp_path):
    with pytest.raises(ConfigError) as error:
        conf(["kernel.lm_head=perturbed", f"{plus}kernel_params.lm_head.relative_nois=0.1"], tmp_path)
    assert str(error.value) == (
        "kernel_params.lm_head: unknown knob(s) relative_nois for variant 'perturbed' (valid: relative_noise, seed)"
    )
    with pytest.raises(ConfigError, match=r"^kernel_params.norm: unknown knob\(s\) foo for variant 'baseline' "):
        conf([f"{plus}kernel_params.norm.foo=1"], tmp_path)


@pytest.mark.parametrize("override,key", [("+workload.foo=1", "workload.foo"), ("+foo=1", "foo"),
                                          ("+kernel_params.nrm.eps=1", "kernel_params.nrm"),
                                          ("+workload.sampling.tempreature=1", "workload.sampling.tempreature")])
def test_a_key_added_with_plus_that_the_schema_lacks_is_an_error(override, key, tmp_path):
    with pytest.raises(ConfigError, match=rf"^unknown config key\(s\) {key};"):
        conf([override], tmp_path)


@pytest.mark.parametrize("stages,problem", [
    ("[score,compile]", "score needs latency earlier in stages"),
    ("[compile,score]", "score needs latency earlier in stages"),
    ("[latency,compile]", "list each stage once, in the order compile, cutpoints, accuracy, latency, profile, score"),
    ("[compile,compile]", "list each stage once"),
])
def test_stage_order_and_dependencies_fail_before_any_run(stages, problem, tmp_path):
    with pytest.raises(ConfigError) as error:
        validate(conf([f"stages={stages}"], tmp_path))
    assert str(error.value).startswith(f"stages={stages}: {problem}")


def test_stage_subsets_in_order_pass(tmp_path):
    for stages in ("[compile]", "[latency,score]", "[accuracy,profile]", "[compile,accuracy,latency,profile,score]"):
        validate(conf([f"stages={stages}"], tmp_path))


def _out_of_range(bound) -> float:
    return bound.high + 1 if bound.low == bound.high else bound.low if bound.open_low else bound.low - 1


@pytest.mark.parametrize("key", sorted(BOUNDS))
def test_every_numeric_key_out_of_range_is_one_line(key, tmp_path):
    bound = BOUNDS[key]
    value = _out_of_range(bound)
    override = f"{key}=[{value}]" if key in ("workload.buckets", "cutpoints.tokens") else f"{key}={value}"
    device = ["platform=trn2"] if key.startswith("platform.neuron.") else []  # a node only the device platforms have
    with pytest.raises(ConfigError) as error:
        validate(conf([*device, override], tmp_path))
    assert str(error.value).startswith(f"{key}=") and f"must be {bound}" in str(error.value)
    assert "\n" not in str(error.value)


def test_issue_13_findings(tmp_path):
    with pytest.raises(ConfigError, match=r"^workload.seq_len=-5: must be at least 1$"):
        validate(conf(["workload.seq_len=-5"], tmp_path))
    with pytest.raises(ConfigError, match=r"^workload.max_new_tokens=0: must be at least 1$"):
        validate(conf(["workload.max_new_tokens=0"], tmp_path))
    validate(conf(["workload.max_new_tokens=1"], tmp_path))
    validate(conf(["workload=contest", "workload.max_new_tokens=null"], tmp_path))


def test_lengths_the_model_cannot_hold(tmp_path):
    with pytest.raises(ConfigError, match=r"^cutpoints.layer=4: the model has 4 layers$"):
        validate(conf(["cutpoints.layer=4"], tmp_path))
    with pytest.raises(ConfigError, match="the largest must hold workload.seq_len=64"):
        validate(conf(["workload.buckets=[32]"], tmp_path))
    with pytest.raises(ConfigError, match="above model.dims.max_position_embeddings=4096"):
        validate(conf(["workload.seq_len=5000"], tmp_path))
