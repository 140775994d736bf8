"""The MoE router as NxDI's RouterTopK + ExpertMLPsV2 compute it.

fp32 weights and logits, softmax in float64 as written in NxD, top-k taken on the logits, affinities cast to
the model dtype and only then L1-normalised (`F.normalize(p=1)`); Hugging Face normalises in fp32 before
the cast.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels.registry import Variant, register


def router_reference(
    x: torch.Tensor, weight: torch.Tensor, top_k: int, params: object = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """x [T, H], weight [E, H] fp32 -> (affinities [T, top_k] in x's dtype, expert indices [T, top_k] int64)."""
    logits = F.linear(x.float(), weight.float())
    probs = F.softmax(logits, dim=1, dtype=torch.float64).to(x.dtype)
    _, index = torch.topk(logits, top_k, dim=1)
    chosen = probs.gather(1, index)
    return F.normalize(chosen, p=1.0, dim=1), index


register(
    Variant(
        layer="router",
        name="baseline",
        summary="NxDI router numerics (fp32 logits, softmax, top-k, bf16 cast, then L1 normalise)",
        reference=router_reference,
    )
)
