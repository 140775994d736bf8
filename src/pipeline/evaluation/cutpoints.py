"""The cut-point map: where an NKI kernel may cut the compiled graph without changing a single value.

For one decoder layer's attention and MoE blocks, the lm_head and the embedding, a custom-call boundary is
inserted at each candidate point (kernels.numerics.CUT_POINTS: the value crossing it is materialised in the
model dtype) and the block's output is compared with the compiled baseline without it, on the same inputs:
the share of output elements that differ and the largest absolute divergence. `free` means no element
differs; a kernel whose edges sit only at free points, and which reproduces the compiler's roundings inside,
cannot move the logits.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from kernels.attention.baseline import rope_tables
from kernels.numerics import CUT_POINTS, CompilerNumerics, materialise
from kernels.slots import KernelSet
from kernels.types import Phase
from model.qwen3_moe import KVCache, Qwen3Moe

# R2 Table II (accuracy-wall.md): mismatch share, in percent, on device at T = 512 tokens in bf16, MPA on.
PUBLISHED = {
    "input | gate_up": 27.0,
    "gate_up | silu": 64.0,
    "silu | silu*up": 42.0,
    "silu*up | down+affinity+scatter": 0.0,
    "lm_head | sampling": 0.0,
}


@dataclass(frozen=True)
class CutRecord:
    layer: str  # the block cut: attention, moe, lm_head, embedding
    boundary: str
    mismatch_pct: float
    max_divergence: float
    verdict: str  # free | lossy
    point: str
    tokens: int
    phase: str
    mpa: bool
    published_mismatch_pct: float | None


def compare(actual: torch.Tensor, expected: torch.Tensor) -> tuple[float, float]:
    """(percent of elements that differ, largest absolute difference)."""
    differs = actual != expected
    return float(differs.float().mean() * 100), float((actual.float() - expected.float()).abs().max())


@dataclass
class _Inputs:
    """One token batch at layer `index`: the residual stream entering it and its blocks' reference outputs."""

    ids: torch.Tensor
    positions: torch.Tensor
    phase: Phase
    kv_len: int
    cache: KVCache
    hidden: torch.Tensor
    pending: torch.Tensor | None


def _prepare(model: Qwen3Moe, ids: list[int], tokens: int, layer: int, buckets: list[int]) -> _Inputs:
    """Inputs at `layer` for `tokens` tokens: a context-encoding batch of the first `tokens` ids, or (tokens
    == 1) one decode step after a context pass over the other ids."""
    if tokens > 1:
        sequence = (ids * (tokens // len(ids) + 1))[:tokens]
        prompt, phase, kv_len = [], Phase.CONTEXT, tokens
        step = torch.tensor([sequence])
        positions = torch.arange(tokens).unsqueeze(0)
    else:
        prompt, phase = ids[:-1], Phase.TOKEN
        kv_len = min(b for b in buckets if b >= len(ids))
        step = torch.tensor([[ids[-1]]])
        positions = torch.tensor([[len(prompt)]])
    cache = model.new_cache(1, max(kv_len, max(buckets)))
    if prompt:
        bucket = min(b for b in buckets if b >= len(prompt))
        padded = torch.zeros(1, bucket, dtype=torch.long)
        padded[0, : len(prompt)] = torch.tensor(prompt)
        model.forward(padded, torch.arange(bucket).unsqueeze(0), cache, Phase.CONTEXT, bucket)
    hidden, pending = model.embed[step], None
    rope = rope_tables(positions, model.dims.head_dim, model.dims.rope_theta, model.dtype)
    for index in range(layer):
        attention_out, hidden = model.attention_block(index, hidden, pending, phase, positions, rope, cache, kv_len)
        pending, hidden = model.moe_block(index, attention_out, hidden, phase)
    return _Inputs(step, positions, phase, kv_len, cache, hidden, pending)


def _blocks(model: Qwen3Moe, x: _Inputs, layer: int, lm_head_rows: int) -> dict[str, Callable[[Qwen3Moe], torch.Tensor]]:
    """Per block, a function running it on `x` with another kernel set's model (same weights)."""
    rope = rope_tables(x.positions, model.dims.head_dim, model.dims.rope_theta, model.dtype)
    attention_out, hidden = model.attention_block(layer, x.hidden, x.pending, x.phase, x.positions, rope, x.cache,
                                                  x.kv_len)
    moe_out, after = model.moe_block(layer, attention_out, hidden, x.phase)
    rows = min(lm_head_rows, moe_out.shape[1])
    last_rows = (moe_out[0, -rows:].unsqueeze(1), after[0, -rows:].unsqueeze(1))  # [rows, 1, H] each

    def attention(m: Qwen3Moe) -> torch.Tensor:  # rewrites the same cache rows every time
        return m.attention_block(layer, x.hidden, x.pending, x.phase, x.positions, rope, x.cache, x.kv_len)[0]

    return {
        "embedding": lambda m: m.embed[x.ids],
        "attention": attention,
        "moe": lambda m: m.moe_block(layer, attention_out, hidden, x.phase)[0],
        "lm_head": lambda m: m.head(*last_rows, x.phase, torch.zeros(rows, dtype=torch.long)),
    }


def embedding_cut(embed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The embedding gather's output through a custom-call boundary (`embedding | layer 0`)."""
    return materialise(embed, dtype)


def measure(model: Qwen3Moe, kernels_for: Callable[[CompilerNumerics], KernelSet], numerics: CompilerNumerics,
            ids: list[int], tokens: int, layer: int, buckets: list[int], lm_head_rows: int) -> list[CutRecord]:
    """Every cut point of every block at `tokens` tokens with `numerics` (cut-free) as the reference."""
    reference = model.with_kernels(kernels_for(numerics))
    with torch.inference_mode():
        x = _prepare(reference, ids, tokens, layer, buckets)
        blocks = _blocks(reference, x, layer, lm_head_rows)
        expected = {name: run(reference) for name, run in blocks.items()}
        records = []

        def record(block: str, point: str, label: str, actual: torch.Tensor) -> None:
            mismatch, divergence = compare(actual, expected[block])
            records.append(CutRecord(block, label, mismatch, divergence, "free" if mismatch == 0 else "lossy", point,
                                     tokens, x.phase.value, numerics.mpa, PUBLISHED.get(label)))

        record("embedding", "embedding", "embedding | layer 0", embedding_cut(expected["embedding"], numerics.dtype))
        for point, (block, label) in CUT_POINTS.items():
            record(block, point, label, blocks[block](model.with_kernels(kernels_for(numerics.with_cut(point)))))
    return records


def as_rows(records: list[CutRecord]) -> list[dict]:
    return [asdict(r) for r in records]


def table(records: list[CutRecord]) -> str:
    """A markdown table: one row per (block, boundary, tokens), MPA on and off side by side, with R2's share."""
    keyed: dict[tuple, dict[bool, CutRecord]] = {}
    for r in records:
        keyed.setdefault((r.layer, r.boundary, r.tokens, r.phase), {})[r.mpa] = r
    lines = ["| block | boundary | tokens | MPA on: mismatch % / max div / verdict | MPA off: mismatch % / max div / "
             "verdict | R2 Table II (MPA on) |", "|---|---|---|---|---|---|"]

    def cell(r: CutRecord | None) -> str:
        return "-" if r is None else f"{r.mismatch_pct:.1f} / {r.max_divergence:.3g} / {r.verdict}"

    for (block, boundary, tokens, phase), by_mpa in keyed.items():
        published = PUBLISHED.get(boundary)
        shown = "-" if published is None else f"{published:g} % ({'free' if published == 0 else 'lossy'})"
        escaped = boundary.replace("|", "\\|")
        lines.append(f"| {block} | {escaped} | {tokens} ({phase}) | {cell(by_mpa.get(True))} | "
                     f"{cell(by_mpa.get(False))} | {shown} |")
    return "\n".join(lines) + "\n"
