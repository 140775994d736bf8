"""`nki_tiled`: the vocabulary projection as an NKI kernel (kernels.lm_head.nki_tiled_kernel), in both
phases. The model calls the lm_head slot on each row's last real token only (model.qwen3_moe `head`), as
NxDI's context encoding does, so a call projects `batch` rows in either phase.

The kernel reads the weight with the input dim first, so the variant asks the model to store it transposed
(`transpose_weights`). It runs on both physical cores of the logical core (`lm_head[2]`, LNC=2), each
streaming half of the vocabulary shard; `cores=1` runs it on one core.

Against the compiled baseline its output (lm_head | sampling) is a free cut point; its input is the final
norm's output, rounded to bf16 at the call (lossy under MPA, kernels.numerics rule 3).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels.executors import Launch
from kernels.lm_head.baseline import lm_head_reference
from kernels.nki_support import nki_module
from kernels.registry import Variant, register
from kernels.types import LayerShapes

KERNELS = "kernels.lm_head.nki_tiled_kernel"
PARTITIONS = 128
SBUF_BYTES = 212984  # usable SBUF per partition on trn2
# One rounding of an fp32 sum accumulated in another order than torch's: the logits can land one bf16 ulp
# away, at most 2**-7 of max|logits| (an element in max|out|'s binade has an ulp of 2^(e-7)).
RTOL = 2.0**-7


@dataclass
class TiledLmHeadParams:
    cores: int = 2  # program instances: the physical cores of the logical core (LNC=2), half the vocabulary each
    slab_cols: int = 2048  # vocabulary columns per weight DMA (a run of slab_cols elements per partition and row)


def check_shapes(shapes: LayerShapes, params: TiledLmHeadParams) -> list[str]:
    problems = []
    if params.cores not in (1, 2):
        problems.append(f"cores={params.cores} must be 1 or 2 (the physical cores of a logical core)")
    if params.slab_cols < 1:
        problems.append(f"slab_cols={params.slab_cols} must be >= 1")
    if shapes.hidden % PARTITIONS:
        problems.append(f"hidden size {shapes.hidden} must be a multiple of {PARTITIONS} (the contraction tiles)")
    if not 1 <= shapes.batch <= PARTITIONS:
        problems.append(f"batch {shapes.batch} rows must be in [1, {PARTITIONS}] (the stationary side of the matmul)")
    slab = shapes.hidden // PARTITIONS * params.slab_cols * shapes.dtype.itemsize
    if slab > SBUF_BYTES // 2:
        problems.append(f"slab_cols={params.slab_cols}: a {slab // 1024} KiB weight slab per partition exceeds half "
                        f"of trn2's {SBUF_BYTES // 1024} KiB of SBUF")
    return problems


def run(x: torch.Tensor, weight: torch.Tensor, *, params: TiledLmHeadParams, launch: Launch) -> torch.Tensor:
    """x [T, H], weight [V_rank, H] (stored transposed) -> logits [T, V_rank]."""
    kernel = nki_module(KERNELS).lm_head
    return launch(kernel[params.cores] if params.cores > 1 else kernel, x, weight.T, params.slab_cols)


register(
    Variant(
        layer="lm_head",
        name="nki_tiled",
        summary="NKI vocabulary projection: weight streamed once in column slabs, split over the two cores, "
                "fp32 accumulation rounded once (last token per row in context encoding)",
        reference=lm_head_reference,
        params=TiledLmHeadParams,
        nki=run,
        check_shapes=check_shapes,
        transpose_weights=True,
        rtol=RTOL,
    )
)
