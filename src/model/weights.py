"""Full (unsharded) model weights in NxDI's layout, loaded from Hugging Face checkpoints.

Both checkpoint layouts load: per-expert tensors as on the Hub (`mlp.experts.{e}.{gate,up,down}_proj.weight`)
and the fused tensors transformers 5 writes with `save_original_format=False` (`mlp.experts.gate_up_proj`
[E, 2I, H], `mlp.experts.down_proj` [E, H, I]). Experts are converted to NxDI's [E, H, 2I] / [E, I, H].
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from safetensors import safe_open

from model.dims import ModelDims


@dataclass
class LayerWeights:
    input_norm: torch.Tensor  # [H]
    post_attention_norm: torch.Tensor  # [H]
    q_proj: torch.Tensor  # [Hq*D, H]
    k_proj: torch.Tensor  # [Hkv*D, H]
    v_proj: torch.Tensor  # [Hkv*D, H]
    o_proj: torch.Tensor  # [H, Hq*D]
    q_norm: torch.Tensor  # [D]
    k_norm: torch.Tensor  # [D]
    router: torch.Tensor  # [E, H], fp32 holding model-dtype values (see cast)
    gate_up: torch.Tensor  # [E, H, 2I]
    down: torch.Tensor  # [E, I, H]

    def cast(self, dtype: torch.dtype) -> LayerWeights:
        """Every weight in `dtype`; the router rounded to `dtype` too, then held in fp32.

        NxDI casts every floating checkpoint tensor, the router's included, to the model dtype on load
        (models/application_base.py `checkpoint_loader_fn._cast_helper`, cast_type "config"); the router's
        Linear stays fp32 (nki-moe qwen.py sets router_config.dtype = float32, NxD modules/moe/routing.py
        RouterBase), so an fp32 checkpoint's router computes in fp32 on bf16-rounded values."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return LayerWeights(**{k: v.to(dtype).float() if k == "router" else v.to(dtype) for k, v in values.items()})


_LAYER_TENSORS = {
    "input_norm": "input_layernorm.weight",
    "post_attention_norm": "post_attention_layernorm.weight",
    "q_proj": "self_attn.q_proj.weight",
    "k_proj": "self_attn.k_proj.weight",
    "v_proj": "self_attn.v_proj.weight",
    "o_proj": "self_attn.o_proj.weight",
    "q_norm": "self_attn.q_norm.weight",
    "k_norm": "self_attn.k_norm.weight",
    "router": "mlp.gate.weight",
}


class _Checkpoint:
    """Lazy access to every tensor of a (possibly sharded) safetensors checkpoint by name."""

    def __init__(self, path: Path, stack: ExitStack):
        files = sorted(path.glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"no *.safetensors files in {path}")
        self._where: dict[str, object] = {}
        for file in files:
            handle = stack.enter_context(safe_open(str(file), framework="pt"))
            for key in handle.keys():
                self._where[key] = handle

    def __contains__(self, key: str) -> bool:
        return key in self._where

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self._where:
            raise KeyError(f"checkpoint has no tensor '{key}'")
        return self._where[key].get_tensor(key)


def _experts(ckpt: _Checkpoint, prefix: str, dims: ModelDims) -> tuple[torch.Tensor, torch.Tensor]:
    fused = f"{prefix}mlp.experts.gate_up_proj"
    if fused in ckpt:
        return ckpt[fused].transpose(1, 2).contiguous(), ckpt[f"{prefix}mlp.experts.down_proj"].transpose(1, 2).contiguous()
    gate_up, down = [], []
    for e in range(dims.num_experts):
        expert = f"{prefix}mlp.experts.{e}."
        gate_up.append(torch.cat([ckpt[expert + "gate_proj.weight"].T, ckpt[expert + "up_proj.weight"].T], dim=1))
        down.append(ckpt[expert + "down_proj.weight"].T)
    return torch.stack(gate_up), torch.stack(down)


def iter_layers(path: str | Path, dims: ModelDims) -> Iterator[tuple[int, LayerWeights]]:
    """Layer by layer, so callers can shard and drop full tensors as they go."""
    with ExitStack() as stack:
        ckpt = _Checkpoint(Path(path), stack)
        for index in range(dims.num_hidden_layers):
            prefix = f"model.layers.{index}."
            values = {name: ckpt[prefix + key] for name, key in _LAYER_TENSORS.items()}
            values["gate_up"], values["down"] = _experts(ckpt, prefix, dims)
            yield index, LayerWeights(**values)


def load_globals(path: str | Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(embed, final norm, lm_head) of a checkpoint."""
    with ExitStack() as stack:
        ckpt = _Checkpoint(Path(path), stack)
        return ckpt["model.embed_tokens.weight"], ckpt["model.norm.weight"], ckpt["lm_head.weight"]


def checkpoint_bytes(path: str | Path) -> int:
    return sum(f.stat().st_size for f in Path(path).glob("*.safetensors"))


def read_config(path: str | Path) -> dict:
    return json.loads((Path(path) / "config.json").read_text())
