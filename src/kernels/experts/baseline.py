"""The routed expert MLPs as NxD's ExpertMLPsV2 computes them in inference.

Two code paths with different accumulation orders, chosen like NxD by the fraction of experts the tokens
load (`tokens * top_k / experts`, threshold 1.0):
- selective loading (decode, tiny prefill): per token, the top-k expert outputs are scaled by their
  affinities in the model dtype and summed in one reduction (fp32 inside, one rounding);
- all-experts / blockwise (prefill): experts are visited in ascending index order and each scaled output is
  added to a model-dtype accumulator, rounding after every add (so each token sums its experts' scaled
  outputs in ascending expert order, rounding after every add).
Each expert is `down(silu(gate) * up)` with model-dtype rounding after every op; the compiled baseline
(`experts_compiled`) keeps the roundings kernels.numerics schedules instead.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels.experts.selection import uses_selective_loading
from kernels.numerics import CompilerNumerics, eager
from kernels.registry import Variant, register
from kernels.torch_ops import linear_many, matmul
from kernels.types import ExpertWeights


def _grouped_mlp(rows: torch.Tensor, experts: list[int], counts: list[int], w: ExpertWeights,
                 numerics: CompilerNumerics) -> torch.Tensor:
    """Expert MLPs for consecutive row groups, group i through expert experts[i]: per-expert products,
    element-wise ops once over all rows (the same roundings, far fewer torch calls). The down outputs are
    left in numerics.down_dtype()."""
    chunks = rows.split(counts)
    products = [matmul(c, w.gate_up[e], numerics.gate_up_dtype()) for e, c in zip(experts, chunks)]
    hidden = numerics.swiglu(*torch.cat(products).chunk(2, dim=-1)).split(counts)
    return torch.cat([matmul(h, w.down[e], numerics.down_dtype()) for e, h in zip(experts, hidden)])


def _selective(x: torch.Tensor, affinities: torch.Tensor, index: torch.Tensor, w: ExpertWeights,
               numerics: CompilerNumerics) -> torch.Tensor:
    rows = []
    for t, chosen in enumerate(index.tolist()):
        products = linear_many(x[t], [w.gate_up[e].mT for e in chosen], numerics.gate_up_dtype())
        hidden = numerics.swiglu(*torch.stack(products).chunk(2, dim=-1))
        outputs = torch.stack(linear_many(hidden, [w.down[e].mT for e in chosen], numerics.down_dtype()))
        rows.append(numerics.expert_output(outputs, affinities[t].unsqueeze(1)).sum(dim=0))
    return torch.stack(rows)


def _ascending(x: torch.Tensor, affinities: torch.Tensor, index: torch.Tensor, w: ExpertWeights,
               numerics: CompilerNumerics) -> torch.Tensor:
    tokens, top_k = index.shape
    flat = index.flatten()
    order = torch.argsort(flat, stable=True)  # assignments grouped by expert
    experts, counts = torch.unique_consecutive(flat[order], return_counts=True)
    outputs = _grouped_mlp(x[order // top_k], experts.tolist(), counts.tolist(), w, numerics)
    scaled = torch.empty(outputs.shape, dtype=numerics.dtype)
    scaled[order] = numerics.expert_output(outputs, affinities.flatten()[order].unsqueeze(1))
    ascending = index.argsort(dim=1).unsqueeze(2).expand(-1, -1, x.shape[1])
    contributions = scaled.view(tokens, top_k, -1).gather(1, ascending)
    out = contributions[:, 0]  # = 0 + first contribution, exactly
    for slot in range(1, top_k):
        out = out + contributions[:, slot]
    return out


def experts_scheduled(x: torch.Tensor, affinities: torch.Tensor, index: torch.Tensor, weights: ExpertWeights,
                      numerics: CompilerNumerics) -> torch.Tensor:
    """NxD's two paths with the roundings `numerics` schedules (kernels.numerics rules 1-4)."""
    if uses_selective_loading(x.shape[0], index.shape[1], weights.gate_up.shape[0]):
        return _selective(x, affinities, index, weights, numerics)
    return _ascending(x, affinities, index, weights, numerics)


def experts_reference(
    x: torch.Tensor, affinities: torch.Tensor, index: torch.Tensor, weights: ExpertWeights,
    valid: torch.Tensor | None = None, params: object = None,
) -> torch.Tensor:
    """x [T, H], affinities/index [T, top_k] -> this rank's partial output [T, H] (summed across ranks later).
    `valid` [T] (context encoding: the prompt's real tokens) is ignored: NxD runs padding tokens through their
    experts too; their rows are never read (attention is causal, the logits are a real token's)."""
    return experts_scheduled(x, affinities, index, weights, eager(x.dtype))


def experts_compiled(x: torch.Tensor, affinities: torch.Tensor, index: torch.Tensor, weights: ExpertWeights,
                     valid: torch.Tensor | None = None, params: object = None, *,
                     numerics: CompilerNumerics) -> torch.Tensor:
    """experts_reference with the compiler's roundings; x is the norm's fp32 result under MPA."""
    return experts_scheduled(numerics.cut("moe_input", x), affinities, index, weights, numerics)


register(
    Variant(
        layer="experts",
        name="baseline",
        summary="NxD ExpertMLPsV2 numerics (selective loading in decode, ascending-expert accumulation in prefill)",
        reference=experts_reference,
        compiled=experts_compiled,
        transpose_weights=True,
    )
)
