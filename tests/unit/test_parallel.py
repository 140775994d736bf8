"""TP sharding follows NxDI's layout and reassembles to the full weights."""
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


def test_all_reduce_order_is_fixed_fp32_then_one_rounding():
    parts = [torch.tensor([1.0, 2**-9], dtype=torch.bfloat16), torch.tensor([2**-9, 1.0], dtype=torch.bfloat16)]
    reduced = TensorParallel.all_reduce(parts)
    assert reduced.dtype == torch.bfloat16
    assert torch.equal(reduced, (parts[0].float() + parts[1].float()).to(torch.bfloat16))


def test_impossible_degree_is_refused():
    try:
        TensorParallel(DIMS, 3)
    except ShardingError as error:
        assert "not divisible by tp_degree=3" in str(error)
    else:
        raise AssertionError("tp_degree=3 must be refused")
