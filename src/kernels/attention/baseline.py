"""GQA attention with q/k RMSNorm and RoPE, as NxDI's NeuronAttentionBase computes it without kernels.

Per rank: q/k/v projections, per-head RMSNorm (NxDI CustomRMSNorm numerics) before RoPE, then
- context encoding: `softmax((q @ k^T) / sqrt(d) masked causally, fp32).to(dtype) @ v`;
- token generation: cached ("prior") and current ("active") scores computed separately, each divided by
  sqrt(d) in the model dtype, merged by NxDI's `manual_softmax` in fp32, and the two value products added;
then the o projection, whose output is this rank's partial sum. The KV cache is written in place.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from kernels.norm.baseline import rms_norm
from kernels.numerics import CompilerNumerics
from kernels.registry import Variant, register
from kernels.torch_ops import linear, linear_many
from kernels.types import AttentionInputs, AttentionWeights, Phase


def rope_tables(positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [B, S, D] as NxDI's RotaryEmbedding: fp32 frequencies, cast to the model dtype."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    freqs = positions.float().unsqueeze(-1) * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, heads, S, D]; cos/sin [B, S, D]; non-interleaved halves, model-dtype rounding per op."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return x * cos + rotate_half(x) * sin


def project_qkv(
    x: torch.Tensor, w: AttentionWeights, inputs: AttentionInputs
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x [B, S, H] -> q [B, Hq, S, D], k and v [B, Hkv, S, D], with q/k norm and RoPE applied."""
    batch, seq, _ = x.shape
    head_dim = w.q_norm.shape[0]
    weights = [w.q_proj, w.k_proj, w.v_proj]
    if batch * seq == 1:
        q, k, v = linear_many(x.reshape(-1), weights)
    else:
        q, k, v = (linear(x, weight) for weight in weights)
    q = rms_norm(q.reshape(batch, seq, -1, head_dim), w.q_norm, w.eps).transpose(1, 2)
    k = rms_norm(k.reshape(batch, seq, -1, head_dim), w.k_norm, w.eps).transpose(1, 2)
    v = v.reshape(batch, seq, -1, head_dim).transpose(1, 2)
    return apply_rope(q, inputs.cos, inputs.sin), apply_rope(k, inputs.cos, inputs.sin), v


def _grouped_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a [B, Hq, S, X] times b [B, Hkv, X, Y] -> [B, Hq, S, Y], each KV head serving its query group:
    the products of NxDI's repeat_kv without copying the cache. Computed in fp32 and rounded once, which
    is what a bf16 matmul with fp32 accumulation does (and far faster than torch's bf16 bmm on CPUs
    without bf16 units)."""
    batch, heads, seq, inner = a.shape
    kv_heads = b.shape[1]
    grouped = a.reshape(batch, kv_heads, heads // kv_heads * seq, inner)
    return torch.matmul(grouped.float(), b.float()).to(a.dtype).reshape(batch, heads, seq, -1)


def grouped_scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """q [B, Hq, S, D] against k [B, Hkv, T, D] -> [B, Hq, S, T]."""
    return _grouped_matmul(q, k.transpose(2, 3))


def grouped_values(p: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """p [B, Hq, S, T] times v [B, Hkv, T, D] -> [B, Hq, S, D]."""
    return _grouped_matmul(p, v)


def write_cache(cache: torch.Tensor, new: torch.Tensor, positions: torch.Tensor) -> None:
    """Store new [B, Hkv, S, D] at each row's positions [B, S] of cache [B, Hkv, max_seq, D]."""
    for b in range(new.shape[0]):
        cache[b].index_copy_(1, positions[b], new[b])


def _context(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, inputs: AttentionInputs) -> torch.Tensor:
    scores = grouped_scores(q, k) / math.sqrt(q.shape[-1])
    causal = inputs.positions.unsqueeze(2) >= inputs.positions.unsqueeze(1)  # [B, S_q, S_k]
    scores = torch.where(causal.unsqueeze(1), scores, torch.finfo(scores.dtype).min)
    probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    return grouped_values(probs, v)


def manual_softmax(prior: torch.Tensor, active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """NxDI's split softmax for one new token: one max and one denominator over prior and active scores."""
    top = torch.maximum(prior.max(dim=-1, keepdim=True).values, active)
    exp_prior, exp_active = torch.exp(prior - top), torch.exp(active - top)
    denominator = exp_prior.sum(dim=-1, keepdim=True) + exp_active.sum(dim=-1, keepdim=True)
    return exp_prior / denominator, exp_active / denominator


def _token(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, inputs: AttentionInputs) -> torch.Tensor:
    scale = math.sqrt(q.shape[-1])
    k_prior, v_prior = inputs.k_cache[:, :, : inputs.kv_len], inputs.v_cache[:, :, : inputs.kv_len]
    prior = grouped_scores(q, k_prior) / scale
    cached = torch.arange(inputs.kv_len).unsqueeze(0) < inputs.positions[:, :1]  # [B, kv_len]
    prior = torch.where(cached[:, None, None, :], prior, torch.finfo(prior.dtype).min).float()
    active = (grouped_scores(q, k) / scale).float()
    p_prior, p_active = manual_softmax(prior, active)
    return grouped_values(p_prior.to(q.dtype), v_prior) + grouped_values(p_active.to(q.dtype), v)


def attention_reference(
    x: torch.Tensor, weights: AttentionWeights, inputs: AttentionInputs, params: object = None
) -> torch.Tensor:
    """x [B, S, H] (normed) -> this rank's o_proj partial [B, S, H]; writes k/v into the cache."""
    q, k, v = project_qkv(x, weights, inputs)
    if inputs.phase is Phase.CONTEXT:
        out = _context(q, k, v, inputs)
    else:
        out = _token(q, k, v, inputs)
    write_cache(inputs.k_cache, k, inputs.positions)
    write_cache(inputs.v_cache, v, inputs.positions)
    batch, _, seq, _ = out.shape
    return linear(out.transpose(1, 2).reshape(batch, seq, -1), weights.o_proj)


def attention_compiled(x: torch.Tensor, weights: AttentionWeights, inputs: AttentionInputs, params: object = None,
                       *, numerics: CompilerNumerics) -> torch.Tensor:
    """attention_reference on the input as the compiler feeds the projections: the norm's fp32 result under
    MPA (kernels.numerics rule 3; a fp32 x bf16 product rounds to the weight's dtype)."""
    out = attention_reference(numerics.cut("attention_input", x), weights, inputs)
    return numerics.cut("attention_output", out)


register(
    Variant(
        layer="attention",
        name="baseline",
        summary="NxDI attention numerics (q/k norm before RoPE, split prior/active softmax in decode)",
        reference=attention_reference,
        compiled=attention_compiled,
    )
)
