"""Model dimensions, read from and written to a Hugging Face `config.json` (model_type qwen3_moe)."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ModelDims:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    num_experts: int
    num_experts_per_tok: int
    moe_intermediate_size: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    max_position_embeddings: int = 40960
    norm_topk_prob: bool = True
    bos_token_id: int = 151643
    eos_token_id: int = 151645

    @classmethod
    def from_hf_config(cls, config: dict[str, Any]) -> ModelDims:
        unsupported = {
            "tie_word_embeddings": True,
            "attention_bias": True,
            "use_sliding_window": True,
        }
        for key, bad in unsupported.items():
            if config.get(key) == bad:
                raise ValueError(f"config.json: {key}={bad} is not supported by this Qwen3-MoE implementation")
        if config.get("mlp_only_layers") or config.get("decoder_sparse_step", 1) != 1:
            raise ValueError("config.json: dense (non-MoE) layers are not supported; every layer must be MoE")
        if config.get("rope_scaling"):
            raise ValueError("config.json: rope_scaling is not supported (Qwen3-30B-A3B uses none)")
        config = dict(config)
        rope = config.get("rope_parameters") or {}
        if rope.get("rope_type", "default") != "default":
            raise ValueError(f"config.json: rope_type={rope['rope_type']} is not supported")
        config.setdefault("rope_theta", rope.get("rope_theta", cls.rope_theta))
        config.setdefault("num_experts", config.get("num_local_experts"))
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in config.items() if k in names and v is not None})

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> ModelDims:
        return cls.from_hf_config(json.loads((Path(path) / "config.json").read_text()))

    def to_hf_config(self, torch_dtype: str = "bfloat16") -> dict[str, Any]:
        return {
            "architectures": ["Qwen3MoeForCausalLM"],
            "model_type": "qwen3_moe",
            **dataclasses.asdict(self),
            "intermediate_size": self.moe_intermediate_size,
            "hidden_act": "silu",
            "attention_bias": False,
            "attention_dropout": 0.0,
            "tie_word_embeddings": False,
            "decoder_sparse_step": 1,
            "mlp_only_layers": [],
            "rope_scaling": None,
            "sliding_window": None,
            "use_sliding_window": False,
            "max_window_layers": self.num_hidden_layers,
            "router_aux_loss_coef": 0.001,
            "output_router_logits": False,
            "initializer_range": 0.02,
            "torch_dtype": torch_dtype,
            "use_cache": True,
        }

    @property
    def params_count(self) -> int:
        h, d, i = self.hidden_size, self.head_dim, self.moe_intermediate_size
        attention = h * d * (2 * self.num_attention_heads + 2 * self.num_key_value_heads) + 2 * d
        moe = self.num_experts * (3 * h * i + h)
        per_layer = attention + moe + 2 * h
        return self.num_hidden_layers * per_layer + 2 * self.vocab_size * h + h
