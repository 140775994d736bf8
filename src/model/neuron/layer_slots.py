"""The NKI variants in NxDI's Qwen3-MoE modules (aws-neuron/neuronx-distributed-inference
models/qwen3_moe/modeling_qwen3_moe.py, and the MoE it builds with modules/moe_v2.py initialize_moe_module
from aws-neuron/neuronx-distributed modules/moe: MoE, RouterTopK, ExpertMLPsV2).

Each slot calls the variant's `@nki.jit` function (model.neuron.slots.DEVICE_KERNELS) on the traced tensors
directly, as the contest's own NKI RMSNorm example does (aws-neuron/nki-moe nki_custom_rmsnorm.py), with the
arguments the variant's CPU launcher gives it (kernels/<layer>/<variant>.py `run`; the expert kernels' share
kernels.experts.launch with it), so one kernel file runs on the device and on the interpreter. Router and experts slots keep NxDI's module instance and give it a
subclass (`extend`) whose forward runs the kernel where the variant applies and NxDI's own forward
(`super().forward`) elsewhere: NxDI's parameter names, sharding and checkpoint conversion stay untouched.

Weight layouts need no conversion: NxDI's per-rank parameters are already what the kernels take.
- norms: CustomRMSNorm.weight [H] (passed as `weight.view(-1)` so tracing sees a real tensor);
- router: RouterTopK.linear_router.weight [E, H] fp32 (Qwen3MoeInferenceConfig sets router dtype fp32);
- experts: ExpertMLPsV2.mlp_op (NxD Experts) gate_up_proj.weight [E, H, 2I/tp] (ExpertFusedColumnParallelLinear,
  stride 2: this rank's gate columns then its up columns) and down_proj.weight [E, I/tp, H]
  (ExpertFusedRowParallelLinear), which convert_qwen3_moe_hf_to_neuron_state_dict builds from the HF experts
  and the builder shards per rank: exactly kernels.types.ExpertWeights.

Phases. The norm and router variants run in both phases. The decode-only expert variants run where NxD's
ExpertMLPsV2.forward (neuronx_distributed/modules/moe/expert_mlps_v2.py, `if seq_len == 1:` in its inference
branch, line 1471 at fbac349) itself picks token generation with selective loading: inference, `seq_len == 1`
(MoE._forward_compute_bound, model.py line 196, passes the full hidden states' sequence length; NxDI's
context-encoding sub-model always has seq_len = its bucket > 1, the same test MoE.forward uses to pick NxDI's
own fused TKG kernel, line 294) and tokens * top_k / experts < DEFAULT_SELECTIVE_LOADING_THRESHOLD, without
expert parallelism; everywhere else NxD's forward runs. The attention variant runs where NxDI's
NeuronAttentionBase picks token generation (NKIDecodeAttention), NxDI's attention elsewhere."""
import types
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from neuronx_distributed.parallel_layers.mappings import reduce_from_tensor_model_parallel_region
from neuronx_distributed_inference.models.layer_boundary_marker import ModuleMarkerEndWrapper, ModuleMarkerStartWrapper
from neuronx_distributed_inference.modules.attention.attention_base import NeuronAttentionBaseOutput
from kernels.attention.launch import decode_arguments
from kernels.experts.launch import combine, grouped_v2_arguments, selective_v1_arguments
from kernels.experts.selection import uses_selective_loading

_SUBCLASSES = {}


def extend(module, mixin, **attributes):
    """Give an NxDI module instance the subclass (mixin, its class): parameters, buffers and state-dict keys
    stay NxDI's, and the mixin's `super().forward` is NxDI's forward."""
    base = type(module)
    if (mixin, base) not in _SUBCLASSES:
        _SUBCLASSES[(mixin, base)] = type(f"{mixin.__name__}_{base.__name__}", (mixin, base), {})
    module.__class__ = _SUBCLASSES[(mixin, base)]
    for name, value in attributes.items():
        setattr(module, name, value)
    return module


# ---- norm: nki_rmsnorm, nki_add_rmsnorm
class NKIRMSNorm(nn.Module):
    """An RMSNorm slot (NxDI's CustomRMSNorm: `weight`, `variance_epsilon`, forward(hidden_states)) that runs an
    NKI kernel taking (x [tokens, hidden], weight [hidden], eps); `add_kernel` (x, residual, weight, eps) ->
    (normed, residual + x) serves `add_and_norm`."""

    def __init__(self, kernel, hidden_size, eps, add_kernel=None):
        super().__init__()
        self.kernel = kernel
        self.add_kernel = add_kernel
        self.hidden_size = hidden_size
        self.variance_epsilon = eps
        self.weight = nn.Parameter(torch.ones(hidden_size))

    def forward(self, hidden_states):
        shape = hidden_states.shape
        out = self.kernel(hidden_states.reshape(-1, shape[-1]), self.weight.view(-1), self.variance_epsilon)
        return out.view(shape)

    def add_and_norm(self, hidden_states, residual):
        """(norm(residual + hidden_states), residual + hidden_states) in one kernel call."""
        shape = hidden_states.shape
        normed, summed = self.add_kernel(hidden_states.reshape(-1, shape[-1]), residual.reshape(-1, shape[-1]),
                                         self.weight.view(-1), self.variance_epsilon)
        return normed.view(shape), summed.view(shape)


def _replace_norm(module, kernels):
    return NKIRMSNorm(kernels.rmsnorm, module.weight.shape[-1], module.variance_epsilon,
                      getattr(kernels, "add_rmsnorm", None))


def install_norm(model, kernels, params):
    for layer in model.layers:
        layer.input_layernorm = _replace_norm(layer.input_layernorm, kernels)
        layer.post_attention_layernorm = _replace_norm(layer.post_attention_layernorm, kernels)
    model.norm = _replace_norm(model.norm, kernels)


class FusedAddNormDecoderLayer:
    """NxDI's NeuronQwen3MoeDecoderLayer.forward (modeling_qwen3_moe.py), line for line, except that the
    residual add after attention and post_attention_layernorm are one add_rmsnorm call. The add at the end of
    the layer stays in torch (fusing it into the next layer's input norm would cross NxDI's layer loop in
    NeuronBaseModel.get_model_output), so input and final norms run `rmsnorm`; both round `residual + x` to
    the model dtype before normalising, as the CPU home's fused slot does."""

    def forward(self, hidden_states, attention_mask=None, position_ids=None, past_key_value=None,
                padding_mask=None, **kwargs):
        residual = hidden_states
        qkv_fused_rmsnorm = None
        hidden_states = ModuleMarkerStartWrapper()(hidden_states)
        if self.input_layernorm:
            if self.qkv_kernel_enabled and self.qkv_kernel_fused_rmsnorm:
                qkv_fused_rmsnorm = self.input_layernorm
            else:
                hidden_states = self.input_layernorm(hidden_states)
        hidden_states, present_key_value, cos_cache, sin_cache = self.self_attn(
            hidden_states=hidden_states, attention_mask=attention_mask, position_ids=position_ids,
            past_key_value=past_key_value, rmsnorm=qkv_fused_rmsnorm, **kwargs)
        hidden_states, residual = self.post_attention_layernorm.add_and_norm(hidden_states, residual)
        neuron_config = self.config.neuron_config
        is_speculative_decoding = neuron_config.enable_fused_speculation and not neuron_config.is_prefill_stage
        hidden_states = self.mlp(hidden_states, padding_mask, is_speculative_decoding=is_speculative_decoding)[0]
        hidden_states = residual + hidden_states
        hidden_states = ModuleMarkerEndWrapper()(hidden_states)
        return (hidden_states, present_key_value, cos_cache, sin_cache, None)


def install_add_norm(model, kernels, params):
    for layer in model.layers:
        if layer.moe_fused_nki_kernel_enabled:
            raise ValueError("kernel.norm=nki_add_rmsnorm: NxDI's fused MoE TKG kernel (moe_fused_nki_kernel_enabled) "
                             "already takes the post-attention norm")
    install_norm(model, kernels, params)
    for layer in model.layers:
        extend(layer, FusedAddNormDecoderLayer)


# ---- router: nki_topk
class NKIRouterTopK:
    """RouterTopK.forward (neuronx_distributed/modules/moe/routing.py) as one kernel: logits, softmax, top-k
    and the top-k L1 normalisation NxD's ExpertMLPsV2 applies (`normalize_top_k_affinities`, which the
    installer turns off for this layer, so it is applied once). Returns NxD's triple with the affinities
    scattered into [T, E] (zero where not chosen: every ExpertMLPsV2 path gathers or masks by expert_index)
    and no logits (the kernel does not produce them; MoE returns them only with return_router_logits)."""

    def forward(self, hidden_states):
        tokens = hidden_states.reshape(-1, hidden_states.shape[-1])
        affinities, index = self.nki_kernels.router_topk(tokens, self.linear_router.weight, self.top_k,
                                                         self.nki_params.token_tile)
        index = index.to(torch.long)
        expert_affinities = torch.zeros((tokens.shape[0], self.num_experts), dtype=affinities.dtype,
                                        device=affinities.device).scatter(1, index, affinities)
        return None, expert_affinities, index


def _moe_layers(model, slot):
    for layer in model.layers:
        if getattr(layer.mlp, "moe_fused_tkg", None) is not None:
            raise ValueError(f"{slot}: NxDI's fused MoE TKG module (moe_fused_nki_kernel_enabled) replaces "
                             f"router and experts in token generation; turn it off to use this variant")
        yield layer.mlp


def install_router(model, kernels, params):
    for moe in _moe_layers(model, "kernel.router=nki_topk"):
        if moe.return_router_logits:
            raise ValueError("kernel.router=nki_topk returns no router logits (return_router_logits is set)")
        extend(moe.router, NKIRouterTopK, nki_kernels=kernels, nki_params=types.SimpleNamespace(**params))
        moe.expert_mlps.routed_experts_mlp_config.normalize_top_k_affinities = False


# ---- experts: selective_v1, grouped_v2 (token generation with selective loading)
def launch_selective_v1(kernels, params, x, affinities, index, gate_up, down):
    """kernels/experts/selective_v1.py `run`: every slot's expert output, scaled and summed over k in torch."""
    outputs = kernels.selective_v1(*selective_v1_arguments(x, index, gate_up, down, params))
    return combine(outputs.view(*index.shape, -1), affinities)


def launch_grouped_v2(kernels, params, x, affinities, index, gate_up, down):
    """kernels/experts/grouped_v2.py `run`: the whole block on `cores` program instances."""
    cores, arguments = grouped_v2_arguments(x, affinities, index, gate_up, down, params)
    return kernels.grouped_v2[cores](*arguments)


class NKIExpertMLPs:
    """ExpertMLPsV2.forward with its token-generation selective-loading branch (forward_selective_loading:
    gather the chosen affinities, L1-normalise if configured, per-token expert MLPs scaled and summed) as
    the variant's kernel; every other branch is NxD's (with expert parallelism NxD refuses selective loading,
    and so does the slot)."""

    def forward(self, hidden_states, expert_affinities, expert_index, seq_len, padding_mask=None,
                expert_affinities_masked_full=None):
        config = self.routed_experts_mlp_config
        tokens = hidden_states.shape[0]
        selective = seq_len == 1 and uses_selective_loading(tokens, config.top_k, config.num_experts)
        if self.training or not selective or self.moe_expert_model_parallel_group.size() > 1:
            return super().forward(hidden_states, expert_affinities, expert_index, seq_len, padding_mask,
                                   expert_affinities_masked_full)
        chosen = expert_affinities[torch.arange(tokens, device=hidden_states.device).unsqueeze(1), expert_index]
        if config.normalize_top_k_affinities:
            chosen = F.normalize(chosen, p=1.0, dim=1)
        mlp_op = self.get_mlp_op()
        return self.nki_launch(hidden_states, chosen, expert_index, mlp_op.gate_up_proj.weight,
                               mlp_op.down_proj.weight)


def install_experts(launch, model, kernels, params):
    for moe in _moe_layers(model, "kernel.experts"):
        if moe.expert_mlps.routed_experts_mlp_config.early_expert_affinity_modulation:
            raise ValueError("kernel.experts: the NKI expert kernels scale after the MLP "
                             "(early_expert_affinity_modulation is set)")
        extend(moe.expert_mlps, NKIExpertMLPs,
               nki_launch=partial(launch, kernels, types.SimpleNamespace(**params)))


# ---- attention: nki_decode (token generation)
# NxDI features that replace or reshape the attention the kernel stands in for (neuron_config flag -> why)
_ATTENTION_REFUSES = {
    "attn_block_tkg_nki_kernel_enabled": "NxDI's own attention-block TKG kernel already takes token generation",
    "qkv_kernel_enabled": "NxDI's QKV kernel takes the input norm into the projection",
    "fused_qkv": "the kernel reads q_proj, k_proj and v_proj separately (fused_qkv packs them into Wqkv)",
    "k_cache_transposed": "the kernel reads the K cache as [B, Hkv, S, D] (k_cache_transposed is set)",
    "flash_decoding_enabled": "flash decoding splits the KV cache across cores",
    "is_prefix_caching": "prefix caching runs token generation's attention with a block KV cache",
    "sequence_parallel_enabled": "with sequence parallelism the hidden states arrive sharded",
}


class NKIDecodeAttention:
    """NeuronAttentionBase.standard_causal_attention_forward (modules/attention/attention_base.py) with its
    token-generation branch as decode_attention_new_kv. That entry follows the contract NxDI's own
    token-generation paths keep whenever the cache manager writes the cache (the native compute_for_token_gen,
    and attention_block_tokengen_nki_kernel without attn_block_tkg_nki_kernel_cache_update): the attention
    returns the all-reduced o projection and the new (K, V) [B, Hkv, 1, D] (after q/k norm and RoPE, in the
    cache dtype), which KVCacheManager.update_kv_by_layer_id scatters to each row's position, per layer when
    update_kv_per_layer and otherwise with every layer's at the end of the model. In-kernel cache updates are
    NxDI's only for its attention-block kernel, behind a flag the model-level cache handling reads
    (attn_block_tkg_nki_kernel_cache_update); mirroring that would reach into NxDI's model wrapper, so the
    cache stays the manager's.

    Token generation is NxDI's own test, `is_token_gen = past_key_value is not None` (after
    kv_mgr.get_kv_by_layer_id when get_kv_per_layer; never inside windowed context encoding), with one token
    per row (fused speculation's several go to NxDI's module). The kernel masks cached positions at or past
    each row's position (NxDI's right-padded token-generation mask: position < position_ids) and reads the
    whole bucket NxDI sliced; the mask tensor itself is not read. The projections are passed input dim first
    (`weight.T`, as the CPU home stores them): on the device that is a transpose in the traced graph."""

    def standard_causal_attention_forward(self, hidden_states, attention_mask=None, position_ids=None,
                                          past_key_value=None, active_mask=None, adapter_ids=None, cos_cache=None,
                                          sin_cache=None, rmsnorm=None, rotary_position_ids=None, kv_mgr=None,
                                          get_kv_per_layer=False, update_kv_per_layer=False, residual=None,
                                          windowed_context_encoding_window_idx=-1, **kwargs):
        if get_kv_per_layer:
            past_key_value = kv_mgr.get_kv_by_layer_id(**kwargs)
        if past_key_value is None or windowed_context_encoding_window_idx >= 0 or hidden_states.shape[1] != 1:
            return super().standard_causal_attention_forward(
                hidden_states, attention_mask, position_ids, past_key_value, active_mask, adapter_ids, cos_cache,
                sin_cache, rmsnorm, rotary_position_ids, kv_mgr, False, update_kv_per_layer, residual,
                windowed_context_encoding_window_idx, **kwargs)
        original_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(self.torch_dtype)
        if rotary_position_ids is None:
            rotary_position_ids = position_ids
        if cos_cache is None or sin_cache is None:
            cos_cache, sin_cache = self.rotary_emb(hidden_states, rotary_position_ids)
        k_prior, v_prior = past_key_value[:2]
        qkv, o = self.get_qkv_proj(), self.get_o_proj()
        arguments = decode_arguments(hidden_states, qkv.q_proj.weight.T, qkv.k_proj.weight.T, qkv.v_proj.weight.T,
                                     o.o_proj.weight.T, self.q_layernorm.weight.view(-1),
                                     self.k_layernorm.weight.view(-1), cos_cache, sin_cache, position_ids, k_prior,
                                     v_prior, k_prior.shape[2], self.rms_norm_eps, self.nki_params)
        kernel = self.nki_kernels.decode_attention_new_kv
        cores = self.nki_params.cores
        attn_output, k_new, v_new = (kernel[cores] if cores > 1 else kernel)(*arguments)
        attn_output = reduce_from_tensor_model_parallel_region(attn_output.view(hidden_states.shape),
                                                               process_group=self.tensor_model_parallel_group)
        kv = (k_new, v_new)
        if update_kv_per_layer:
            kv = kv_mgr.update_kv_by_layer_id(kv_per_layer=kv, position_ids=position_ids, **kwargs)
        return NeuronAttentionBaseOutput(attn_output.to(original_dtype), kv, cos_cache, sin_cache, residual)


def install_attention(model, kernels, params):
    neuron_config = model.config.neuron_config
    for flag, why in _ATTENTION_REFUSES.items():
        if getattr(neuron_config, flag):
            raise ValueError(f"kernel.attention=nki_decode: {why} ({flag} is set)")
    for layer in model.layers:
        extend(layer.self_attn, NKIDecodeAttention, nki_kernels=kernels, nki_params=types.SimpleNamespace(**params))


# (layer, variant) -> installer(model, kernels namespace, params dict); keys = model.neuron.slots.DEVICE_KERNELS
INSTALLERS = {
    ("norm", "nki_rmsnorm"): install_norm,
    ("norm", "nki_add_rmsnorm"): install_add_norm,
    ("router", "nki_topk"): install_router,
    ("experts", "selective_v1"): partial(install_experts, launch_selective_v1),
    ("experts", "grouped_v2"): partial(install_experts, launch_grouped_v2),
    ("attention", "nki_decode"): install_attention,
}
