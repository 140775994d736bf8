"""`nki_decode`: token-generation attention as one NKI kernel (kernels.attention.nki_decode_kernel) with
the baseline's numerics (kernels.attention.baseline); context encoding falls back to the baseline.

The kernel reads the projection weights with the input dim first, so the variant asks the model to store
them transposed (`transpose_weights`): `w.q_proj.T` is then a contiguous [H, Hq*D] tensor the interpreter
passes without a copy. The KV cache is written by the kernel, in place (`decode_attention`); the device
slot launches the same program as `decode_attention_new_kv`, which returns the new k/v for NxDI's KV-cache
manager instead (model.neuron.layer_slots). It is launched on both physical cores of the logical core
(`decode_attention[2]`, LNC=2), which split the weight streaming between them and exchange partial sums on
chip (nisa.sendrecv); `cores=1` runs it on one core.

Against the compiled baseline with MPA (kernels.numerics rule 3) its input, the bf16 normed hidden state, is
the lossy rmsnorm | qkv boundary; its output (o_proj | all-reduce) is free. With MPA off on both sides only
its documented accumulation-order differences remain.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels.attention.baseline import attention_reference
from kernels.attention.launch import decode_arguments
from kernels.executors import Launch
from kernels.nki_support import nki_module
from kernels.registry import Variant, register
from kernels.types import AttentionInputs, AttentionWeights, LayerShapes, Phase

KERNELS = "kernels.attention.nki_decode_kernel"
PARTITIONS = 128
BANK_BYTES = 2048  # one PSUM bank per partition: 512 fp32 or 1024 bf16
SCORE_BANKS = 4  # PSUM banks a group's scores (and the active column) may span
SBUF_BYTES = 212984  # usable SBUF per partition on trn2 (trn3 has more)
# Not bit-exact, for reasons no kernel can remove: fp32 sums (projections, the norm's sum of squares, the
# softmax denominator, the value product) are accumulated in another order than torch's, exp is the
# engine's rather than torch's (they differ by 1-2 fp32 ulp on ~40% of inputs), and p = e * (1 / sum)
# stands in for e / sum. Each can move a bf16 rounding by one ulp somewhere upstream, and the output then
# lands one bf16 ulp away: at most 2**-7 of max|out| (an element in max|out|'s binade [2^e, 2^(e+1)) has
# an ulp of 2^(e-7)). Over 150 random seeds and row positions per bucket (real TP=4 shapes, kv 128, 256,
# 640) the worst error was 1.44 * 2**-8. A wrong mask, position or rounding point is far above this.
RTOL = 2.0**-7


@dataclass
class DecodeAttentionParams:
    """Work split and tiling knobs; they move data differently (kv_tile and cores also regroup fp32 sums)."""

    cores: int = 2  # program instances: the physical cores of the logical core (LNC=2) sharing the weights
    kv_tile: int = 128  # most cache positions per PE transpose / value-product chunk (partitions, <= 128)
    q_chunks: int = 1  # DMAs per core for its q_proj^T rows (each a contiguous run per partition)
    out_heads_early: int = -1  # heads of o_proj^T columns streamed before the exchanges (-1: 2 up to KV
    # bucket 256, else 1, so that the queues stay busy until the partial sums are ready, not longer)
    out_heads_mid: int = 1  # more heads streamed between the partial-sum exchange and the cache swap
    cache_position: int = 2  # the KV cache streams before (0), between (1) or after (2) the q and k/v weights


def _score_problems(shapes: LayerShapes, params: DecodeAttentionParams) -> list[str]:
    """A group's scores and its transposed probabilities are staged in PSUM whole."""
    group = shapes.q_heads // max(shapes.kv_heads, 1)
    problems = []
    for kv in shapes.kv_lengths:
        if (kv + 1) * 4 > SCORE_BANKS * BANK_BYTES:
            problems.append(f"KV bucket {kv}: the {kv + 1} fp32 scores per head exceed the {SCORE_BANKS} PSUM banks "
                            f"the kernel budgets for them (KV buckets up to {SCORE_BANKS * BANK_BYTES // 4 - 1})")
        chunks = -(-kv // min(params.kv_tile, kv))
        if (chunks + 1) * group * 2 > BANK_BYTES:
            problems.append(f"KV bucket {kv}: {chunks} probability chunks of {group} heads do not fit one PSUM bank; "
                            f"raise kv_tile")
    return problems


def _param_problems(params: DecodeAttentionParams) -> list[str]:
    problems = []
    if params.cores not in (1, 2):
        problems.append(f"cores={params.cores} must be 1 or 2 (the physical cores of a logical core)")
    if not 1 <= params.kv_tile <= PARTITIONS:
        problems.append(f"kv_tile={params.kv_tile} must be in [1, {PARTITIONS}]")
    if params.q_chunks < 1:
        problems.append(f"q_chunks={params.q_chunks} must be >= 1")
    if params.out_heads_early < -1:
        problems.append(f"out_heads_early={params.out_heads_early} must be >= 0 (or -1: automatic)")
    if params.out_heads_mid < 0:
        problems.append(f"out_heads_mid={params.out_heads_mid} must be >= 0")
    if params.cache_position not in (0, 1, 2):
        problems.append(f"cache_position={params.cache_position} must be 0, 1 or 2")
    return problems


def _sbuf_problems(shapes: LayerShapes, params: DecodeAttentionParams) -> list[str]:
    """Every weight a core streams stays resident: its q_proj^T rows, k_proj^T and/or v_proj^T, its o_proj^T
    columns, plus the KV cache rows and K^T of every (row, KV head)."""
    item = shapes.dtype.itemsize
    cores, hidden, d = params.cores, shapes.hidden, shapes.head_dim
    q = hidden // (PARTITIONS * cores) * shapes.q_heads * d * item
    kv = (3 - cores) * hidden // PARTITIONS * shapes.kv_heads * d * item
    out = shapes.q_heads * hidden // cores * item
    longest = max(shapes.kv_lengths)
    cache = shapes.batch * shapes.kv_heads * (2 * -(-longest // min(params.kv_tile, longest)) * d + longest) * item
    need = q + kv + out + cache
    if need > SBUF_BYTES * 7 // 8:
        return [f"~{need // 1024} KiB of SBUF per partition for the resident weights and cache rows (cores={cores}) "
                f"leaves too little of trn2's {SBUF_BYTES // 1024} KiB"]
    return []


def check_shapes(shapes: LayerShapes, params: DecodeAttentionParams) -> list[str]:
    """Why the kernel cannot serve these per-rank decode shapes (empty when it can)."""
    d, heads, kv_heads = shapes.head_dim, shapes.q_heads, shapes.kv_heads
    problems = []
    if not 2 <= d <= PARTITIONS or d & (d - 1):
        problems.append(f"head_dim {d} must be a power of two in [2, {PARTITIONS}] (a head fits one PE tile; "
                        f"the 1/D mean and the 1/sqrt(D) scale are exact only then)")
    if shapes.hidden % (PARTITIONS * params.cores):
        problems.append(f"hidden size {shapes.hidden} must be a multiple of {PARTITIONS} x cores={params.cores} "
                        f"(each core's share of x^T and of the output columns is tiled by partitions)")
    if kv_heads < 1 or heads % kv_heads:
        problems.append(f"{heads} q heads are not a whole number of groups of {kv_heads} KV heads")
    elif heads // kv_heads > PARTITIONS:
        problems.append(f"{heads // kv_heads} q heads per KV head exceed {PARTITIONS} partitions")
    if heads + kv_heads > PARTITIONS:
        problems.append(f"{heads} q + {kv_heads} k heads exceed the {PARTITIONS} rows of the norm/RoPE tile")
    if shapes.batch > PARTITIONS:
        problems.append(f"batch {shapes.batch} exceeds {PARTITIONS} (the rows of the norm/RoPE tile)")
    elif shapes.hidden // (PARTITIONS * params.cores) * shapes.batch * 4 > BANK_BYTES:
        problems.append(f"batch {shapes.batch}: the o projection's accumulators exceed one PSUM bank")
    elif (heads + 2 * kv_heads) * shapes.batch * 4 > BANK_BYTES:
        problems.append(f"batch {shapes.batch} x {heads + 2 * kv_heads} q/k/v heads: the projection accumulators "
                        f"exceed one PSUM bank ({BANK_BYTES // 4} fp32)")
    problems = _param_problems(params) + problems
    if not problems:
        problems += _score_problems(shapes, params) + _sbuf_problems(shapes, params)
    return problems


def run(x: torch.Tensor, weights: AttentionWeights, inputs: AttentionInputs, *, params: DecodeAttentionParams,
        launch: Launch) -> torch.Tensor:
    """x [B, 1, H] -> this rank's o_proj partial [B, 1, H]; the kernel writes the new k and v into the cache."""
    batch, seq, hidden = x.shape
    if inputs.phase is not Phase.TOKEN or seq != 1:
        raise ValueError(f"nki_decode serves token generation (one token per row), got {inputs.phase.value} S={seq}")
    kernel = nki_module(KERNELS).decode_attention
    out = launch(kernel[params.cores] if params.cores > 1 else kernel,
                 *decode_arguments(x, weights.q_proj.T, weights.k_proj.T, weights.v_proj.T, weights.o_proj.T,
                                   weights.q_norm, weights.k_norm, inputs.cos, inputs.sin, inputs.positions,
                                   inputs.k_cache, inputs.v_cache, inputs.kv_len, weights.eps, params))
    return out.view(batch, seq, hidden)


register(
    Variant(
        layer="attention",
        name="nki_decode",
        summary="NKI decode attention: fused q/k/v projection, q/k norm + RoPE, split softmax over the KV cache "
                "with the cache update, o projection (context encoding: baseline)",
        reference=attention_reference,
        params=DecodeAttentionParams,
        nki=run,
        phases=frozenset({Phase.TOKEN}),
        check_shapes=check_shapes,
        transpose_weights=True,
        rtol=RTOL,
    )
)
