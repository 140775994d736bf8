"""RMSNorm as NxDI's CustomRMSNorm computes it on the device.

The AwsNeuronRmsNorm custom call takes fp32 input and weight and rounds once at the end; Hugging Face
instead rounds the normalised value to the input dtype before multiplying by the weight.
"""
from __future__ import annotations

import torch

from kernels.registry import Variant, register


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Normalise over the last dim in fp32, multiply by the fp32 weight, round once to x's dtype."""
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return (h * weight.float()).to(x.dtype)


def norm_reference(
    x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None, params: object = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(normed, hidden): `hidden = residual + x` in x's dtype when a residual is given, else `x`."""
    hidden = x if residual is None else residual + x
    return rms_norm(hidden, weight, eps), hidden


register(
    Variant(
        layer="norm",
        name="baseline",
        summary="NxDI CustomRMSNorm numerics (fp32 normalise and weight multiply, one rounding)",
        reference=norm_reference,
    )
)
