"""Fakes of NxDI's attention and KV-cache manager (aws-neuron/neuronx-distributed-inference, paths below
`src/neuronx_distributed_inference/`), reduced to what Qwen3-MoE uses without NxDI's own kernels: separate q/k/v
projections (fused_qkv off), pre-RoPE q/k RMSNorm, one rank, right padding, no sequence/context/data parallelism.
The names, signatures, returned values and the token-generation test are NxDI's; the arithmetic follows the
native-compiler branches (no flash attention) step by step. Used by tests/neuron_fakes.py."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from kernels.norm.baseline import rms_norm


# ---- modules/custom_calls.py CustomRMSNorm (forward: RMSNorm in fp32, back to the input dtype)
class CustomRMSNorm(nn.Module):
    def __init__(self, hidden_size=None, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.hidden_size = hidden_size
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        return rms_norm(hidden_states, self.weight, self.variance_epsilon)


# ---- neuronx_distributed parallel_layers/mappings.py: reduce_from_tensor_model_parallel_region (all-reduce over the
# TP group; the identity on one rank)
def reduce_from_tensor_model_parallel_region(input_, process_group=None):
    return input_


# ---- modules/attention/utils.py: RotaryEmbedding, rotate_half, apply_rotary_pos_emb, move_heads_front, repeat_kv,
# manual_softmax
class RotaryEmbedding(nn.Module):
    def __init__(self, dim, max_position_embeddings=2048, base=10000, factor: float = None):
        super().__init__()
        self.dim, self.max_position_embeddings, self.base, self.factor = dim, max_position_embeddings, base, factor

    @torch.no_grad()
    def forward(self, x, position_ids):
        inv_freq = 1.0 / (self.base ** (torch.arange(0, self.dim, 2, dtype=torch.float) / self.dim))
        expanded = inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
        freqs = (expanded @ position_ids[:, None, :].float()).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype=x.dtype), emb.sin().to(dtype=x.dtype)


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=1):
    cos, sin = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
    return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)


def move_heads_front(tensor, bsz, seq_len, num_head, head_dim, layernorm=None):
    tensor = tensor.view(bsz, seq_len, num_head, head_dim)
    if layernorm:
        tensor = layernorm(tensor)
    return tensor.transpose(1, 2).contiguous()


def repeat_kv(hidden_states, n_rep):
    batch, kv_heads, slen, head_dim = hidden_states.shape
    if n_rep == 1:
        return hidden_states
    expanded = hidden_states[:, :, None, :, :].expand(batch, kv_heads, n_rep, slen, head_dim)
    return expanded.reshape(batch, kv_heads * n_rep, slen, head_dim)


def manual_softmax(prior_scores, active_scores, is_speculation):
    max_score = torch.max(prior_scores, dim=-1, keepdim=True)[0]
    max_active = torch.max(active_scores, dim=-1, keepdim=True)[0]
    max_score = torch.maximum(max_score, max_active) if is_speculation else torch.maximum(max_score, active_scores)
    exp_prior, exp_active = torch.exp(prior_scores - max_score), torch.exp(active_scores - max_score)
    denominator = exp_prior.sum(dim=-1, keepdim=True) + exp_active.sum(dim=-1, keepdim=True)
    return exp_prior / denominator, exp_active / denominator


# ---- modules/attention/gqa.py: GroupQueryAttention_QKV (fused_qkv off: q_proj, k_proj, v_proj) and
# GroupQueryAttention_O (o_proj, row parallel: its all-reduce is the identity on one rank), this rank's shards
class GroupQueryAttention_QKV(nn.Module):
    def __init__(self, hidden_size, head_dim, num_attention_heads, num_key_value_heads, tp_degree, dtype):
        super().__init__()
        q, kv = num_attention_heads // tp_degree * head_dim, max(num_key_value_heads // tp_degree, 1) * head_dim
        self.q_proj = nn.Linear(hidden_size, q, bias=False, dtype=dtype)
        self.k_proj = nn.Linear(hidden_size, kv, bias=False, dtype=dtype)
        self.v_proj = nn.Linear(hidden_size, kv, bias=False, dtype=dtype)

    def forward(self, hidden_states, rmsnorm=None, adapter_ids=None, residual=None):
        return self.q_proj(hidden_states), self.k_proj(hidden_states), self.v_proj(hidden_states), residual


class GroupQueryAttention_O(nn.Module):
    def __init__(self, hidden_size, head_dim, num_attention_heads, tp_degree, dtype):
        super().__init__()
        self.o_proj = nn.Linear(num_attention_heads // tp_degree * head_dim, hidden_size, bias=False, dtype=dtype)

    def forward(self, attention_output, adapter_ids=None):
        return self.o_proj(attention_output)


# ---- modules/attention/attention_base.py: NeuronAttentionBaseOutput, NeuronAttentionBase
@dataclass(frozen=True)
class NeuronAttentionBaseOutput:
    hidden_states: torch.Tensor
    present_key_value: torch.Tensor
    cos_cache: Optional[torch.Tensor] = None
    sin_cache: Optional[torch.Tensor] = None
    residual: Optional[torch.Tensor] = None
    attn_input_hidden_states: Optional[torch.Tensor] = None

    def __iter__(self):
        return iter([self.hidden_states, self.present_key_value, self.cos_cache, self.sin_cache])

    def __getitem__(self, i):
        return getattr(self, fields(self)[i].name)


class _ProcessGroup:
    def size(self):
        return 1


class NeuronAttentionBase(nn.Module):
    """__init__ keeps the attributes NxDI's token-generation choices read; forward is
    standard_causal_attention_forward (no chunked or sliding-window attention)."""

    def __init__(self, config, *, hidden_size, num_attention_heads, num_key_value_heads, head_dim=None,
                 rotary_emb=None, rms_norm_eps=None, use_qk_norm=False):
        super().__init__()
        neuron_config = config.neuron_config
        self.config, self.neuron_config = config, neuron_config
        self.tensor_model_parallel_group = _ProcessGroup()
        self.tp_degree = neuron_config.tp_degree
        self.torch_dtype = neuron_config.torch_dtype
        self.attn_block_tkg_nki_kernel_enabled = neuron_config.attn_block_tkg_nki_kernel_enabled
        self.k_cache_transposed = neuron_config.k_cache_transposed
        self.flash_decoding_enabled = neuron_config.flash_decoding_enabled
        self.sequence_parallel_enabled = neuron_config.sequence_parallel_enabled
        self.head_dim = head_dim if head_dim is not None else hidden_size // num_attention_heads
        self.rotary_emb, self.rms_norm_eps = rotary_emb, rms_norm_eps
        self.softmax_scale = math.sqrt(self.head_dim)
        self.q_layernorm = self.k_layernorm = None
        # init_gqa_properties: this rank's heads and projections
        self.num_heads = num_attention_heads // self.tp_degree
        self.num_key_value_heads = max(num_key_value_heads // self.tp_degree, 1)
        self.num_key_value_groups = self.num_heads // self.num_key_value_heads
        self.qkv_proj = GroupQueryAttention_QKV(hidden_size, self.head_dim, num_attention_heads, num_key_value_heads,
                                                self.tp_degree, self.torch_dtype)
        self.o_proj = GroupQueryAttention_O(hidden_size, self.head_dim, num_attention_heads, self.tp_degree,
                                            self.torch_dtype)

    def get_qkv_proj(self):
        return self.qkv_proj

    def get_o_proj(self):
        return self.o_proj

    def prep_qkv_tensors(self, position_ids, hidden_states, past_key_value, adapter_ids=None, cos_cache=None,
                         sin_cache=None, rmsnorm=None, skip_rope=False, residual=None, use_polar_compatible_rope=False):
        Q, K, V, residual = self.get_qkv_proj()(hidden_states=hidden_states, rmsnorm=rmsnorm,
                                                adapter_ids=adapter_ids, residual=residual)
        bsz, q_len, _ = hidden_states.size()
        Q = move_heads_front(Q, bsz, q_len, self.num_heads, self.head_dim, layernorm=self.q_layernorm)
        K = move_heads_front(K, bsz, q_len, self.num_key_value_heads, self.head_dim, layernorm=self.k_layernorm)
        V = move_heads_front(V, bsz, q_len, self.num_key_value_heads, self.head_dim)
        if not skip_rope:
            if cos_cache is None or sin_cache is None:
                cos_cache, sin_cache = self.rotary_emb(V, position_ids)
            Q, K = apply_rotary_pos_emb(Q, K, cos_cache, sin_cache)
        return Q, K, V, cos_cache, sin_cache, residual

    def perform_prefill(self, Q, K, V, q_len, bsz, attention_mask):
        """The native-compiler branch (FlashAttentionStrategy.NONE): BHSD."""
        scores = torch.matmul(Q, repeat_kv(K, self.num_key_value_groups).transpose(2, 3)) / self.softmax_scale
        scores = torch.where(attention_mask.to(torch.bool), scores, torch.finfo(scores.dtype).min)
        probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(Q.dtype)
        return torch.matmul(probs, repeat_kv(V, self.num_key_value_groups))

    def compute_for_token_gen(self, Q, K, V, position_ids, past_key_value, attention_mask, active_mask):
        K_prior = repeat_kv(past_key_value[0], self.num_key_value_groups).transpose(2, 3)
        V_prior = repeat_kv(past_key_value[1], self.num_key_value_groups)
        prior_scores = torch.matmul(Q, K_prior) / self.softmax_scale
        prior_scores = torch.where(attention_mask, prior_scores, torch.finfo(prior_scores.dtype).min).to(torch.float32)
        active_scores = torch.matmul(Q, repeat_kv(K, self.num_key_value_groups).transpose(2, 3)) / self.softmax_scale
        softmax_prior, softmax_active = manual_softmax(prior_scores, active_scores.to(torch.float32), False)
        softmax_prior, softmax_active = softmax_prior.to(Q.dtype), softmax_active.to(Q.dtype)
        return torch.matmul(softmax_prior, V_prior) + torch.matmul(softmax_active,
                                                                  repeat_kv(V, self.num_key_value_groups))

    def forward(self, hidden_states, attention_mask=None, position_ids=None, past_key_value=None, active_mask=None,
                adapter_ids=None, cos_cache=None, sin_cache=None, rmsnorm=None, rotary_position_ids=None, kv_mgr=None,
                get_kv_per_layer=False, update_kv_per_layer=False, residual=None,
                windowed_context_encoding_window_idx=-1, **kwargs):
        return self.standard_causal_attention_forward(
            hidden_states, attention_mask, position_ids, past_key_value, active_mask, adapter_ids, cos_cache,
            sin_cache, rmsnorm, rotary_position_ids, kv_mgr, get_kv_per_layer, update_kv_per_layer, residual,
            windowed_context_encoding_window_idx, **kwargs)

    def standard_causal_attention_forward(self, hidden_states, attention_mask=None, position_ids=None,
                                          past_key_value=None, active_mask=None, adapter_ids=None, cos_cache=None,
                                          sin_cache=None, rmsnorm=None, rotary_position_ids=None, kv_mgr=None,
                                          get_kv_per_layer=False, update_kv_per_layer=False, residual=None,
                                          windowed_context_encoding_window_idx=-1, **kwargs):
        original_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(self.torch_dtype)
        bsz, q_len, _ = hidden_states.size()
        if rotary_position_ids is None:
            rotary_position_ids = position_ids
        if get_kv_per_layer:
            past_key_value = kv_mgr.get_kv_by_layer_id(**kwargs)
        is_token_gen = past_key_value is not None
        if windowed_context_encoding_window_idx >= 0:
            is_token_gen = False
        Q, K, V, cos_cache, sin_cache, residual = self.prep_qkv_tensors(
            rotary_position_ids, hidden_states, past_key_value, adapter_ids=adapter_ids, cos_cache=cos_cache,
            sin_cache=sin_cache, rmsnorm=rmsnorm, residual=residual)
        if is_token_gen:
            attn_output = self.compute_for_token_gen(Q, K, V, position_ids, past_key_value, attention_mask,
                                                     active_mask)
        else:
            attn_output = self.perform_prefill(Q, K, V, q_len, bsz, attention_mask)
        attn_output = attn_output.transpose(1, 2).contiguous().reshape(bsz, q_len, self.num_heads * self.head_dim)
        attn_output = self.get_o_proj()(attn_output, adapter_ids=adapter_ids)
        kv = (K, V)
        if update_kv_per_layer:
            kv = kv_mgr.update_kv_by_layer_id(kv_per_layer=kv, position_ids=position_ids, **kwargs)
        return NeuronAttentionBaseOutput(attn_output.to(original_dtype), kv, cos_cache, sin_cache, residual)


# ---- models/qwen3_moe/modeling_qwen3_moe.py NeuronQwen3MoEAttention
class NeuronQwen3MoEAttention(NeuronAttentionBase):
    def __init__(self, config):
        rotary_emb = RotaryEmbedding(config.head_dim, max_position_embeddings=config.max_position_embeddings,
                                     base=config.rope_theta)
        super().__init__(config=config, hidden_size=config.hidden_size, num_attention_heads=config.num_attention_heads,
                         num_key_value_heads=config.num_key_value_heads, head_dim=config.head_dim,
                         rotary_emb=rotary_emb, rms_norm_eps=config.rms_norm_eps, use_qk_norm=False)
        self.q_layernorm = CustomRMSNorm(self.head_dim, self.rms_norm_eps)
        self.k_layernorm = CustomRMSNorm(self.head_dim, self.rms_norm_eps)


# ---- modules/kvcache/kv_cache_manager.py KVCacheManager: one rank's caches [B, Hkv, max_seq, D] per layer,
# get_kv_by_layer_id (the bucket's slice, right padding) and update_kv_by_layer_id (token generation: the new k/v
# scattered to each row's position; context encoding: fill_prefix)
class KVCacheManager(nn.Module):
    def __init__(self, caches):
        super().__init__()
        self.past_key_values = nn.ParameterList([nn.Parameter(c, requires_grad=False) for pair in caches for c in pair])

    def _fetch_cache(self, idx, kvcache_buffer=None):
        return self.past_key_values[2 * idx], self.past_key_values[2 * idx + 1]

    def get_kv_by_layer_id(self, idx, seq_len, skip_slice=False, kvcache_buffer=None, **kwargs):
        k_cache, v_cache = self._fetch_cache(idx, kvcache_buffer)
        if not skip_slice:
            k_cache, v_cache = k_cache[:, :, :seq_len], v_cache[:, :, :seq_len]
        return k_cache, v_cache

    def update_kv_by_layer_id(self, idx, is_for_context_encoding, seq_ids, position_ids, kv_per_layer, seq_len,
                              kvcache_buffer=None, **kwargs):
        latest_k, latest_v = kv_per_layer
        k_cache, v_cache = self._fetch_cache(idx, kvcache_buffer)
        if is_for_context_encoding:
            return (torch.cat([latest_k, k_cache[:, :, latest_k.shape[2]:]], dim=2),
                    torch.cat([latest_v, v_cache[:, :, latest_v.shape[2]:]], dim=2))
        index = position_ids.view(-1, 1, position_ids.shape[-1], 1)
        return (torch.scatter(input=k_cache, dim=2, index=index.expand_as(latest_k), src=latest_k),
                torch.scatter(input=v_cache, dim=2, index=index.expand_as(latest_v), src=latest_v))
