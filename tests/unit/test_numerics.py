"""The compiled baseline's rounding rules (kernels.numerics) and how the kernel slots apply them."""
from __future__ import annotations

import pytest
import torch

from kernels.executors import compiled_executor
from kernels.numerics import CompilerNumerics, eager
from kernels.registry import Variant
from kernels.slots import KernelSet
from model.qwen3_moe import Qwen3Moe
from tests.models import checkpoint, contest_prompt_ids, ours


def _gate_up(seed: int = 0, n: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=g) * 2, torch.randn(n, generator=g)


def test_mpa_swiglu_rounds_once_and_eager_rounds_every_op():
    gate, up = _gate_up()
    fused = CompilerNumerics(mpa=True).swiglu(gate, up)
    assert torch.equal(fused, (torch.nn.functional.silu(gate) * up).to(torch.bfloat16))
    unfused = eager(torch.bfloat16).swiglu(gate.bfloat16(), up.bfloat16())
    assert torch.equal(unfused, torch.nn.functional.silu(gate.bfloat16()) * up.bfloat16())
    assert (fused != unfused).float().mean() > 0.05  # the rounding orders differ on many elements


@pytest.mark.parametrize("point, free", [("gate_up", False), ("silu", False), ("swiglu", True)])
def test_cut_points_inside_swiglu(point, free):
    gate, up = _gate_up(1)
    numerics = CompilerNumerics(mpa=True)
    cut = numerics.with_cut(point)
    assert torch.equal(cut.swiglu(gate, up), numerics.swiglu(gate, up)) is free


def test_unknown_cut_point_and_auto_cast_are_errors():
    with pytest.raises(ValueError, match="unknown cut point"):
        CompilerNumerics(cuts=frozenset({"nowhere"}))
    with pytest.raises(ValueError, match="auto_cast"):
        CompilerNumerics(auto_cast="all")


def test_custom_call_input_is_materialised():
    seen = {}

    def reference(x, params=None):
        seen["dtype"] = x.dtype
        return x

    variant = Variant(layer="norm", name="probe", summary="", reference=reference)
    run = compiled_executor(lambda v, p, args: v.reference(*args, params=p), CompilerNumerics())
    run(variant, None, (torch.randn(3, dtype=torch.float32),))
    assert seen["dtype"] == torch.bfloat16


@pytest.mark.slow
def test_compiled_without_mpa_is_the_eager_baseline_and_with_mpa_is_not():
    model = Qwen3Moe.from_checkpoint(checkpoint("qwen3_moe_tiny"), KernelSet.baseline(), 2)
    ids = contest_prompt_ids()[0][:40]
    eager_logits = ours(model, ids, 3)
    off = ours(model.with_kernels(KernelSet.baseline(numerics=CompilerNumerics(mpa=False))), ids, 3)
    on = ours(model.with_kernels(KernelSet.baseline(numerics=CompilerNumerics(mpa=True))), ids, 3)
    assert torch.equal(off, eager_logits)
    assert not torch.equal(on, eager_logits)


def test_compiler_config_and_the_compiled_reference_validate(tmp_path):
    from pipeline.config.validate import ConfigError, to_pipeline_conf, validate
    from tests.conftest import compose_config

    conf = to_pipeline_conf(compose_config(["accuracy.reference=compiled", "compiler.mpa=false",
                                            "stages=[cutpoints,accuracy]"], tmp_path))
    validate(conf)
    assert conf.compiler.mpa is False and conf.compiler.auto_cast == "none"
    with pytest.raises(ConfigError, match="compiler.auto_cast=fp8"):
        validate(to_pipeline_conf(compose_config(["compiler.auto_cast=fp8"], tmp_path)))
