"""experts.grouped_v2: the expert block in NKI in both phases: a fused decode kernel on both physical cores, and
in context encoding the blockwise pair of kernels.experts.blockwise (gate/up + SwiGLU | down + affinity + scatter).

Which kernel runs follows the baseline's own switch (kernels.experts.selection.uses_selective_loading): the
selective-loading path (decode, and prompts so short that their tokens reach fewer than all experts) runs the
decode kernel, the blockwise path the pair. The pair's numerics are the baseline's blockwise ones (ascending
expert order, a rounding after every add); with `valid` (the model passes the prompt's real tokens in context
encoding) padding tokens get no expert and a zero output row, in both kernels and the reference. Declared
tolerance, both phases: one bf16 ulp of the largest output (TensorE's fp32 accumulation order differs from
torch's, so a product can round to the neighbouring bf16 value; measured at most 0.0044 of max|ref| for the pair
at real shapes).

Decode kernel:

The selected experts are computed in pairs, half of the pairs on each physical core of the logical core
(an SPMD grid of `cores` program instances), so each core streams half the weight bytes over its own 16
DMA queues. Weights are gathered by indirect DMA in large contiguous runs through rings of SBUF buffers,
issued as early as their buffers allow; gate/up, silu(gate) * up, down and the affinity scaling run per
expert with the baseline's roundings, and each token's sum over its k experts (fp32, one rounding) is one
DMA-engine reduction, after a core barrier when the token's experts sit on both cores.

Against the compiled baseline with MPA (kernels.numerics): by default it rounds as torch does eagerly, so the
gate_up | silu, silu | silu*up and down | affinity roundings differ from the compiler's fused ones (rules 1, 4);
`fp32_swiglu` and `fp32_affinity` reproduce those inside the kernel, leaving one lossy boundary, its bf16
input (rule 3), which only a kernel that also takes in the post-attention norm could remove. With MPA off on
both sides the default schedule is the baseline's. Verdicts: README "The accuracy wall".
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from kernels.experts import blockwise
from kernels.experts.baseline import experts_scheduled
from kernels.experts.launch import grouped_v2_arguments
from kernels.experts.nki_tiling import pair_problems
from kernels.experts.selection import uses_selective_loading
from kernels.experts.selective_v1 import ONE_BF16_ULP_OF_MAX  # the same reason, plus the fp32 expert sum's order
from kernels.nki_support import nki_module
from kernels.numerics import CompilerNumerics, eager
from kernels.registry import Variant, register
from kernels.types import ALL_PHASES, ExpertWeights, LayerShapes, Phase

KERNELS = "kernels.experts.grouped_v2_kernel"


@dataclass(frozen=True)
class GroupedV2Params:
    cores: int = 2  # program instances = physical cores of the logical core (2 at LNC=2)
    k_tiles_per_dma: int | None = None  # 128-row tiles of hidden per gate/up load (None: a whole expert)
    i_chunks_per_dma: int | None = None  # 64-row chunks of I per down load (None: a whole expert)
    last_i_chunks: int = 1  # chunks in each core's last down load (0: no smaller last load)
    bufs: int | None = None  # loads in flight per weight kind (None: all of a core's, if SBUF allows)
    wide_pairs: int | None = None  # leading pairs per core with the wide gate/up layout (None: all but the last)
    block_size: int = 128  # context encoding: token slots per block of one expert (the blockwise pair)
    # Roundings inside (kernels.numerics): fp32_swiglu keeps gate, up and silu in fp32 and rounds silu * up once
    # (the compiler's MPA rule 1); fp32_affinity scales the fp32 down output and rounds once (rule 4).
    fp32_swiglu: bool = False
    fp32_affinity: bool = False


def kernel_numerics(params: GroupedV2Params, dtype: torch.dtype) -> CompilerNumerics:
    """The compiler rules the kernel reproduces inside, as the numerics its reference runs with."""
    if not (params.fp32_swiglu or params.fp32_affinity):
        return eager(dtype)
    cuts = (set() if params.fp32_swiglu else {"gate_up", "silu"}) | (set() if params.fp32_affinity else {"down"})
    return CompilerNumerics(mpa=True, cuts=frozenset(cuts), dtype=dtype)


def reference(x: torch.Tensor, affinities: torch.Tensor, index: torch.Tensor, weights: ExpertWeights,
              valid: torch.Tensor | None = None, params: GroupedV2Params = GroupedV2Params()) -> torch.Tensor:
    """The baseline's path for this token count with the kernels' roundings; zero rows for padding tokens."""
    out = experts_scheduled(x, affinities, index, weights, kernel_numerics(params, x.dtype))
    return out if valid is None else out.masked_fill(~valid.unsqueeze(1), 0)


def check_shapes(shapes: LayerShapes, params: GroupedV2Params) -> list[str]:
    found = pair_problems(shapes, params.cores, params.k_tiles_per_dma, params.i_chunks_per_dma,
                          params.last_i_chunks, params.bufs)
    for tokens in shapes.tokens(Phase.CONTEXT):
        if uses_selective_loading(tokens, shapes.top_k, shapes.experts):
            found += [f"context encoding of {tokens} tokens: {problem}" for problem in pair_problems(
                replace(shapes, batch=tokens), params.cores, params.k_tiles_per_dma, params.i_chunks_per_dma,
                params.last_i_chunks, params.bufs)]
    if any(not uses_selective_loading(t, shapes.top_k, shapes.experts) for t in shapes.tokens(Phase.CONTEXT)):
        found += [f"context encoding: {problem}" for problem in blockwise.problems(
            shapes.hidden, shapes.intermediate, params.block_size, shapes.dtype.itemsize, params.cores)]
    return found


def run(x: torch.Tensor, affinities: torch.Tensor, index: torch.Tensor, weights: ExpertWeights,
        valid: torch.Tensor | None = None, params: GroupedV2Params = GroupedV2Params(), launch=None
        ) -> torch.Tensor:
    if not uses_selective_loading(x.shape[0], index.shape[1], weights.gate_up.shape[0]):
        return blockwise.run_pair(x, affinities, index, weights, valid, params.block_size, params.cores,
                                  params.fp32_swiglu, params.fp32_affinity, launch)
    if valid is not None:  # padding tokens pull in no expert: only the real ones go through the kernel
        out = torch.zeros_like(x)
        if not valid.any():
            return out
        out[valid] = run(x[valid], affinities[valid], index[valid], weights, None, params, launch)
        return out
    kernels = nki_module(KERNELS)
    cores, arguments = grouped_v2_arguments(x, affinities, index, weights.gate_up, weights.down, params)
    return launch(kernels.grouped_v2[cores], *arguments)


register(
    Variant(
        layer="experts",
        name="grouped_v2",
        summary="NKI experts in both phases: decode = fused block on both physical cores (expert pairs, streamed "
                "weights); context = blockwise pair cut at silu*up (gate/up+SwiGLU | down+affinity+scatter)",
        reference=reference,
        params=GroupedV2Params,
        nki=run,
        phases=ALL_PHASES,
        check_shapes=check_shapes,
        rtol=ONE_BF16_ULP_OF_MAX,
    )
)
