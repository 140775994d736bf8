"""experts.selective_v1: NxD's selective loading as an NKI kernel (decode only).

The kernel gathers only the selected experts' weights from the full per-rank tensors by indirect DMA, a whole
expert per pair of DMAs, and returns each slot's expert output; the affinity-weighted sum over the k
experts stays in torch, with the baseline's ops. Context encoding falls back to the baseline.

Against the compiled baseline with MPA (kernels.numerics) it crosses three lossy boundaries: it reads the bf16
MoE input (the compiler keeps the norm's fp32 value, rule 3), rounds gate/up and silu (rule 1 keeps them fp32)
and hands bf16 expert outputs to the affinity multiply (rule 4 scales the fp32 down output). With MPA off on
both sides it is the baseline's schedule. grouped_v2's fp32_swiglu / fp32_affinity knobs are the redesign of
the inside; the input boundary stays lossy under MPA for any decode MoE kernel that starts at the MoE input.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels.experts.baseline import experts_reference
from kernels.experts.launch import combine, selective_v1_arguments
from kernels.experts.nki_tiling import problems
from kernels.nki_support import nki_module
from kernels.registry import Variant, register
from kernels.types import ExpertWeights, LayerShapes, Phase

KERNELS = "kernels.experts.selective_v1_kernel"
# TensorE accumulates gate/up and down in fp32 in another order than torch's CPU matmul, so a product can
# round to the neighbouring bf16 value; that flip moves an expert output, and so the sum, by about one bf16
# ulp of the largest output element (ulp(v) <= 2^-7 |v|). Everything else reproduces the baseline bit for bit.
ONE_BF16_ULP_OF_MAX = 2.0**-7


@dataclass(frozen=True)
class SelectiveV1Params:
    intermediate_tile: int = 128  # most intermediate rows per chunk; I/rank is cut into equal chunks


def check_shapes(shapes: LayerShapes, params: SelectiveV1Params) -> list[str]:
    return problems(shapes, params.intermediate_tile)


def run(x: torch.Tensor, affinities: torch.Tensor, index: torch.Tensor, weights: ExpertWeights,
        params: SelectiveV1Params, launch) -> torch.Tensor:
    kernels = nki_module(KERNELS)
    outputs = launch(kernels.selective_v1, *selective_v1_arguments(x, index, weights.gate_up, weights.down, params))
    return combine(outputs.view(*index.shape, -1), affinities)


register(
    Variant(
        layer="experts",
        name="selective_v1",
        summary="NKI selective loading: indirect-DMA whole selected experts, MLP in NKI, affinity sum in torch",
        reference=experts_reference,
        params=SelectiveV1Params,
        nki=run,
        phases=frozenset({Phase.TOKEN}),
        check_shapes=check_shapes,
        rtol=ONE_BF16_ULP_OF_MAX,
    )
)
