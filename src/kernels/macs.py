"""Multiply-accumulates of the baseline's matrix products per layer and phase, at per-rank shapes, as
the contest counts them: the `dot` ops of NxDI's compiled graphs (rank 0, the first bucket of each of
context encoding and token generation). NKI kernels report their own MACs through the interpreter's
trace; together they give the NKI MAC ratio of the score."""
from __future__ import annotations

import math

from kernels.types import LayerShapes, Phase

BLOCK_SIZE = 512  # NxD DEFAULT_BLOCK_SIZE of the blockwise MoE


def expert_blocks(tokens: int, top_k: int, experts: int) -> int:
    """Blocks of NxD's blockwise matmul: ceil((T*k - (E-1)) / B) + (E-1), capped at T*k."""
    assignments = tokens * top_k
    return min(assignments, math.ceil(max(assignments - (experts - 1), 0) / BLOCK_SIZE) + experts - 1)


def baseline_macs(layer: str, phase: Phase, s: LayerShapes) -> int:
    seq = s.context_lengths[0] if phase is Phase.CONTEXT else 1
    tokens = s.batch * seq
    kv = seq if phase is Phase.CONTEXT else s.kv_lengths[0] + 1  # cached positions plus the active token
    q, kv_w = s.q_heads * s.head_dim, s.kv_heads * s.head_dim
    expert = s.hidden * 2 * s.intermediate + s.intermediate * s.hidden
    if layer == "attention":
        projections = tokens * s.hidden * (2 * q + 2 * kv_w)
        return projections + 2 * s.batch * s.q_heads * seq * kv * s.head_dim
    if layer == "router":
        return tokens * s.hidden * s.experts
    if layer == "experts":
        if tokens * s.top_k / s.experts < 1.0:
            return tokens * s.top_k * expert  # selective loading
        if tokens * s.top_k < BLOCK_SIZE:
            return s.experts * tokens * expert  # every token through every expert
        return expert_blocks(tokens, s.top_k, s.experts) * BLOCK_SIZE * expert
    if layer == "lm_head":
        return (s.batch if phase is Phase.CONTEXT else tokens) * s.hidden * s.vocab
    return 0  # norms have no matrix products
