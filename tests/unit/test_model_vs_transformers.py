"""Our model with baseline kernels against transformers' Qwen3MoeForCausalLM on identical weights.

fp32: the only differences are summation orders, so logits agree to 1e-4 relative and greedy tokens match.
bf16: the baseline kernels round like NxDI, not like Hugging Face, so logits differ at the bf16 level.
"""
import pytest
import torch

from kernels.slots import KernelSet
from model.qwen3_moe import Qwen3Moe
from model.weights import LayerWeights, iter_layers
from tests.models import (
    checkpoint, contest_prompt_ids, load_transformers, model_dims, ours, relative_error, transformers_logits,
)

NEW_TOKENS = 4


@pytest.fixture(scope="module")
def tiny_fp32():
    path = checkpoint("qwen3_moe_tiny")
    return Qwen3Moe.from_checkpoint(path, KernelSet.baseline(), 1, torch.float32), load_transformers(path, torch.float32)


@pytest.mark.parametrize("prompt", range(5))
def test_fp32_matches_transformers_on_contest_prompts(tiny_fp32, prompt):
    model, hf = tiny_fp32
    ids = contest_prompt_ids()[prompt]
    expected = transformers_logits(hf, ids, NEW_TOKENS)
    actual = ours(model, ids, NEW_TOKENS)
    assert relative_error(actual, expected).max() < 1e-4
    assert torch.equal(actual.argmax(-1), expected.argmax(-1))


def test_fp32_tp_degrees_agree(tiny_fp32):
    path = checkpoint("qwen3_moe_tiny")
    ids = contest_prompt_ids()[2]
    reference = ours(tiny_fp32[0], ids, NEW_TOKENS)
    for degree in (2, 4):
        sharded = Qwen3Moe.from_checkpoint(path, KernelSet.baseline(), degree, torch.float32)
        assert relative_error(ours(sharded, ids, NEW_TOKENS), reference).max() < 1e-5


def test_fused_checkpoint_layout_loads_identically(tmp_path):
    """transformers 5 can save the fused expert layout; both layouts give the same weights."""
    path = checkpoint("qwen3_moe_tiny")
    load_transformers(path, torch.bfloat16).save_pretrained(tmp_path, save_original_format=False)
    dims = model_dims("qwen3_moe_tiny")
    from safetensors import safe_open

    with safe_open(str(next(tmp_path.glob("*.safetensors"))), "pt") as handle:
        assert "model.layers.0.mlp.experts.gate_up_proj" in handle.keys()
    for (_, a), (_, b) in zip(iter_layers(path, dims), iter_layers(tmp_path, dims)):
        for name in LayerWeights.__dataclass_fields__:
            assert torch.equal(getattr(a, name), getattr(b, name)), name
