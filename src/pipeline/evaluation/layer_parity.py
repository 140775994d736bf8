"""Per-layer parity: which layer, and which kernel in it, first moves away from the reference.

Both models read the same tokens (teacher forcing: the prompt, then the reference's greedy tokens), one
context-encoding call and one token-generation call per token as the contest runs them, and every layer's
all-reduced attention and MoE outputs are compared element by element: the share that differs and the largest
absolute difference, per phase, since decode-only kernels act only in token generation.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass

import torch

from kernels.slots import KernelSet
from kernels.types import Phase
from model.generation import generate
from model.qwen3_moe import Qwen3Moe
from pipeline.evaluation.cutpoints import compare

BLOCK_SLOTS = {"attention": ("norm", "attention"), "moe": ("norm", "router", "experts")}

Outputs = dict[tuple[str, int, str], list[torch.Tensor]]  # (phase, layer, block) -> outputs per call


class BlockRecorder:
    """Collects every layer's block outputs of one batch-1 generation (a `taps` of model.generation.generate):
    over the prompt's real positions in context encoding, then one entry per decode step."""

    def __init__(self, prompt_length: int):
        self.prompt_length = prompt_length
        self.outputs: Outputs = defaultdict(list)

    def __call__(self, phase: Phase, layer: int, block: str, out: torch.Tensor) -> None:
        real = out[:, : self.prompt_length] if phase is Phase.CONTEXT else out
        self.outputs[(phase.value, layer, block)].append(real)


def forced_outputs(model: Qwen3Moe, prompt: list[int], forced: list[int], buckets: list[int]) -> Outputs:
    """Every layer's block outputs over the prompt's real positions, then over one decode step per token of
    `forced` but the last (whose successor is never needed), called as the contest's generation calls them."""
    recorder = BlockRecorder(len(prompt))
    generate(model, [prompt], len(forced), buckets, forced=forced, taps=recorder)
    return recorder.outputs


def teacher_forced(model: Qwen3Moe, recorded: BlockRecorder, fed: list[int] | None, prompt: list[int],
                   forced: list[int], buckets: list[int]) -> Outputs:
    """`model`'s block outputs teacher-forced on `forced`: those a generation recorded when it fed back exactly
    these tokens (a greedy run that did not diverge made the same calls), else a teacher-forced run."""
    if fed == forced:
        return recorded.outputs
    return forced_outputs(model, prompt, forced, buckets)


@dataclass(frozen=True)
class LayerParity:
    phase: str
    layer: int
    block: str
    kernels: str  # the variants that ran in the block in this phase
    custom_call: bool  # any of them not the baseline (a custom call against the compiled baseline)
    mismatch_pct: float
    max_divergence: float


def block_kernels(kernels: KernelSet, phase: Phase, block: str) -> tuple[str, bool]:
    variants = [kernels.slots[slot].resolve(phase)[0] for slot in BLOCK_SLOTS[block]]
    names = ", ".join(f"{v.layer}={v.name}" for v in variants)
    return names, any(v.name != "baseline" for v in variants)


def layer_parity(candidate: Outputs, reference: Outputs, kernels: KernelSet) -> list[LayerParity]:
    records = []
    for key in sorted(reference, key=lambda k: (k[0], k[1], k[2])):
        phase, layer, block = key
        actual, expected = torch.cat(candidate[key], dim=1), torch.cat(reference[key], dim=1)
        mismatch, divergence = compare(actual, expected)
        names, custom_call = block_kernels(kernels, Phase(phase), block)
        records.append(LayerParity(phase, layer, block, names, custom_call, mismatch, divergence))
    return records


def first_divergent(records: list[LayerParity]) -> dict[str, LayerParity]:
    """Per phase, the first block (in layer order) whose output differs from the reference."""
    found: dict[str, LayerParity] = {}
    order = {"attention": 0, "moe": 1}
    for r in sorted(records, key=lambda r: (r.layer, order[r.block])):
        if r.mismatch_pct > 0 and r.phase not in found:
            found[r.phase] = r
    return found


def merge(per_prompt: list[list[LayerParity]]) -> list[LayerParity]:
    """The worst mismatch and divergence over prompts, per (phase, layer, block)."""
    worst: dict[tuple, LayerParity] = {}
    for records in per_prompt:
        for r in records:
            key = (r.phase, r.layer, r.block)
            old = worst.get(key)
            if old is None:
                worst[key] = r
            else:
                worst[key] = LayerParity(r.phase, r.layer, r.block, r.kernels, r.custom_call,
                                         max(old.mismatch_pct, r.mismatch_pct), max(old.max_divergence, r.max_divergence))
    return list(worst.values())


def as_rows(records: list[LayerParity]) -> list[dict]:
    return [asdict(r) for r in records]
