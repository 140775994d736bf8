"""Model fixtures for tests: seeded checkpoints (as the pipeline caches them) and reference generation."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
import yaml

from model.dims import ModelDims
from model.generation import generate
from model.seeded import ensure_seeded_checkpoint
from model.tokenizer import qwen3_tokenizer
from pipeline.config import CONF_DIR
from tests.conftest import CACHE


def model_dims(name: str) -> ModelDims:
    preset = yaml.safe_load((CONF_DIR / "model" / f"{name}.yaml").read_text())
    return ModelDims(**preset.get("model", preset)["dims"])  # `# @package _global_` presets nest under model


def checkpoint(name: str) -> Path:
    return ensure_seeded_checkpoint(model_dims(name), 0, CACHE / "models", name)


@lru_cache(maxsize=1)
def contest_prompt_ids() -> tuple[tuple[int, ...], ...]:
    prompts = yaml.safe_load((CONF_DIR / "workload" / "contest.yaml").read_text())["prompts"]
    return tuple(tuple(qwen3_tokenizer().encode(p)) for p in prompts)


def ours(model, ids, new_tokens: int, buckets=(128, 256, 640)) -> torch.Tensor:
    """Greedy logits [new, V] of our model."""
    return generate(model, [list(ids)], new_tokens, list(buckets), keep_logits=True).logits[:, 0]


def transformers_logits(hf_model, ids, new_tokens: int) -> torch.Tensor:
    """Greedy logits [new, V] of transformers' Qwen3MoeForCausalLM (raw logits, no processors)."""
    with torch.inference_mode():
        out = hf_model.generate(
            torch.tensor([ids]), max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
            output_logits=True, return_dict_in_generate=True, pad_token_id=0,
        )
    return torch.stack(out.logits)[:, 0].float()


def load_transformers(path: Path, dtype: torch.dtype):
    from transformers import Qwen3MoeForCausalLM

    return Qwen3MoeForCausalLM.from_pretrained(path, dtype=dtype).eval()


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """Per step: max |actual - expected| / max |expected| over the vocabulary."""
    return (actual - expected).abs().amax(-1) / expected.abs().amax(-1)
