"""The Neuron compiler's rounding and fusion rules, as the compiled baseline applies them (one place).

The contest compares a submission with the baseline *as neuronx-cc compiles it* (../shared/reference/
accuracy-wall.md). Its numerics differ from torch's eager ones where the compiler fuses a chain of ops into
one fp32 schedule and so skips a bf16 rounding that eager torch performs. An NKI kernel is a custom call,
opaque to those passes: its operands and results are materialised in their declared dtype at its boundary.

Sources: `R2` = charleshong3/nki-moe-7013 (the second-place report, nki_moe_7013_report.pdf §IV and Tables
I-II, and the comments of its qwen_with_nki.py); `NXDI` = neuronx-distributed-inference, `get_compiler_args`
of models/qwen3_moe/modeling_qwen3_moe.py (hardware-and-model.md §8.1); `SDK` = the neuronx-cc release note
introducing `--enable-mixed-precision-accumulation` ("perform intermediate computations of an operation in
FP32 regardless of the operation's defined datatype").

Rules (each applied by the baseline's `compiled` functions in kernels/<layer>/baseline.py through the
methods below; NKI variants never see them, they receive materialised inputs):

1. `swiglu` with MPA (mixed-precision accumulation, on in NXDI's compiler args): the compiler fuses
   `dot -> convert -> silu -> mul` into one fp32 pipeline: gate and up leave the gate_up matmul unrounded,
   silu and the product run in fp32, and the product is rounded once to bf16, where the down matmul reads it
   (R2 §IV; qwen_with_nki.py: "MPA only fuses gate_up->silu->mul", the silu*up | down boundary measured free).
2. `swiglu` without MPA (`--disable-mixed-precision-accumulation`): silu in bf16 (rounded), then a bf16 x bf16
   multiply with one rounding (R2 §IV) - torch's eager order, gate and up rounded at the matmul.
3. `norm_output` with MPA: residual add + RMSNorm + the following matmul are one schedule: the norm's fp32
   result feeds the next matmul without a bf16 rounding (R2 §IV; Table II: input | gate_up lossy;
   qwen_with_nki.py "Sprint 7.3": the rmsnorm output lowered "to fp32-internal + one bf16 cast"). Modelled as
   part of MPA (an inference: with MPA off on both graphs, R2's context-encoding pair, whose first kernel reads
   the bf16 MoE input, matched the baseline). The router reads the rounded value: NxD casts the bf16 norm
   output to fp32 for its fp32 matmul, and nothing shows that convert pair elided.
4. `expert_output` with MPA: the down matmul's fp32 result is scaled by the affinity before one bf16 rounding
   (qwen_with_nki.py `_allblk_matmul_with_aff`: "keeps fp32 from nc_matmul psum through affinity multiply
   before bf16 cast, matching the compiler's MPA schedule for down_dot -> aff_multiply fusion"). Without MPA
   the down output is rounded, then scaled and rounded again (eager).
5. `materialise`: a custom call (every NKI variant, and every cut point the `cutpoints` stage inserts) rounds
   the values crossing it to the model dtype (R2 §IV; qwen_with_nki.py: the NKI custom call "forces a bf16
   materialization at the kernel boundary which breaks the compiler's MPA fusion").
6. `auto_cast`: NXDI compiles with `--auto-cast=none`, so the fp32 router matmul stays fp32. `matmult` makes
   the compiler cast fp32 matmul operands to bf16 (accumulating in fp32): the router's input and weight.

Known limits: R2's code comments also report MPA as a no-op on the stock context-encoding graph (the torch
blockwise path's dots already read bf16 operands); these rules are phase-independent and reproduce Table II
(measured on a standalone T = 512 graph) instead. Fusions inside attention (projection -> q/k norm) are not
modelled: no published measurement covers them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

AUTO_CAST = ("none", "matmult")

# Cut points: where the `cutpoints` stage (or an NKI kernel's boundary) may materialise a value.
# name -> (layer block, label as the published table writes it)
CUT_POINTS: dict[str, tuple[str, str]] = {
    "attention_input": ("attention", "rmsnorm | qkv"),
    "attention_output": ("attention", "o_proj | all-reduce"),
    "norm_input": ("attention", "residual add | rmsnorm"),
    "router_input": ("moe", "rmsnorm | router"),
    "moe_input": ("moe", "input | gate_up"),
    "gate_up": ("moe", "gate_up | silu"),
    "silu": ("moe", "silu | silu*up"),
    "swiglu": ("moe", "silu*up | down+affinity+scatter"),
    "down": ("moe", "down | affinity+scatter"),
    "lm_head_input": ("lm_head", "rmsnorm | lm_head"),
    "logits": ("lm_head", "lm_head | sampling"),
}


@dataclass(frozen=True)
class CompilerNumerics:
    """The compiler settings that change the baseline's roundings, and the cut points inserted into it."""

    mpa: bool = True  # --enable-mixed-precision-accumulation (NXDI's default) vs --disable-...
    auto_cast: str = "none"  # --auto-cast
    cuts: frozenset[str] = field(default_factory=frozenset)
    dtype: torch.dtype = torch.bfloat16  # the model dtype: what a rounding or a custom call stores

    def __post_init__(self) -> None:
        if self.auto_cast not in AUTO_CAST:
            raise ValueError(f"compiler.auto_cast={self.auto_cast}: choose one of {', '.join(AUTO_CAST)}")
        unknown = sorted(set(self.cuts) - set(CUT_POINTS))
        if unknown:
            raise ValueError(f"unknown cut point(s) {', '.join(unknown)}; known: {', '.join(CUT_POINTS)}")

    def with_cut(self, point: str) -> CompilerNumerics:
        return CompilerNumerics(self.mpa, self.auto_cast, self.cuts | {point}, self.dtype)

    def fused(self, point: str) -> bool:
        """MPA keeps the value at `point` in fp32, unless a cut point materialises it."""
        return self.mpa and point not in self.cuts

    def cut(self, point: str, x: torch.Tensor) -> torch.Tensor:
        """x materialised in the model dtype when a cut point sits at `point` (rule 5), else unchanged."""
        return materialise(x, self.dtype) if point in self.cuts else x

    def norm_output(self, normed_fp32: torch.Tensor) -> torch.Tensor:
        """Rule 3: the RMSNorm result as the next matmul reads it (fp32 when fused, else rounded once)."""
        return normed_fp32 if self.mpa else normed_fp32.to(self.dtype)

    def gate_up_dtype(self) -> torch.dtype:
        """Rules 1-2: the dtype the gate_up matmul's result leaves in."""
        return torch.float32 if self.fused("gate_up") else self.dtype

    def swiglu(self, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        """Rules 1-2: silu(gate) * up rounded to the model dtype as the compiler schedules it; gate and up as
        the gate_up matmul left them (gate_up_dtype), or materialised by a cut point."""
        dtype = self.dtype
        gate, up = self.cut("gate_up", gate), self.cut("gate_up", up)
        if not self.mpa:
            return F.silu(gate.to(dtype)) * up.to(dtype)
        act = F.silu(gate.float())
        if "silu" in self.cuts:
            return act.to(dtype) * up.to(dtype)
        return (act * up.float()).to(dtype)

    def down_dtype(self) -> torch.dtype:
        """Rule 4: the dtype the down matmul's result leaves in."""
        return torch.float32 if self.fused("down") else self.dtype

    def expert_output(self, down: torch.Tensor, affinity: torch.Tensor) -> torch.Tensor:
        """Rule 4: an expert's down output (as down_dtype left it) scaled by its affinity, in the model dtype."""
        if down.dtype != self.dtype:
            return (down.float() * affinity.float()).to(self.dtype)
        return down * affinity

    def router_operands(self, x: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rule 6: the router matmul's operands (bf16-rounded under --auto-cast=matmult)."""
        if self.auto_cast == "matmult":
            return x.to(torch.bfloat16).float(), weight.to(torch.bfloat16).float()
        return x, weight


def materialise(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Rule 5: a value crossing a custom-call boundary, stored in the call's declared dtype."""
    return x if x.dtype == dtype or not x.is_floating_point() else x.to(dtype)


def eager(dtype: torch.dtype) -> CompilerNumerics:
    """Torch's eager roundings, which are the compiler's without MPA (rules 2-4 unfused)."""
    return CompilerNumerics(mpa=False, dtype=dtype)
