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


def test_r1_fused_decode_model_rounds_where_its_kernel_does():
    """experts.r1_tkg_fused: silu rounded, times fp32 up rounded, down rounded, times affinity rounded, bf16 sum
    in top-k order; one expert's output checked step by step, and it differs from both baseline schedules."""
    from kernels.experts.baseline import experts_compiled, experts_reference
    from kernels.experts.r1_tkg_fused import r1_fused_reference
    from kernels.types import ExpertWeights

    g = torch.Generator().manual_seed(3)
    hidden, inter, experts = 64, 32, 8
    x = torch.randn(2, hidden, generator=g).bfloat16()
    weights = ExpertWeights((torch.randn(experts, hidden, 2 * inter, generator=g) / 8).bfloat16(),
                            (torch.randn(experts, inter, hidden, generator=g) / 6).bfloat16())
    index = torch.tensor([[5, 1, 6], [0, 7, 2]])
    affinities = torch.softmax(torch.randn(2, 3, generator=g), -1)
    out = r1_fused_reference(x, affinities, index, weights)
    gate, up = (x[0].float() @ weights.gate_up[5].float()).chunk(2)
    h = (torch.nn.functional.silu(gate).bfloat16().float() * up).bfloat16()
    first = ((h.float() @ weights.down[5].float()).bfloat16().float() * affinities[0, 0]).bfloat16()
    one = r1_fused_reference(x[:1], affinities[:1, :1], index[:1, :1], weights)
    assert torch.allclose(one[0].float(), first.float(), atol=0, rtol=2**-7)  # up to fp32 accumulation order
    assert out.dtype == torch.bfloat16 and out.shape == (2, hidden)
    assert not torch.equal(out, experts_reference(x, affinities, index, weights))
    assert not torch.equal(out, experts_compiled(x.float(), affinities, index, weights, numerics=CompilerNumerics()))
