"""The real-dimension slice (Qwen3-30B-A3B dims, 2 layers, seeded) in fp32 against transformers on the
five contest prompts: logits within 1e-4 relative and the same greedy tokens."""
import gc

import pytest
import torch

from kernels.slots import KernelSet
from model.qwen3_moe import Qwen3Moe
from tests.models import checkpoint, contest_prompt_ids, load_transformers, ours, relative_error, transformers_logits

NEW_TOKENS = 3


@pytest.mark.slow
def test_slice_fp32_matches_transformers_on_contest_prompts():
    path = checkpoint("qwen3_30b_a3b_slice")
    model = Qwen3Moe.from_checkpoint(path, KernelSet.baseline(), 1, torch.float32)
    mine = [ours(model, ids, NEW_TOKENS) for ids in contest_prompt_ids()]
    del model
    gc.collect()
    hf = load_transformers(path, torch.float32)
    for ids, actual in zip(contest_prompt_ids(), mine):
        expected = transformers_logits(hf, ids, NEW_TOKENS)
        assert relative_error(actual, expected).max() < 1e-4
        assert torch.equal(actual.argmax(-1), expected.argmax(-1))
