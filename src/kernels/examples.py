"""Synthetic per-rank inputs for every layer type, at the shapes a workload presents.

The compile stage traces NKI variants on them (hardware checks, instruction counts, MACs, estimates),
tests and benchmarks call kernels with them. Values have the scales of the seeded models (unit-RMS
activations, 1/sqrt(fan_in) weights) so numerics are representative.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels.attention.baseline import rope_tables
from kernels.types import AttentionInputs, AttentionWeights, ExpertWeights, LayerShapes, Phase, stored

ROPE_THETA = 1_000_000.0  # Qwen3's rope_theta


@dataclass(frozen=True)
class Call:
    """One slot call: the phase, the arguments, and a label of the shapes (for reports)."""

    phase: Phase
    args: tuple
    label: str


class _Maker:
    def __init__(self, shapes: LayerShapes, seed: int, transposed: bool):
        self.shapes, self.transposed = shapes, transposed
        self.generator = torch.Generator().manual_seed(seed)

    def normal(self, *shape: int, std: float = 1.0, dtype: torch.dtype | None = None) -> torch.Tensor:
        values = torch.randn(shape, generator=self.generator) * std
        return values.to(dtype or self.shapes.dtype)

    def weight(self, *shape: int, fan_in: int) -> torch.Tensor:
        return stored(self.normal(*shape, std=fan_in**-0.5), self.transposed)


def norm_call(m: _Maker, phase: Phase, tokens: int) -> tuple:
    h = m.shapes.hidden
    return m.normal(tokens, h), 1.0 + m.normal(h, std=0.1), 1e-6, m.normal(tokens, h)


def attention_call(m: _Maker, phase: Phase, tokens: int, kv_len: int) -> tuple:
    s = m.shapes
    batch = s.batch
    seq = tokens // batch
    q_out, kv_out = s.q_heads * s.head_dim, s.kv_heads * s.head_dim
    weights = AttentionWeights(
        m.weight(q_out, s.hidden, fan_in=s.hidden), m.weight(kv_out, s.hidden, fan_in=s.hidden),
        m.weight(kv_out, s.hidden, fan_in=s.hidden), m.weight(s.hidden, q_out, fan_in=q_out),
        1.0 + m.normal(s.head_dim, std=0.1), 1.0 + m.normal(s.head_dim, std=0.1), 1e-6,
    )
    max_seq = max(kv_len, seq)
    k_cache = m.normal(batch, s.kv_heads, max_seq, s.head_dim)
    v_cache = m.normal(batch, s.kv_heads, max_seq, s.head_dim)
    if phase is Phase.CONTEXT:
        positions = torch.arange(seq).expand(batch, seq)
    else:
        positions = torch.full((batch, 1), kv_len - 1)  # the last position of the KV bucket
    cos, sin = rope_tables(positions, s.head_dim, ROPE_THETA, s.dtype)
    inputs = AttentionInputs(phase, positions, cos, sin, k_cache, v_cache, kv_len if phase is Phase.TOKEN else seq)
    return m.normal(batch, seq, s.hidden), weights, inputs


def router_call(m: _Maker, phase: Phase, tokens: int) -> tuple:
    s = m.shapes
    return m.normal(tokens, s.hidden), m.normal(s.experts, s.hidden, std=1.5 * s.hidden**-0.5,
                                                dtype=torch.float32), s.top_k


def experts_call(m: _Maker, phase: Phase, tokens: int) -> tuple:
    s = m.shapes
    scores = torch.rand(tokens, s.experts, generator=m.generator)
    index = scores.topk(s.top_k, dim=1).indices
    affinities = torch.softmax(m.normal(tokens, s.top_k, dtype=torch.float32), dim=1).to(s.dtype)
    weights = ExpertWeights(
        m.weight(s.experts, s.hidden, 2 * s.intermediate, fan_in=s.hidden),
        m.weight(s.experts, s.intermediate, s.hidden, fan_in=s.intermediate),
    )
    return m.normal(tokens, s.hidden), affinities, index, weights


def lm_head_call(m: _Maker, phase: Phase, tokens: int) -> tuple:
    s = m.shapes
    rows = s.batch if phase is Phase.CONTEXT else tokens  # context encoding projects each row's last token
    return m.normal(rows, s.hidden), m.weight(s.vocab, s.hidden, fan_in=s.hidden)


def example_call(layer: str, phase: Phase, shapes: LayerShapes, seed: int = 0, transposed: bool = False) -> Call:
    """A call at the phase's first bucket (the one the contest's MAC count reads: rank 0, bucket 0)."""
    m = _Maker(shapes, seed, transposed)
    seq = shapes.context_lengths[0] if phase is Phase.CONTEXT else 1
    tokens = shapes.batch * seq
    kv_len = shapes.kv_lengths[0]
    if layer == "attention":
        args = attention_call(m, phase, tokens, kv_len)
        label = f"B={shapes.batch} S={seq} kv={kv_len if phase is Phase.TOKEN else seq}"
    else:
        args = {"norm": norm_call, "router": router_call, "experts": experts_call, "lm_head": lm_head_call}[layer](
            m, phase, tokens)
        label = f"T={tokens}"
    return Call(phase, args, label)
