"""What the decode attention kernel (kernels.attention.nki_decode_kernel) is launched with, shared by its CPU
launcher (kernels.attention.nki_decode `run`) and its device slot (model.neuron.layer_slots), so the
interpreter and the device run one kernel with one set of arguments. Imports only torch, so the exported
submission can carry it."""
from __future__ import annotations

import math
from typing import Any

import torch


def out_heads_early(params: Any, kv_len: int) -> int:
    """o_proj^T heads streamed before the exchanges: enough to cover the exchange's DMA latency once this
    core's share of the cache (which streams first) is in; a longer cache leaves less of that to cover."""
    if params.out_heads_early >= 0:
        return params.out_heads_early
    return 2 if kv_len <= 256 else 1


def decode_arguments(x: torch.Tensor, q_proj_t: torch.Tensor, k_proj_t: torch.Tensor, v_proj_t: torch.Tensor,
                     o_proj_t: torch.Tensor, q_norm: torch.Tensor, k_norm: torch.Tensor, cos: torch.Tensor,
                     sin: torch.Tensor, positions: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                     kv_len: int, eps: float, params: Any) -> tuple:
    """The arguments of decode_attention / decode_attention_new_kv for one new token per row: x [B, 1, H], the
    projections input dim first ([H, Hq*D], [H, Hkv*D], [H, Hkv*D], [Hq*D, H]), cos/sin [B, 1, D],
    positions [B, 1], the caches [B, Hkv, max_seq, D] read at [0, kv_len)."""
    batch, hidden = x.shape[0], x.shape[-1]
    head_dim = q_norm.shape[0]
    return (x.reshape(batch, hidden), q_proj_t, k_proj_t, v_proj_t, o_proj_t, q_norm, k_norm,
            cos.reshape(batch, head_dim), sin.reshape(batch, head_dim),
            positions[:, 0].to(torch.int32).reshape(1, batch), k_cache, v_cache,
            kv_len, eps, 1.0 / math.sqrt(head_dim), params.kv_tile, params.q_chunks,
            out_heads_early(params, kv_len), params.out_heads_mid, params.cache_position)
