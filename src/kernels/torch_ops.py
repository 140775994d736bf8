"""Matrix products for torch references, fast whichever way the weight is stored.

Both compute with fp32 accumulation and one rounding to the input dtype (what TensorE and NxDI's bf16
matmuls do; the order of the fp32 additions is unspecified on either side). On CPUs without bf16 units,
torch's bf16 matmul is fast only when the weight's storage is [out, in] (measured on this machine's AVX2
build: 0.4 ms for a [1, 2048] x [2048, 1536] product against 8 ms with [in, out] storage), so other
storage goes through fp32.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x [..., in] times weight [out, in] transposed."""
    if weight.is_contiguous() or x.dtype == torch.float32:
        return F.linear(x, weight)
    return F.linear(x.float(), weight.float()).to(x.dtype)


def matmul(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x [..., in] times weight [in, out]."""
    return linear(x, weight.mT)
