"""experts.grouped_v2: the whole decode expert block as one NKI kernel with streamed weights (decode only).

Selected experts' weights are gathered by indirect DMA in loads of a few weight tiles, through
multi-buffered SBUF so loads overlap the matmuls; gate/up, silu(gate) * up, down, the affinity scaling and
the sum over the k experts all run in the kernel. Context encoding falls back to the baseline.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels.experts.baseline import experts_reference
from kernels.experts.nki_tiling import equal_chunk, problems
from kernels.nki_support import nki_module
from kernels.registry import Variant, register
from kernels.types import ExpertWeights, LayerShapes, Phase

KERNELS = "kernels.experts.grouped_v2_kernel"
# As selective_v1: only the fp32 accumulation order inside the matmuls differs from torch, which can flip a
# bf16 rounding and move the output by about one bf16 ulp of its largest element (ulp(v) <= 2^-7 |v|).
ONE_BF16_ULP_OF_MAX = 2.0**-7


@dataclass(frozen=True)
class GroupedV2Params:
    intermediate_tile: int = 128  # most intermediate rows per chunk; I/rank is cut into equal chunks
    k_tiles_per_dma: int = 4  # 128-row tiles of hidden per gate/up weight DMA (3 KiB per partition at TP=4)
    i_chunks_per_dma: int = 1  # intermediate chunks per down weight DMA
    bufs: int = 2  # SBUF buffers per weight stream: 2 = double buffering, 1 = no overlap


def check_shapes(shapes: LayerShapes, params: GroupedV2Params) -> list[str]:
    return problems(shapes, params.intermediate_tile, params.k_tiles_per_dma, params.i_chunks_per_dma, params.bufs)


def run(x: torch.Tensor, affinities: torch.Tensor, index: torch.Tensor, weights: ExpertWeights,
        params: GroupedV2Params, launch) -> torch.Tensor:
    kernels = nki_module(KERNELS)
    i_chunk = equal_chunk(weights.down.shape[1], params.intermediate_tile)
    return launch(kernels.grouped_v2, x, affinities, index.to(torch.int32), weights.gate_up, weights.down, i_chunk,
                  params.k_tiles_per_dma, params.i_chunks_per_dma, params.bufs)


register(
    Variant(
        layer="experts",
        name="grouped_v2",
        summary="NKI fused decode expert block: streamed double-buffered weights, gate/up, SiLU, down, affinity sum",
        reference=experts_reference,
        params=GroupedV2Params,
        nki=run,
        phases=frozenset({Phase.TOKEN}),
        check_shapes=check_shapes,
        rtol=ONE_BF16_ULP_OF_MAX,
    )
)
