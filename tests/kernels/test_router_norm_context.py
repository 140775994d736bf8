"""router.nki_topk and the NKI norms (nki_rmsnorm, nki_add_rmsnorm) in context encoding: token counts of the
contest buckets (128, 256, 640) and one that is not a multiple of 128, at the real hidden size (2048), through
the CPU interpreter against the baseline's numerics; tokens are tiled over the 128 partitions, and the router
weight is loaded once per call whatever the token count."""
from dataclasses import replace

import pytest
import torch

import kernels
from kernels.executors import interpret
from kernels.norm.baseline import norm_reference
from kernels.router.baseline import router_reference
from kernels.types import Phase
from tests.kernels.shapes import REAL_TP4
from tests.kernels.test_router_nki import bf16_ulps, make_inputs

TOKENS = [128, 256, 640, 200]


@pytest.mark.parametrize("tokens", TOKENS)
def test_router_at_bucket_sizes(tokens):
    variant = kernels.get("router", "nki_topk")
    x, weight = make_inputs(REAL_TP4, tokens)
    (affinities, index), traces = interpret(variant, variant.make_params(), (x, weight, REAL_TP4.top_k), "trn2")
    expected_affinities, expected_index = router_reference(x, weight, REAL_TP4.top_k)
    assert torch.equal(index, expected_index)
    assert bf16_ulps(affinities, expected_affinities).max() <= 2
    assert (affinities != expected_affinities).float().mean() < 0.01
    assert traces[0].total_macs == tokens * REAL_TP4.hidden * REAL_TP4.experts
    weight_bytes = REAL_TP4.experts * REAL_TP4.hidden * 4
    transposes = [ins for ins in traces[0].instructions if ins.op == "dma_transpose" and ins.dma_bytes == weight_bytes]
    assert len(transposes) == 1  # the router weight moves once per call, not once per token tile


def norm_inputs(tokens: int, seed: int = 0) -> tuple:
    g = torch.Generator().manual_seed(seed)
    hidden = REAL_TP4.hidden
    x = torch.randn(tokens, hidden, generator=g).to(torch.bfloat16)
    residual = (4 * torch.randn(tokens, hidden, generator=g)).to(torch.bfloat16)
    weight = (1 + 0.1 * torch.randn(hidden, generator=g)).to(torch.bfloat16)
    return x, weight, 1e-6, residual


@pytest.mark.parametrize("name", ["nki_rmsnorm", "nki_add_rmsnorm"])
@pytest.mark.parametrize("tokens", TOKENS)
def test_norms_at_bucket_sizes(name, tokens):
    variant = kernels.get("norm", name)
    args = norm_inputs(tokens)
    (normed, hidden), _ = interpret(variant, variant.make_params(), args, "trn2")
    expected_normed, expected_hidden = norm_reference(*args)
    assert torch.equal(hidden, expected_hidden)
    assert (normed.float() - expected_normed.float()).abs().max() <= variant.rtol * expected_normed.float().abs().max()
    assert (normed != expected_normed).float().mean() < 0.01


def test_router_and_norms_serve_context_encoding_at_every_contest_bucket():
    shapes = replace(REAL_TP4, context_lengths=(128, 256, 640))
    for layer, name in (("router", "nki_topk"), ("norm", "nki_rmsnorm"), ("norm", "nki_add_rmsnorm")):
        variant = kernels.get(layer, name)
        assert Phase.CONTEXT in variant.phases and variant.problems(shapes, variant.make_params()) == []
