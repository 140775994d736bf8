"""Tensor parallelism emulated on the CPU, sharding weights per rank exactly as NxDI does.

- attention: q heads split contiguously; KV heads split, or replicated when ranks outnumber them
  (GQA.REPLICATE_TO_TP_DEGREE); o_proj row-parallel;
- experts: gate and up each split on the intermediate dim (ExpertFused column-parallel), down row-parallel;
- lm_head: column-parallel over the vocabulary, gathered by concatenation;
- norms and router are replicated and computed once (every rank would compute the same values);
- embedding: NxDI shards it over the hidden dim (nki-moe qwen.py, ParallelEmbedding with
  shard_across_embedding=True) and all-gathers the rows, a pure copy; here the full table is looked up once,
  which gives the same values.

All-reduce (`all_reduce`): NxD casts each rank's partial to the reduce dtype, all-reduces, and casts back
(parallel_layers/layers.py RowParallelLinear._rpl_maybe_reduce_output; modules/moe/model.py MoE.forward
reduces the expert output in its own dtype). NxDI leaves `rpl_reduce_dtype` unset, and NxD then reduces
o_proj in the layer dtype too: in a bf16 model both all-reduces add in bf16. The order of the additions on the
device is not public. We take the ring the Neuron runtime documents (neuron-runtime/explore/
intranode-collective-comm: a reduce-scatter around the ring, then an all-gather that only copies): the
flattened tensor is split into N contiguous chunks, and chunk c is accumulated from rank c's partial, adding
ranks c+1, ..., c+N-1 (mod N) one hop at a time, each sum rounded to the reduce dtype. The runtime may pick
another algorithm (Mesh, KangaRing, RDH) for some message sizes, whose order would differ. With one rank it is
the identity.
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
    rpl_reduce_dtype: torch.dtype | None = None  # o_proj's all-reduce dtype; None: the model dtype, as NxDI

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
    def all_reduce(partials: list[torch.Tensor], dtype: torch.dtype | None = None) -> torch.Tensor:
        """The ring all-reduce of the module docstring, adding in `dtype` (default: the partials' own), the
        result in the partials' dtype."""
        ranks = len(partials)
        if ranks == 1:
            return partials[0]
        out = partials[0].dtype
        chunks = [torch.tensor_split(p.reshape(-1).to(dtype or out), ranks) for p in partials]  # [rank][chunk]
        reduced = []
        for chunk in range(ranks):
            total = chunks[chunk][chunk]
            for hop in range(1, ranks):
                total = total + chunks[(chunk + hop) % ranks][chunk]
            reduced.append(total)
        return torch.cat(reduced).view(partials[0].shape).to(out)

    @staticmethod
    def all_gather_vocab(shards: list[torch.Tensor]) -> torch.Tensor:
        return shards[0] if len(shards) == 1 else torch.cat(shards, dim=-1)
