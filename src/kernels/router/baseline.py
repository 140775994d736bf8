"""The MoE router as NxDI's RouterTopK + ExpertMLPsV2 compute it.

fp32 weights and logits, softmax in float64 as written in NxD, top-k taken on the logits, affinities cast to
the model dtype and only then L1-normalised (`F.normalize(p=1)`); Hugging Face normalises in fp32 before
the cast.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels.numerics import CompilerNumerics, materialise
from kernels.registry import Variant, register


def _route(x: torch.Tensor, weight: torch.Tensor, top_k: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    logits = F.linear(x, weight)
    probs = F.softmax(logits, dim=1, dtype=torch.float64).to(dtype)
    _, index = torch.topk(logits, top_k, dim=1)
    chosen = probs.gather(1, index)
    return F.normalize(chosen, p=1.0, dim=1), index


def router_reference(
    x: torch.Tensor, weight: torch.Tensor, top_k: int, params: object = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """x [T, H], weight [E, H] fp32 -> (affinities [T, top_k] in x's dtype, expert indices [T, top_k] int64)."""
    return _route(x.float(), weight.float(), top_k, x.dtype)


def router_compiled(x: torch.Tensor, weight: torch.Tensor, top_k: int, params: object = None, *,
                    numerics: CompilerNumerics) -> tuple[torch.Tensor, torch.Tensor]:
    """The router reads the rounded norm output (kernels.numerics rule 3) and, under --auto-cast=matmult,
    bf16 matmul operands (rule 6)."""
    x = materialise(numerics.cut("router_input", x), numerics.dtype)
    return _route(*numerics.router_operands(x.float(), weight.float()), top_k, numerics.dtype)


register(
    Variant(
        layer="router",
        name="baseline",
        summary="NxDI router numerics (fp32 logits, softmax, top-k, bf16 cast, then L1 normalise)",
        reference=router_reference,
        compiled=router_compiled,
    )
)
