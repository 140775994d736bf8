"""router.nki_topk: the router (logits, softmax, top-k, normalisation) as one NKI kernel, both phases.

Its boundaries are free against the compiled baseline, MPA on or off (kernels.numerics): the router reads the
rounded norm output and emits bf16 affinities and indices either way."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels.nki_support import nki_module
from kernels.registry import Variant, register
from kernels.router.baseline import router_reference
from kernels.types import LayerShapes

KERNELS = "kernels.router.nki_topk_kernel"
PARTITIONS = 128
MAX8 = 8  # candidates per max8 instruction
PSUM_BANK_FP32 = 512  # fp32 logits of one token tile fit one PSUM bank
SBUF_BYTES = 212984  # usable bytes per partition on trn2
# NxD's softmax runs in float64, the kernel's in fp32, so a chosen probability close to a bf16 rounding midpoint
# can round the other way (about 1 in 10^4 values). The bf16 L1 normalisation divides it by a sum about 2-3x
# larger, so that one-ulp step is about one ulp of the normalised value too and, rounded again, at most two:
# 2 ulps <= 2^-6 |v| <= 2^-6 max|affinities|. The normalisation itself is exact. Indices must match exactly;
# logits within fp32 rounding of each other are ties (their order depends on the accumulation order).
TWO_BF16_ULPS_OF_MAX = 2.0**-6


@dataclass(frozen=True)
class NkiTopkParams:
    token_tile: int = 128  # tokens per tile (on partitions)


def check_shapes(shapes: LayerShapes, params: NkiTopkParams) -> list[str]:
    found = []
    if not 1 <= params.token_tile <= PARTITIONS:
        found.append(f"token_tile={params.token_tile} must be in 1..{PARTITIONS} (tokens sit on partitions)")
    if shapes.hidden % PARTITIONS:
        found.append(f"hidden size {shapes.hidden} is not a multiple of {PARTITIONS} partitions")
    if not MAX8 <= shapes.experts <= PSUM_BANK_FP32:
        found.append(f"{shapes.experts} experts: the kernel needs {MAX8}..{PSUM_BANK_FP32} (max8 candidates, "
                     f"fp32 logits in one PSUM bank)")
    if not 1 <= shapes.top_k <= MAX8:
        found.append(f"top_k={shapes.top_k}: one max8 pass serves top-1..top-{MAX8}")
    weight_bytes = 4 * shapes.experts * (shapes.hidden // PARTITIONS)
    if weight_bytes > SBUF_BYTES // 2:
        found.append(f"the transposed router weight needs {weight_bytes} bytes per partition, more than half of "
                     f"trn2's {SBUF_BYTES}-byte SBUF")
    return found


def run(x: torch.Tensor, weight: torch.Tensor, top_k: int, params: NkiTopkParams,
        launch) -> tuple[torch.Tensor, torch.Tensor]:
    kernels = nki_module(KERNELS)
    affinities, index = launch(kernels.router_topk, x, weight, top_k, params.token_tile)
    return affinities, index.to(torch.int64)


register(
    Variant(
        layer="router",
        name="nki_topk",
        summary="NKI router: fp32 logits, fp32 softmax, max8 top-k, bf16 L1 normalisation (NxDI order)",
        reference=router_reference,
        params=NkiTopkParams,
        nki=run,
        check_shapes=check_shapes,
        rtol=TWO_BF16_ULPS_OF_MAX,
    )
)
