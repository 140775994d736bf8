"""experts.r1_tkg_fused: the rounding schedule of the first-place team's shipped fused decode MoE kernel, as a
torch model (no NKI code), to test the accuracy-wall emulation against a reported device outcome (it passed).

R1 (thustorage/NKI-MoE, kernels/moe/selective_expert_impl.py; accuracy-wall.md "What passed"), per token and
per chosen expert: gate and up leave TensorE in fp32 (PSUM); silu(gate) is rounded to bf16, multiplied by the fp32
up and rounded to bf16; the down product is rounded to bf16, then scaled by the fp32 affinity and rounded again;
the experts' bf16 results are summed in bf16 in top-k order (the kernel's comments: "to match nkilib
precision"). The kernel reads the bf16 normed input (a custom call's operand). Decode only; context encoding
runs the baseline, as R1 shipped.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels.registry import Variant, register
from kernels.torch_ops import linear_many
from kernels.types import ExpertWeights, Phase


def r1_fused_reference(x: torch.Tensor, affinities: torch.Tensor, index: torch.Tensor, weights: ExpertWeights,
                       valid: torch.Tensor | None = None, params: object = None) -> torch.Tensor:
    dtype, rows = x.dtype, []
    for t, chosen in enumerate(index.tolist()):
        gate, up = torch.stack(linear_many(x[t], [weights.gate_up[e].mT for e in chosen], torch.float32)).chunk(2, -1)
        hidden = (F.silu(gate).to(dtype).float() * up).to(dtype)
        down = torch.stack(linear_many(hidden, [weights.down[e].mT for e in chosen], dtype))
        scaled = (down.float() * affinities[t].float().unsqueeze(1)).to(dtype)
        out = scaled[0]
        for k in range(1, len(chosen)):
            out = out + scaled[k]
        rows.append(out)
    return torch.stack(rows)


register(
    Variant(
        layer="experts",
        name="r1_tkg_fused",
        summary="rounding model of R1's fused decode MoE kernel (silu rounded, x fp32 up rounded, down rounded, "
                "x affinity rounded, bf16 sum in top-k order); torch only, for the accuracy-wall emulation",
        reference=r1_fused_reference,
        phases=frozenset({Phase.TOKEN}),
        transpose_weights=True,
        test_only=True,
    )
)
