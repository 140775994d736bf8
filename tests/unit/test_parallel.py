"""TP sharding follows NxDI's layout and reassembles to the full weights; all-reduces add as NxDI's do."""
from dataclasses import dataclass

import torch

from model.parallel import ShardingError, TensorParallel
from model.weights import LayerWeights
from tests.models import model_dims

DIMS = model_dims("qwen3_moe_tiny")


def full_layer() -> LayerWeights:
    g = torch.Generator().manual_seed(0)
    h, d, i, e = DIMS.hidden_size, DIMS.head_dim, DIMS.moe_intermediate_size, DIMS.num_experts
    q, kv = DIMS.num_attention_heads * d, DIMS.num_key_value_heads * d
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return LayerWeights(r(h), r(h), r(q, h), r(kv, h), r(kv, h), r(h, q), r(d), r(d), r(e, h), r(e, h, 2 * i), r(e, i, h))


def test_shards_reassemble():
    full = full_layer()
    for degree in (1, 2, 4):
        tp = TensorParallel(DIMS, degree)
        attention = [tp.attention(full, r, 1e-6) for r in range(degree)]
        experts = [tp.experts(full, r) for r in range(degree)]
        assert torch.equal(torch.cat([a.q_proj for a in attention]), full.q_proj)
        assert torch.equal(torch.cat([a.k_proj for a in attention]), full.k_proj)
        assert torch.equal(torch.cat([a.o_proj for a in attention], dim=1), full.o_proj)
        i = DIMS.moe_intermediate_size
        gates = torch.cat([x.gate_up[..., : i // degree] for x in experts], dim=-1)
        ups = torch.cat([x.gate_up[..., i // degree :] for x in experts], dim=-1)
        assert torch.equal(torch.cat([gates, ups], dim=-1), full.gate_up)
        assert torch.equal(torch.cat([x.down for x in experts], dim=1), full.down)


def test_kv_heads_replicate_when_ranks_outnumber_them():
    full = full_layer()
    tp = TensorParallel(DIMS, 8)  # 4 KV heads over 8 ranks: each head on two ranks
    d = DIMS.head_dim
    for rank in range(8):
        head = rank // 2
        assert torch.equal(tp.attention(full, rank, 1e-6).k_proj, full.k_proj[head * d : (head + 1) * d])


def four_partials() -> list[torch.Tensor]:
    """Four ranks' bf16 partials of a 4-element tensor (one element per ring chunk): 1.0 on rank 0 and 2^-9
    (a quarter of bf16's ulp at 1.0) on the others, so the order of the bf16 additions decides the result."""
    return [torch.full((4,), 1.0 if rank == 0 else 2**-9, dtype=torch.bfloat16) for rank in range(4)]


def test_all_reduce_adds_in_bf16_around_the_ring():
    """Chunk c starts at rank c and adds ranks c+1, c+2, c+3, rounding each sum to bf16 (NxDI: rpl_reduce_dtype
    unset). Chunk 0: 1 + 2^-9 rounds back to 1, three times. Chunk 1: 2^-9 x 3 = 0.75 ulp, then + 1 rounds up.
    Chunk 2: 2^-8 + 1 is a tie, rounded to even (1), then + 2^-9 rounds back. Chunk 3: as chunk 0."""
    reduced = TensorParallel.all_reduce(four_partials())
    assert reduced.dtype == torch.bfloat16
    assert reduced.tolist() == [1.0, 1.0 + 2**-7, 1.0, 1.0]


def test_all_reduce_in_fp32_rounds_once():
    reduced = TensorParallel.all_reduce(four_partials(), torch.float32)
    assert reduced.dtype == torch.bfloat16 and reduced.tolist() == [1.0 + 2**-7] * 4  # 1 + 3 x 2^-9, rounded


def test_two_ranks_and_uneven_chunks():
    parts = [torch.arange(5, dtype=torch.bfloat16).view(1, 5), torch.ones(1, 5, dtype=torch.bfloat16)]
    assert torch.equal(TensorParallel.all_reduce(parts), (parts[0] + parts[1]).view(1, 5))


def test_impossible_degree_is_refused():
    try:
        TensorParallel(DIMS, 3)
    except ShardingError as error:
        assert "not divisible by tp_degree=3" in str(error)
    else:
        raise AssertionError("tp_degree=3 must be refused")


def test_o_proj_reduces_in_rpl_reduce_dtype_and_the_moe_in_the_model_dtype():
    """NxD: RowParallelLinear (o_proj) all-reduces in reduce_dtype, the MoE block in its output dtype."""
    from kernels.slots import KernelSet
    from model.generation import generate
    from model.qwen3_moe import Qwen3Moe
    from tests.models import checkpoint

    dtypes = []

    @dataclass(frozen=True)
    class Recording(TensorParallel):
        def all_reduce(self, partials, dtype=None):
            dtypes.append(dtype or partials[0].dtype)
            return TensorParallel.all_reduce(partials, dtype)

    model = Qwen3Moe.from_checkpoint(checkpoint("qwen3_moe_tiny"), KernelSet.baseline(), 2, torch.bfloat16, torch.float32)
    model.tp = Recording(model.dims, 2, torch.float32)
    generate(model, [[1, 2, 3]], 1, [16])
    assert dtypes == [torch.float32, torch.bfloat16] * model.dims.num_hidden_layers
