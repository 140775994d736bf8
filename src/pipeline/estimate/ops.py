"""HBM bytes and TensorE FLOPs of the ops that run outside NKI (torch compiled by the Neuron compiler), per
call on one TP rank, for the per-rank shapes of one bucket (`LayerShapes` whose first context length and
first KV length are the bucket's).

The layouts are NxDI's (hardware-and-model.md §7.2, §8.1, §10.1): bf16 weights except the fp32 router; each
rank holds its attention heads, its slice of every expert and its vocabulary slice; norms and the router
are replicated. `weight_bytes` is what any implementation must read from HBM (weights, and the KV cache in
decode), the physical floor of the op; `hbm_bytes` adds activations. FLOPs count matrix products only
(2 x the baseline's `dot` MACs, kernels.macs); element-wise work on VectorE/ScalarE is not modelled.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kernels.experts.baseline import uses_selective_loading
from kernels.macs import baseline_macs
from kernels.types import LayerShapes, Phase

ROUTER_WEIGHT_ITEMSIZE = 4  # NxD keeps the router in fp32 (router_config.dtype, hardware-and-model.md §7.4)
INDEX_ITEMSIZE = 8  # int64 expert indices


@dataclass(frozen=True)
class OpCost:
    """One op call on one rank."""

    flops: float
    hbm_bytes: float
    weight_bytes: float
    dtype: str = "bfloat16"  # matmul input dtype: picks the TensorE peak


def tokens(s: LayerShapes, phase: Phase) -> int:
    """Tokens one call processes: the padded bucket in context encoding, one per row in decode."""
    return s.tokens(phase)[0]


def experts_touched(token_count: int, top_k: int, experts: int) -> float:
    """Expected distinct experts `token_count` tokens hit under uniform routing, E (1 - (1 - k/E)^T)
    (hardware-and-model.md §10.2)."""
    return experts * (1.0 - (1.0 - top_k / experts) ** token_count)


def norm_cost(s: LayerShapes, phase: Phase) -> OpCost:
    """Residual add and RMSNorm: read x, residual and weight; write the normed and the summed hidden state."""
    b, t = s.dtype.itemsize, tokens(s, phase)
    return OpCost(0.0, b * (4 * t * s.hidden + s.hidden), b * s.hidden)


def attention_cost(s: LayerShapes, phase: Phase) -> OpCost:
    """q/k/v/o projections of this rank's heads, q/k norms, RoPE, softmax(QK^T)V. Decode reads the KV bucket
    from the cache; both phases write the new positions' K and V."""
    b, t = s.dtype.itemsize, tokens(s, phase)
    q, kv = s.q_heads * s.head_dim, s.kv_heads * s.head_dim
    weights = b * (s.hidden * (2 * q + 2 * kv) + 2 * s.head_dim)
    cache_read = 2 * b * kv * s.kv_lengths[0] * s.batch if phase is Phase.TOKEN else 0
    cache_write = 2 * b * kv * t
    activations = 2 * b * t * s.hidden
    macs = baseline_macs("attention", phase, s)
    return OpCost(2.0 * macs, weights + cache_read + cache_write + activations, weights + cache_read)


def router_cost(s: LayerShapes, phase: Phase) -> OpCost:
    """fp32 router matmul over every expert, softmax and top-k."""
    b, t = s.dtype.itemsize, tokens(s, phase)
    weights = ROUTER_WEIGHT_ITEMSIZE * s.experts * s.hidden
    activations = b * t * s.hidden + ROUTER_WEIGHT_ITEMSIZE * t * s.experts + t * s.top_k * (b + INDEX_ITEMSIZE)
    return OpCost(2.0 * baseline_macs("router", phase, s), weights + activations, weights, "float32")


def experts_cost(s: LayerShapes, phase: Phase) -> OpCost:
    """Expert MLPs (this rank's slice of I). Selective loading (decode, T*k/E < 1) reads each token's top-k
    experts; otherwise every expert the bucket's tokens touch is read (padding tokens route too: NxDI does
    not mask them by default, hardware-and-model.md §8.2). FLOPs are the baseline graph's dot MACs
    (blockwise blocks padded to 512 rows in prefill, kernels.macs)."""
    b, t = s.dtype.itemsize, tokens(s, phase)
    expert_bytes = b * 3 * s.hidden * s.intermediate
    if uses_selective_loading(t, s.top_k, s.experts):
        loaded = float(t * s.top_k)
    else:
        loaded = experts_touched(t, s.top_k, s.experts)
    weights = loaded * expert_bytes
    activations = 2 * b * t * s.hidden + t * s.top_k * (b + INDEX_ITEMSIZE)
    return OpCost(2.0 * baseline_macs("experts", phase, s), weights + activations, weights)


def lm_head_cost(s: LayerShapes, phase: Phase) -> OpCost:
    """This rank's vocabulary slice; context encoding projects only each row's last token (NxDI gathers it
    first, hardware-and-model.md §8.4)."""
    b = s.dtype.itemsize
    rows = s.batch if phase is Phase.CONTEXT else tokens(s, phase)
    weights = b * s.vocab * s.hidden
    activations = b * rows * (s.hidden + s.vocab)
    return OpCost(2.0 * baseline_macs("lm_head", phase, s), weights + activations, weights)


def embedding_cost(s: LayerShapes, phase: Phase) -> OpCost:
    """One embedding row per token, gathered and written."""
    b, t = s.dtype.itemsize, tokens(s, phase)
    return OpCost(0.0, 2 * b * t * s.hidden, b * t * s.hidden)


TORCH_OPS: dict[str, Callable[[LayerShapes, Phase], OpCost]] = {
    "norm": norm_cost,
    "attention": attention_cost,
    "router": router_cost,
    "experts": experts_cost,
    "lm_head": lm_head_cost,
    "embedding": embedding_cost,
}
