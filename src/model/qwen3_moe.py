"""Qwen3-MoE in plain PyTorch whose five layer types go through kernel slots, with tensor parallelism
emulated per rank (model.parallel) and a KV cache per layer and rank.

One forward is one NxDI sub-model call: context encoding (the padded prompt bucket, logits of each row's
last real token) or token generation (one new token per row, reading a KV bucket).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from kernels.attention.baseline import rope_tables
from kernels.slots import KernelSet
from kernels.types import AttentionInputs, AttentionWeights, ExpertWeights, Phase, stored
from model.dims import ModelDims
from model.parallel import TensorParallel
from model.weights import iter_layers, load_globals

log = logging.getLogger(__name__)


@dataclass
class RankedLayer:
    """One decoder layer: replicated weights once, sharded weights per rank."""

    input_norm: torch.Tensor
    post_attention_norm: torch.Tensor
    router: torch.Tensor
    attention: list[AttentionWeights]
    experts: list[ExpertWeights]


@dataclass
class KVCache:
    """k[layer][rank] and v[layer][rank]: [batch, kv_heads_per_rank, max_seq, head_dim]."""

    k: list[list[torch.Tensor]]
    v: list[list[torch.Tensor]]

    @property
    def max_seq(self) -> int:
        return self.k[0][0].shape[2]


def _attention_storage(w: AttentionWeights, transposed: bool) -> AttentionWeights:
    return AttentionWeights(*(stored(getattr(w, n), transposed) for n in ("q_proj", "k_proj", "v_proj", "o_proj")),
                            q_norm=w.q_norm, k_norm=w.k_norm, eps=w.eps)




class Qwen3Moe:
    def __init__(
        self,
        dims: ModelDims,
        tp: TensorParallel,
        kernels: KernelSet,
        dtype: torch.dtype,
        embed: torch.Tensor,
        layers: list[RankedLayer],
        final_norm: torch.Tensor,
        lm_head: list[torch.Tensor],
    ):
        self.dims, self.tp, self.kernels, self.dtype = dims, tp, kernels, dtype
        self.embed, self.layers, self.final_norm, self.lm_head = embed, layers, final_norm, lm_head

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, kernels: KernelSet, tp_degree: int = 1, dtype: torch.dtype = torch.bfloat16,
        rpl_reduce_dtype: torch.dtype | None = None,
    ) -> Qwen3Moe:
        """Weights sharded per rank and stored as each slot's selected variant prefers."""
        dims = ModelDims.from_checkpoint(path)
        tp = TensorParallel(dims, tp_degree, rpl_reduce_dtype)
        ranks = range(tp.degree)
        transposed = {layer: slot.variant.transpose_weights for layer, slot in kernels.slots.items()}
        layers = []
        for _, on_disk in iter_layers(path, dims):
            full = on_disk.cast(dtype)
            experts = [tp.experts(full, r) for r in ranks]
            layers.append(
                RankedLayer(
                    input_norm=full.input_norm,
                    post_attention_norm=full.post_attention_norm,
                    router=full.router,
                    attention=[_attention_storage(tp.attention(full, r, dims.rms_norm_eps), transposed["attention"])
                               for r in ranks],
                    experts=[ExpertWeights(stored(e.gate_up, transposed["experts"]), stored(e.down, transposed["experts"]))
                             for e in experts],
                )
            )
            del full, experts
        embed, final_norm, lm_head = (t.to(dtype) for t in load_globals(path))
        heads = [stored(tp.lm_head(lm_head, r), transposed["lm_head"]) for r in ranks]
        return cls(dims, tp, kernels, dtype, embed, layers, final_norm, heads)

    def with_kernels(self, kernels: KernelSet) -> Qwen3Moe:
        """The same weights behind another kernel set (no copy)."""
        return Qwen3Moe(self.dims, self.tp, kernels, self.dtype, self.embed, self.layers, self.final_norm, self.lm_head)

    def new_cache(self, batch: int, max_seq: int) -> KVCache:
        shape = (batch, self.tp.kv_heads, max_seq, self.dims.head_dim)

        def blank() -> list[list[torch.Tensor]]:
            return [[torch.zeros(shape, dtype=self.dtype) for _ in range(self.tp.degree)] for _ in self.layers]

        return KVCache(blank(), blank())

    def attention_block(
        self, index: int, hidden: torch.Tensor, pending: torch.Tensor | None, phase: Phase, positions: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor], cache: KVCache, kv_len: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer `index`'s input norm (adding the previous sublayer's `pending` output to the residual stream
        `hidden`) and attention over every rank, all-reduced: (attention output, residual stream)."""
        k, layer = self.kernels, self.layers[index]
        normed, hidden = k.norm(phase, hidden if pending is None else pending, layer.input_norm, self.dims.rms_norm_eps,
                                None if pending is None else hidden)
        partials = []
        for rank, weights in enumerate(layer.attention):
            inputs = AttentionInputs(phase, positions, *rope, cache.k[index][rank], cache.v[index][rank], kv_len)
            partials.append(k.attention(phase, normed, weights, inputs))
        return self.tp.all_reduce(partials, self.tp.rpl_reduce_dtype), hidden  # o_proj: RowParallelLinear

    def moe_block(self, index: int, attention_out: torch.Tensor, hidden: torch.Tensor, phase: Phase,
                  valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer `index`'s post-attention norm (adding `attention_out` to the residual stream), router and
        experts over every rank, all-reduced: (MoE output, residual stream). `valid` [B * S] marks the real
        (not padding) tokens; experts variants may leave the others out."""
        k, layer = self.kernels, self.layers[index]
        normed, hidden = k.norm(phase, attention_out, layer.post_attention_norm, self.dims.rms_norm_eps, hidden)
        tokens = normed.reshape(-1, normed.shape[-1])
        affinities, experts = k.router(phase, tokens, layer.router, self.dims.num_experts_per_tok)
        extra = () if valid is None else (valid,)
        partials = [k.experts(phase, tokens, affinities, experts, w, *extra) for w in layer.experts]
        return self.tp.all_reduce(partials).view(hidden.shape), hidden  # MoE output: in its own dtype

    def head(self, pending: torch.Tensor, hidden: torch.Tensor, phase: Phase, last: torch.Tensor) -> torch.Tensor:
        """The final norm (adding the last layer's output) and the vocabulary projection of each row's token
        at `last` [B]: fp32 logits [B, V]."""
        normed, _ = self.kernels.norm(phase, pending, self.final_norm, self.dims.rms_norm_eps, hidden)
        final = normed[torch.arange(normed.shape[0]), last]
        shards = [self.kernels.lm_head(phase, final, weight) for weight in self.lm_head]
        return self.tp.all_gather_vocab(shards).float()

    @torch.inference_mode()
    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        cache: KVCache,
        phase: Phase,
        kv_len: int,
        last_index: torch.Tensor | None = None,
        taps: Callable[[int, str, torch.Tensor], None] | None = None,
    ) -> torch.Tensor:
        """input_ids/positions [B, S] -> fp32 logits [B, V] of each row's token at `last_index` (default: last).
        `taps(layer, block, output)` sees every layer's all-reduced attention and MoE outputs."""
        batch, seq = input_ids.shape
        rope = rope_tables(positions, self.dims.head_dim, self.dims.rope_theta, self.dtype)
        valid = None  # context encoding of right-padded prompts: the tokens up to each row's last
        if last_index is not None and phase is Phase.CONTEXT:
            valid = (torch.arange(seq).unsqueeze(0) <= last_index.unsqueeze(1)).reshape(-1)
        hidden = self.embed[input_ids]
        pending = None  # the last sublayer's output, added to the residual stream by the next fused norm
        for index in range(len(self.layers)):
            attention_out, hidden = self.attention_block(index, hidden, pending, phase, positions, rope, cache, kv_len)
            pending, hidden = self.moe_block(index, attention_out, hidden, phase, valid)
            if taps is not None:
                taps(index, "attention", attention_out)
                taps(index, "moe", pending)
        last = torch.full((batch,), seq - 1) if last_index is None else last_index
        return self.head(pending, hidden, phase, last)
