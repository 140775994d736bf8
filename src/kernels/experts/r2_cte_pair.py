"""experts.r2_cte_pair: the rounding schedule of the second-place team's shipped context-encoding MoE pair,
as a torch model (no NKI code), to test the accuracy-wall emulation against a reported device outcome.

R2 (charleshong3/nki-moe-7013, report §V; accuracy-wall.md "What passed"): kernel 1 gathers each block's
gate/up weights, runs the matmul, SiLU and multiply in fp32 and casts to bf16 once, exactly at the free cut
point silu*up | down; kernel 2 runs the down matmul, scales by the affinity in fp32 and casts once, then
scatter-adds by token. Here the pair reads the bf16 MoE input (a custom call's operand) and follows the
compiler's MPA rules inside (kernels.numerics rules 1 and 4) with NxD's ascending-expert accumulation. With the
compiled reference (`accuracy.reference=compiled`) it is a custom call: with MPA off on both sides it agrees
with the baseline (as on the device), with MPA on its bf16 input is the lossy input | gate_up boundary.
Context encoding only; decode runs the baseline, as R2 shipped.
"""
from __future__ import annotations

import torch

from kernels.experts.baseline import experts_scheduled
from kernels.numerics import CompilerNumerics
from kernels.registry import Variant, register
from kernels.types import ExpertWeights, Phase


def r2_pair_reference(x: torch.Tensor, affinities: torch.Tensor, index: torch.Tensor, weights: ExpertWeights,
                      valid: torch.Tensor | None = None, params: object = None) -> torch.Tensor:
    return experts_scheduled(x, affinities, index, weights, CompilerNumerics(mpa=True, dtype=x.dtype))


register(
    Variant(
        layer="experts",
        name="r2_cte_pair",
        summary="rounding model of R2's context-encoding pair (fp32 SwiGLU cast once at silu*up | down, fp32 down "
                "x affinity cast once); torch only, for the accuracy-wall emulation",
        reference=r2_pair_reference,
        phases=frozenset({Phase.CONTEXT}),
        transpose_weights=True,
        test_only=True,
    )
)
