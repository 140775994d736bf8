"""The routed expert MLPs as NxD's ExpertMLPsV2 computes them in inference.

Two code paths with different accumulation orders, chosen like NxD by the fraction of experts the tokens
load (`tokens * top_k / experts`, threshold 1.0):
- selective loading (decode, tiny prefill): per token, the top-k expert outputs are scaled by their
  affinities in the model dtype and summed in one reduction (fp32 inside, one rounding);
- all-experts / blockwise (prefill): experts are visited in ascending index order and each scaled output is
  added to a model-dtype accumulator, rounding after every add.
Each expert is `down(silu(gate) * up)` with model-dtype rounding after every op.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels.registry import Variant, register
from kernels.torch_ops import matmul
from kernels.types import ExpertWeights

SELECTIVE_LOADING_THRESHOLD = 1.0  # NxD model_utils.DEFAULT_SELECTIVE_LOADING_THRESHOLD


def expert_mlp(x: torch.Tensor, gate_up: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    """One expert on tokens x [n, H]: gate_up [H, 2I], down [I, H] -> [n, H], rounding after every op."""
    gate, up = matmul(x, gate_up).chunk(2, dim=-1)
    return matmul(F.silu(gate) * up, down)


def uses_selective_loading(tokens: int, top_k: int, experts: int) -> bool:
    return tokens * top_k / experts < SELECTIVE_LOADING_THRESHOLD


def _selective(x: torch.Tensor, affinities: torch.Tensor, index: torch.Tensor, w: ExpertWeights) -> torch.Tensor:
    rows = []
    for t in range(x.shape[0]):
        token = x[t : t + 1]
        outputs = torch.cat([expert_mlp(token, w.gate_up[e], w.down[e]) for e in index[t].tolist()])
        rows.append((outputs * affinities[t].unsqueeze(1)).sum(dim=0))
    return torch.stack(rows)


def _ascending(x: torch.Tensor, affinities: torch.Tensor, index: torch.Tensor, w: ExpertWeights) -> torch.Tensor:
    out = torch.zeros_like(x)
    for e in torch.unique(index).tolist():
        token, slot = torch.nonzero(index == e, as_tuple=True)
        scaled = expert_mlp(x[token], w.gate_up[e], w.down[e]) * affinities[token, slot].unsqueeze(1)
        out.index_add_(0, token, scaled)
    return out


def experts_reference(
    x: torch.Tensor, affinities: torch.Tensor, index: torch.Tensor, weights: ExpertWeights, params: object = None
) -> torch.Tensor:
    """x [T, H], affinities/index [T, top_k] -> this rank's partial output [T, H] (summed across ranks later)."""
    if uses_selective_loading(x.shape[0], index.shape[1], weights.gate_up.shape[0]):
        return _selective(x, affinities, index, weights)
    return _ascending(x, affinities, index, weights)


register(
    Variant(
        layer="experts",
        name="baseline",
        summary="NxD ExpertMLPsV2 numerics (selective loading in decode, ascending-expert accumulation in prefill)",
        reference=experts_reference,
        transpose_weights=True,
    )
)
