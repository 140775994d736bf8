"""`nki_prefill_decode`: attention on NKI in both phases. Context encoding runs one kernel over the whole
prompt bucket (kernels.attention.nki_context_kernel); token generation runs `nki_decode`'s kernel
(kernels.attention.nki_decode_kernel) with its knobs. Both follow the baseline's numerics
(kernels.attention.baseline) and read the projection weights with the input dim first
(`transpose_weights`).

The context kernel serves NxDI's context-encoding call: every row's prompt right-padded to the bucket at
positions 0..S-1. The baseline masks padding only causally (a padded query attends to the prompt and the
padding before it, and its k/v are written to the cache, to be overwritten by token generation), and so
does the kernel; other positions are refused with a reason.

Against the compiled baseline the same boundaries as `nki_decode` apply: the rmsnorm | qkv input is lossy
under MPA, the o_proj | all-reduce output free.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from kernels.attention import nki_decode
from kernels.attention.baseline import attention_reference
from kernels.executors import Launch
from kernels.nki_support import nki_module
from kernels.registry import Variant, register
from kernels.types import AttentionInputs, AttentionWeights, LayerShapes, Phase

KERNELS = "kernels.attention.nki_context_kernel"
PARTITIONS = 128
BANK_FP32 = 512  # one PSUM bank per partition; the widest matmul output
MAX_CONTEXT = 1024  # the transposed probabilities of a query tile [keys / 128 tiles of 128 bf16] fit one bank
SBUF_BYTES = nki_decode.SBUF_BYTES
# The context kernel has the decode kernel's sources of error (accumulation order, the engine's exp and
# rsqrt, e * (1 / sum) for e / sum), each moving a bf16 rounding by at most one ulp upstream of the output.
RTOL = nki_decode.RTOL


@dataclass
class PrefillDecodeParams(nki_decode.DecodeAttentionParams):
    """nki_decode's knobs for token generation, plus the context kernel's weight streaming."""

    qkv_cols: int = 512  # q/k/v weight columns (whole heads) streamed per chunk: one PSUM bank of fp32 outputs
    out_cols: int = 1024  # o_proj^T columns streamed per chunk (runs of 2 KiB per row; a PSUM bank per 512)


def _context_problems(shapes: LayerShapes, params: PrefillDecodeParams) -> list[str]:
    d, item = shapes.head_dim, shapes.dtype.itemsize
    problems = []
    if not d <= params.qkv_cols <= BANK_FP32:
        problems.append(f"qkv_cols={params.qkv_cols} must be in [head_dim={d}, {BANK_FP32}] (whole heads, one PSUM "
                        f"bank)")
    if params.out_cols < 1:
        problems.append(f"out_cols={params.out_cols} must be >= 1")
    if params.cores > 1 and shapes.q_heads % params.cores:
        problems.append(f"{shapes.q_heads} q heads do not split evenly over cores={params.cores}")
    longest = max(shapes.context_lengths)
    if longest > MAX_CONTEXT:
        problems.append(f"context bucket {longest} exceeds {MAX_CONTEXT} (a query tile's transposed probabilities "
                        f"are staged in one PSUM bank)")
    tiles = shapes.batch * -(-longest // PARTITIONS)
    # live together while projecting (x^T, every q/k/v row, q^T, K^T, a weight chunk) and while attending
    # (q^T, K^T, the V rows, attn^T, an o_proj^T chunk, one query tile's fp32 softmax rows)
    q_t = tiles * shapes.q_heads * PARTITIONS * item
    k_t = shapes.batch * shapes.kv_heads * longest * item
    projecting = (tiles * (shapes.hidden + (shapes.q_heads + 2 * shapes.kv_heads) * d) * item + q_t + k_t
                  + params.qkv_cols * shapes.hidden // PARTITIONS * item)
    attending = (2 * q_t + k_t + tiles * shapes.kv_heads * d * item + shapes.q_heads * params.out_cols * item
                 + 4 * longest * 4)
    need = max(projecting, attending)
    if need > SBUF_BYTES * 7 // 8:
        problems.append(f"~{need // 1024} KiB of SBUF per partition for the context bucket {longest} x batch "
                        f"{shapes.batch} leaves too little of trn2's {SBUF_BYTES // 1024} KiB")
    return problems


def check_shapes(shapes: LayerShapes, params: PrefillDecodeParams) -> list[str]:
    """nki_decode's checks (head_dim, hidden, heads, KV buckets) plus the context kernel's."""
    problems = nki_decode.check_shapes(shapes, params)
    return problems + [p for p in _context_problems(shapes, params) if p not in problems]


def run_context(x: torch.Tensor, weights: AttentionWeights, inputs: AttentionInputs, *,
                params: PrefillDecodeParams, launch: Launch) -> torch.Tensor:
    """x [B, S, H] -> this rank's o_proj partial [B, S, H]; the kernel writes cache positions [0, S)."""
    batch, seq, hidden = x.shape
    if not torch.equal(inputs.positions, torch.arange(seq).expand(batch, seq)):
        raise ValueError("nki_prefill_decode's context kernel serves prompt buckets at positions 0..S-1 in every "
                         "row (NxDI's context encoding)")
    head_dim = weights.q_norm.shape[0]
    kernel = nki_module(KERNELS).context_attention
    out = launch(
        kernel[params.cores] if params.cores > 1 else kernel, x.reshape(batch * seq, hidden), weights.q_proj.T,
        weights.k_proj.T, weights.v_proj.T, weights.o_proj.T, weights.q_norm, weights.k_norm,
        inputs.cos.reshape(batch * seq, head_dim), inputs.sin.reshape(batch * seq, head_dim), inputs.k_cache,
        inputs.v_cache, weights.eps,
        1.0 / math.sqrt(head_dim), params.qkv_cols, params.out_cols,
    )
    return out.view(batch, seq, hidden)


def run(x: torch.Tensor, weights: AttentionWeights, inputs: AttentionInputs, *, params: PrefillDecodeParams,
        launch: Launch) -> torch.Tensor:
    if inputs.phase is Phase.TOKEN:
        return nki_decode.run(x, weights, inputs, params=params, launch=launch)
    return run_context(x, weights, inputs, params=params, launch=launch)


register(
    Variant(
        layer="attention",
        name="nki_prefill_decode",
        summary="NKI attention in both phases: a context-encoding kernel (projections, q/k norm + RoPE, causal "
                "softmax over whole rows skipping key tiles above the diagonal, cache write, o projection) and "
                "nki_decode's kernel in token generation",
        reference=attention_reference,
        params=PrefillDecodeParams,
        nki=run,
        check_shapes=check_shapes,
        transpose_weights=True,
        rtol=RTOL,
    )
)
