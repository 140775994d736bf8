"""Seeded random Qwen3-MoE checkpoints, created once and cached on disk as Hugging Face checkpoints.

They are written in the Hub's per-expert layout, so the loaders of this project and of transformers read
them exactly as they read the real Qwen3-30B-A3B. Every tensor has its own generator seeded from the model
seed and the tensor name, so a checkpoint does not depend on creation order.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import zlib
from pathlib import Path

import torch
from safetensors.torch import save_file

from model.dims import ModelDims

log = logging.getLogger(__name__)

# Standard deviations: projections as transformers' initializer_range; a larger router spread gives peaked
# routing like a trained model; norm weights scattered around 1 so their multiply is not a no-op.
PROJECTION_STD = 0.02
ROUTER_STD = 0.1
NORM_SPREAD = 0.1


def _tensor(name: str, shape: tuple[int, ...], seed: int, dtype: torch.dtype) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
    values = torch.randn(shape, generator=generator, dtype=torch.float32)
    if name.endswith("norm.weight"):
        return (1.0 + NORM_SPREAD * values).to(dtype)
    std = ROUTER_STD if name.endswith("mlp.gate.weight") else PROJECTION_STD
    return (std * values).to(dtype)


def _shapes(dims: ModelDims) -> dict[str, tuple[int, ...]]:
    h, d, i = dims.hidden_size, dims.head_dim, dims.moe_intermediate_size
    shapes = {
        "model.embed_tokens.weight": (dims.vocab_size, h),
        "model.norm.weight": (h,),
        "lm_head.weight": (dims.vocab_size, h),
    }
    for layer in range(dims.num_hidden_layers):
        p = f"model.layers.{layer}."
        shapes |= {
            p + "input_layernorm.weight": (h,),
            p + "post_attention_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (dims.num_attention_heads * d, h),
            p + "self_attn.k_proj.weight": (dims.num_key_value_heads * d, h),
            p + "self_attn.v_proj.weight": (dims.num_key_value_heads * d, h),
            p + "self_attn.o_proj.weight": (h, dims.num_attention_heads * d),
            p + "self_attn.q_norm.weight": (d,),
            p + "self_attn.k_norm.weight": (d,),
            p + "mlp.gate.weight": (dims.num_experts, h),
        }
        for e in range(dims.num_experts):
            shapes |= {
                p + f"mlp.experts.{e}.gate_proj.weight": (i, h),
                p + f"mlp.experts.{e}.up_proj.weight": (i, h),
                p + f"mlp.experts.{e}.down_proj.weight": (h, i),
            }
    return shapes


def checkpoint_id(dims: ModelDims, seed: int) -> str:
    blob = json.dumps([dims.to_hf_config(), seed, PROJECTION_STD, ROUTER_STD, NORM_SPREAD], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def write_seeded_checkpoint(dims: ModelDims, seed: int, path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    tensors = {name: _tensor(name, shape, seed, torch.bfloat16) for name, shape in _shapes(dims).items()}
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    (path / "config.json").write_text(json.dumps(dims.to_hf_config(), indent=2))


def ensure_seeded_checkpoint(dims: ModelDims, seed: int, cache_root: str | Path, name: str) -> Path:
    """The cached checkpoint's directory, writing it first if missing (atomically, safe for parallel jobs)."""
    final = Path(cache_root) / f"{name}-{checkpoint_id(dims, seed)}"
    if (final / "config.json").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    log.info("creating seeded checkpoint %s (%.1f M params, once)", final, dims.params_count / 1e6)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        write_seeded_checkpoint(dims, seed, staging)
        try:
            os.rename(staging, final)
        except OSError:
            if not (final / "config.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final
