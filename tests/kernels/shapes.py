"""Per-rank shapes kernels are tested at: the tiny model (TP 1 and 4), and the real Qwen3-30B-A3B at TP=4."""
import torch

from kernels.types import LayerShapes

TINY = LayerShapes(batch=1, context_lengths=(64,), kv_lengths=(64,), hidden=256, q_heads=8, kv_heads=4, head_dim=32,
                   experts=32, top_k=8, intermediate=256, vocab=151936, dtype=torch.bfloat16)
TINY_BATCH2 = LayerShapes(**{**TINY.__dict__, "batch": 2})
TINY_TP4 = LayerShapes(**{**TINY.__dict__, "q_heads": 2, "kv_heads": 1, "intermediate": 64, "vocab": 37984})
REAL_TP4 = LayerShapes(batch=1, context_lengths=(128,), kv_lengths=(128,), hidden=2048, q_heads=8, kv_heads=1,
                       head_dim=128, experts=128, top_k=8, intermediate=192, vocab=37984, dtype=torch.bfloat16)
SHAPES = {"tiny": TINY, "tiny_batch2": TINY_BATCH2, "tiny_tp4": TINY_TP4, "real_tp4": REAL_TP4}
