"""Matrix products for torch references, fast on the CPU whichever way the weight is stored.

All compute with fp32 accumulation and one rounding to the weight's dtype, or to `out_dtype` when given
(what TensorE and NxDI's bf16 matmuls do; the order of the fp32 additions is unspecified on either side).
fp32 activations times bf16 weights is the compiled baseline's fused norm -> matmul (kernels.numerics).
On a CPU with bf16 dot-product instructions, torch's bf16 products win from two rows on
(kernels.cpu.has_bf16_dot_product). Measured on an earlier 2-core AVX2 machine (no bf16 arithmetic) for
[M, 2048] x [2048, 1536]:
- the native kernel (kernels.cpu, bf16 weights widened in registers): 0.24 ms at M=1, 1.2 ms at M=8;
- torch bf16: 0.4 ms at M=1 and 3 ms at M=8 with [out, in] storage, 8 ms at M=1 with [in, out] storage;
- torch fp32 on upcast operands: 10 ms at M=128, against 27 ms native and 43 ms torch bf16.
So few rows go native (or torch bf16 without it), many rows through fp32.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels import cpu

NATIVE_MAX_ROWS = 32
TORCH_BF16_MAX_ROWS = 16


def linear(x: torch.Tensor, weight: torch.Tensor, out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """x [..., in] times weight [out, in] transposed, rounded once to `out_dtype` (default: the weight's)."""
    out_dtype = out_dtype or weight.dtype
    if x.dtype == torch.float32 and weight.dtype == torch.float32:
        return F.linear(x, weight).to(out_dtype)
    rows = x.numel() // x.shape[-1]
    if rows > 1 and x.dtype == weight.dtype == out_dtype == torch.bfloat16 and cpu.has_bf16_dot_product():
        return F.linear(x, weight)
    contiguous_bf16 = weight.is_contiguous() and weight.dtype == torch.bfloat16
    if contiguous_bf16 and rows <= NATIVE_MAX_ROWS and cpu.available():
        return cpu.bf16_linear(x, weight, out_dtype)
    if weight.is_contiguous() and rows < TORCH_BF16_MAX_ROWS and x.dtype == weight.dtype == out_dtype:
        return F.linear(x, weight)
    return F.linear(x.float(), weight.float()).to(out_dtype)


def linear_many(x: torch.Tensor, weights: list[torch.Tensor], out_dtype: torch.dtype | None = None) -> list[torch.Tensor]:
    """One token times several weights [out_i, in] transposed: x [in] shared, or [len(weights), in] one row
    each. A single native call when possible (one thread fork, shared work), else one linear per weight."""
    out_dtype = out_dtype or weights[0].dtype
    if cpu.available() and all(w.is_contiguous() and w.dtype == torch.bfloat16 for w in weights):
        return cpu.bf16_linear_many(x, weights, out_dtype)
    rows = [x] * len(weights) if x.dim() == 1 else list(x)
    return [linear(r, w, out_dtype) for r, w in zip(rows, weights)]


def matmul(x: torch.Tensor, weight: torch.Tensor, out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """x [..., in] times weight [in, out]."""
    return linear(x, weight.mT, out_dtype)
