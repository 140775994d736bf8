"""RMSNorm as NxDI's CustomRMSNorm computes it on the device.

The AwsNeuronRmsNorm custom call takes fp32 input and weight and rounds once at the end; Hugging Face
instead rounds the normalised value to the input dtype before multiplying by the weight.
"""
from __future__ import annotations

import torch

from kernels.numerics import CompilerNumerics
from kernels.registry import Variant, register


def rms_norm_fp32(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Normalise over the last dim in fp32 and multiply by the fp32 weight, unrounded."""
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return h * weight.float()


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """rms_norm_fp32 rounded once to x's dtype."""
    return rms_norm_fp32(x, weight, eps).to(x.dtype)


def norm_reference(
    x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None, params: object = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(normed, hidden): `hidden = residual + x` in x's dtype when a residual is given, else `x`."""
    hidden = x if residual is None else residual + x
    return rms_norm(hidden, weight, eps), hidden


def norm_compiled(
    x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None, params: object = None,
    *, numerics: CompilerNumerics,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(normed, hidden) as the compiler fuses add + RMSNorm + the next matmul: `normed` stays fp32 under MPA
    (kernels.numerics rule 3); the residual stream `hidden` is the model dtype."""
    hidden = numerics.cut("norm_input", x if residual is None else residual + x)
    return numerics.norm_output(rms_norm_fp32(hidden, weight, eps)), hidden


register(
    Variant(
        layer="norm",
        name="baseline",
        summary="NxDI CustomRMSNorm numerics (fp32 normalise and weight multiply, one rounding)",
        reference=norm_reference,
        compiled=norm_compiled,
    )
)
