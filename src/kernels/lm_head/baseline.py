"""The vocabulary projection, column-parallel over the vocabulary as in NxDI (gathered by concatenation)."""
from __future__ import annotations

import torch

from kernels.numerics import CompilerNumerics
from kernels.registry import Variant, register
from kernels.torch_ops import linear


def lm_head_reference(x: torch.Tensor, weight: torch.Tensor, params: object = None) -> torch.Tensor:
    """x [T, H], weight [V_rank, H] -> logits [T, V_rank] in x's dtype (fp32 accumulation inside the matmul)."""
    return linear(x, weight)


def lm_head_compiled(x: torch.Tensor, weight: torch.Tensor, params: object = None, *,
                     numerics: CompilerNumerics) -> torch.Tensor:
    """The final norm's fp32 result under MPA times the bf16 weight, logits in the weight's dtype."""
    return numerics.cut("logits", linear(numerics.cut("lm_head_input", x), weight))


register(
    Variant(
        layer="lm_head",
        name="baseline",
        summary="bf16 matmul with fp32 accumulation, vocabulary sharded per rank",
        reference=lm_head_reference,
        compiled=lm_head_compiled,
    )
)
