"""A test-only variant whose logits are the baseline's with seeded relative noise.

It exists to prove that the accuracy stage can fail: a kernel whose output is almost right must not pass.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels.lm_head.baseline import lm_head_reference
from kernels.registry import Variant, register


@dataclass(frozen=True)
class PerturbedParams:
    relative_noise: float = 0.05  # standard deviation of the multiplicative noise
    seed: int = 0


def perturbed_reference(x: torch.Tensor, weight: torch.Tensor, params: PerturbedParams) -> torch.Tensor:
    out = lm_head_reference(x, weight)
    generator = torch.Generator().manual_seed(params.seed)
    noise = torch.randn(out.shape, generator=generator, dtype=torch.float32)
    return (out.float() * (1.0 + params.relative_noise * noise)).to(out.dtype)


register(
    Variant(
        layer="lm_head",
        name="perturbed",
        summary="baseline logits times (1 + 5% noise); must fail the accuracy gate",
        reference=perturbed_reference,
        params=PerturbedParams,
        test_only=True,
    )
)
