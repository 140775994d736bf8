"""A test-only variant whose output is the baseline's with seeded relative noise.

It exists to prove that the accuracy stage can fail: a kernel that is almost right must not pass.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels.experts.baseline import experts_reference
from kernels.registry import Variant, register
from kernels.types import ExpertWeights


@dataclass(frozen=True)
class PerturbedParams:
    relative_noise: float = 0.05  # standard deviation of the multiplicative noise
    seed: int = 0


def perturbed_reference(
    x: torch.Tensor, affinities: torch.Tensor, index: torch.Tensor, weights: ExpertWeights, params: PerturbedParams
) -> torch.Tensor:
    out = experts_reference(x, affinities, index, weights)
    generator = torch.Generator().manual_seed(params.seed)
    noise = torch.randn(out.shape, generator=generator, dtype=torch.float32)
    return (out.float() * (1.0 + params.relative_noise * noise)).to(out.dtype)


register(
    Variant(
        layer="experts",
        name="perturbed",
        summary="test only: baseline output times (1 + noise); must fail the accuracy gate",
        reference=perturbed_reference,
        params=PerturbedParams,
        test_only=True,
    )
)
