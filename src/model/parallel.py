"""Tensor parallelism emulated on the CPU, sharding weights per rank exactly as NxDI does.

- attention: q heads split contiguously; KV heads split, or replicated when ranks outnumber them
  (GQA.REPLICATE_TO_TP_DEGREE); o_proj row-parallel;
- experts: gate and up each split on the intermediate dim (ExpertFused column-parallel), down row-parallel;
- lm_head: column-parallel over the vocabulary, gathered by concatenation;
- norms, router and embedding are replicated and computed once (every rank would compute the same values).

All-reduce order (documented, fixed): partial sums are accumulated in fp32 in rank order 0, 1, ..., N-1 and
rounded once to the model dtype. With one rank it is the identity.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels.types import AttentionWeights, ExpertWeights, LayerShapes
from model.dims import ModelDims
from model.weights import LayerWeights


class ShardingError(ValueError):
    """The model cannot be split over the requested number of ranks."""


@dataclass(frozen=True)
class TensorParallel:
    dims: ModelDims
    degree: int

    def __post_init__(self) -> None:
        d, n = self.dims, self.degree
        problems = []
        if n < 1:
            problems.append("tp_degree must be >= 1")
        elif d.num_attention_heads % n:
            problems.append(f"{d.num_attention_heads} attention heads are not divisible by tp_degree={n}")
        elif (d.num_key_value_heads % n) if n <= d.num_key_value_heads else (n % d.num_key_value_heads):
            problems.append(f"{d.num_key_value_heads} KV heads can be neither split nor replicated over {n} ranks")
        if n >= 1 and d.moe_intermediate_size % n:
            problems.append(f"moe_intermediate_size={d.moe_intermediate_size} is not divisible by tp_degree={n}")
        if n >= 1 and d.vocab_size % n:
            problems.append(f"vocab_size={d.vocab_size} is not divisible by tp_degree={n}")
        if problems:
            raise ShardingError("; ".join(problems))

    @property
    def q_heads(self) -> int:
        return self.dims.num_attention_heads // self.degree

    @property
    def kv_heads(self) -> int:
        return max(1, self.dims.num_key_value_heads // self.degree)

    @property
    def intermediate(self) -> int:
        return self.dims.moe_intermediate_size // self.degree

    @property
    def vocab(self) -> int:
        return self.dims.vocab_size // self.degree

    def layer_shapes(
        self, batch: int, context_lengths: tuple[int, ...], kv_lengths: tuple[int, ...], dtype: torch.dtype
    ) -> LayerShapes:
        """The per-rank shapes the kernels see for a workload."""
        return LayerShapes(
            batch=batch,
            context_lengths=context_lengths,
            kv_lengths=kv_lengths,
            hidden=self.dims.hidden_size,
            q_heads=self.q_heads,
            kv_heads=self.kv_heads,
            head_dim=self.dims.head_dim,
            experts=self.dims.num_experts,
            top_k=self.dims.num_experts_per_tok,
            intermediate=self.intermediate,
            vocab=self.vocab,
            dtype=dtype,
        )

    def _kv_rows(self, rank: int) -> slice:
        d = self.dims.head_dim
        if self.degree <= self.dims.num_key_value_heads:
            first = rank * self.kv_heads
        else:
            first = rank // (self.degree // self.dims.num_key_value_heads)
        return slice(first * d, (first + self.kv_heads) * d)

    def attention(self, layer: LayerWeights, rank: int, eps: float) -> AttentionWeights:
        q_rows = slice(rank * self.q_heads * self.dims.head_dim, (rank + 1) * self.q_heads * self.dims.head_dim)
        kv_rows = self._kv_rows(rank)
        return AttentionWeights(
            q_proj=layer.q_proj[q_rows].contiguous(),
            k_proj=layer.k_proj[kv_rows].contiguous(),
            v_proj=layer.v_proj[kv_rows].contiguous(),
            o_proj=layer.o_proj[:, q_rows].contiguous(),
            q_norm=layer.q_norm,
            k_norm=layer.k_norm,
            eps=eps,
        )

    def experts(self, layer: LayerWeights, rank: int) -> ExpertWeights:
        full, part = self.dims.moe_intermediate_size, self.intermediate
        cols = slice(rank * part, (rank + 1) * part)
        gate, up = layer.gate_up[..., :full], layer.gate_up[..., full:]
        return ExpertWeights(
            gate_up=torch.cat([gate[..., cols], up[..., cols]], dim=-1).contiguous(),
            down=layer.down[:, cols].contiguous(),
        )

    def lm_head(self, weight: torch.Tensor, rank: int) -> torch.Tensor:
        return weight[rank * self.vocab : (rank + 1) * self.vocab].contiguous()

    @staticmethod
    def all_reduce(partials: list[torch.Tensor]) -> torch.Tensor:
        if len(partials) == 1:
            return partials[0]
        total = partials[0].float()
        for partial in partials[1:]:
            total += partial.float()
        return total.to(partials[0].dtype)

    @staticmethod
    def all_gather_vocab(shards: list[torch.Tensor]) -> torch.Tensor:
        return shards[0] if len(shards) == 1 else torch.cat(shards, dim=-1)
