"""How many compiler-built operations an op outside NKI issues: the aten operations of the baseline slot's torch
code (the code that reproduces NxDI's graph and numerics), counted once per (layer, phase).

Why count them: at batch 1 the compiler-built decode graph is bound by per-operation costs, not bytes. Every
non-view aten op becomes at least one HLO instruction the compiled graph issues and synchronises on
(KevGomes1403/nki-moe-megakernel@621932e, megakernels/qwen3_moe/README.md: ~98 graph boundaries per decoder
block, 53.5 us of sync-engine time per layer on trn3). The estimate charges each counted op a fitted fixed
cost (estimate.graph_op_us, fitted by pipeline.estimate.calibrate).

The counts do not depend on the model's width (loops run over top_k experts and fixed head groups), so they
are taken once at small shapes. Context-encoding experts are the exception: NxD runs a blockwise loop whose
length depends on the bucket (kernels.macs.expert_blocks), costed per block instead (estimate.block_us).
"""
from __future__ import annotations

from collections import Counter
from functools import cache

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from kernels.examples import example_call
from kernels.registry import get
from kernels.types import LayerShapes, Phase

# Small shapes with the real model's top_k (the selective loop's length) and head grouping (8 q heads per
# KV head at TP=4 and the real model's 32/4 heads).
COUNT_SHAPES = LayerShapes(batch=1, context_lengths=(16,), kv_lengths=(16,), hidden=64, q_heads=8, kv_heads=1,
                           head_dim=16, experts=16, top_k=8, intermediate=32, vocab=256, dtype=torch.bfloat16)


class _OpCounter(TorchDispatchMode):
    """Counts the aten operations a torch function dispatches; views are free (no instruction)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view:
            self.ops[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


@cache
def graph_ops(layer: str, phase: Phase) -> int:
    """Non-view aten ops of one call of `layer`'s baseline in `phase` (0 for context-encoding experts, which
    are costed per blockwise block)."""
    if layer == "experts" and phase is Phase.CONTEXT:
        return 0
    if layer == "embedding":
        return 1  # one gather
    call = example_call(layer, phase, COUNT_SHAPES)
    with _OpCounter() as counter:
        get(layer, "baseline").reference(*call.args)
    return sum(counter.ops.values())
