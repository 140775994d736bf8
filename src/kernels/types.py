"""The data every kernel slot receives, at per-TP-rank shapes.

Kernels never see the model: they get these plain containers, so a variant can be written, tested and
benchmarked on its own. Layouts follow NxDI (the contest baseline) so NKI kernels ported from or to the
device keep their weight layout.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch


class Phase(str, Enum):
    """The two compiled sub-models of NxDI: context encoding (prefill) and token generation (decode)."""

    CONTEXT = "context"
    TOKEN = "token"


ALL_PHASES = frozenset(Phase)


@dataclass
class AttentionWeights:
    """One rank's attention weights, nn.Linear layout [out_features, in_features]."""

    q_proj: torch.Tensor  # [q_heads_per_rank * head_dim, hidden]
    k_proj: torch.Tensor  # [kv_heads_per_rank * head_dim, hidden]
    v_proj: torch.Tensor  # [kv_heads_per_rank * head_dim, hidden]
    o_proj: torch.Tensor  # [hidden, q_heads_per_rank * head_dim]; row-parallel, output is a partial sum
    q_norm: torch.Tensor  # [head_dim], shared by all heads
    k_norm: torch.Tensor  # [head_dim]
    eps: float


@dataclass
class AttentionInputs:
    """Everything attention needs besides the hidden states; the KV cache is updated in place."""

    phase: Phase
    positions: torch.Tensor  # [batch, seq] int64 position of each query token
    cos: torch.Tensor  # [batch, seq, head_dim], model dtype
    sin: torch.Tensor  # [batch, seq, head_dim]
    k_cache: torch.Tensor  # [batch, kv_heads_per_rank, max_seq, head_dim] this rank, this layer
    v_cache: torch.Tensor  # [batch, kv_heads_per_rank, max_seq, head_dim]
    kv_len: int  # token generation: the KV bucket read, cache positions [0, kv_len); context: seq


@dataclass
class ExpertWeights:
    """One rank's expert weights in NxDI's fused layout, sharded on the intermediate dimension."""

    gate_up: torch.Tensor  # [experts, hidden, 2 * intermediate_per_rank]; gate in [..., :I], up in [..., I:]
    down: torch.Tensor  # [experts, intermediate_per_rank, hidden]; row-parallel, output is a partial sum


@dataclass(frozen=True)
class LayerShapes:
    """The per-rank shapes a workload presents to the kernels, used to check support before any work."""

    batch: int
    context_lengths: tuple[int, ...]  # CTE bucket lengths
    kv_lengths: tuple[int, ...]  # TKG KV bucket lengths
    hidden: int
    q_heads: int  # per rank
    kv_heads: int  # per rank
    head_dim: int
    experts: int
    top_k: int
    intermediate: int  # per rank
    vocab: int  # per rank
    dtype: torch.dtype

    def tokens(self, phase: Phase) -> tuple[int, ...]:
        """Token counts (batch x sequence) a per-token kernel sees in a phase."""
        if phase is Phase.TOKEN:
            return (self.batch,)
        return tuple(self.batch * s for s in self.context_lengths)


def stored(weight: torch.Tensor, transposed: bool) -> torch.Tensor:
    """`weight` with its last two dims' storage transposed (same logical shape) when asked."""
    return weight.mT.contiguous().mT if transposed else weight.contiguous()
