"""Drive one device slot of a fake-NxDI Qwen3-MoE model (built by model.neuron.qwen3_moe_nki.model_class, in the
repository or from an exported file) in one phase, and check it against the CPU home: the same kernel through
the CPU home's kernel slot on the interpreter (bit for bit: the same kernel with the same arguments and the
same weights in the same layout) and the variant's torch reference (within the variant's rtol). Each check
returns the names of the kernels the slot launched."""
from __future__ import annotations

import dataclasses

import nki_cpu
import torch

import kernels
from kernels.registry import max_relative_error
from kernels.slots import KernelSet
from kernels.types import AttentionInputs, AttentionWeights, ExpertWeights, Phase
from tests import neuron_fakes

TOKENS = {Phase.TOKEN: 1, Phase.CONTEXT: 5}  # decode: one token per row; context: a short prompt
TARGET = "trn2"
BUCKET, MAX_SEQ, DECODE_POSITION = 48, 64, 41  # token generation: KV bucket, cache length, the new token's position


def resolved_params(choices: dict[str, str], overrides: dict | None = None) -> dict[str, dict]:
    """Every knob of each selected variant's params, as the platform and the export stage pass them."""
    return {layer: dataclasses.asdict(kernels.get(layer, name).make_params((overrides or {}).get(layer)))
            for layer, name in choices.items() if name != "baseline"}


def fill(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Weights drawn as NxDI holds them after load: bf16 norms and experts, an fp32 router."""
    g = torch.Generator().manual_seed(seed)
    for name, parameter in model.named_parameters():
        shape = parameter.shape
        if name.endswith("linear_router.weight"):
            value = torch.randn(shape, generator=g) * 1.5 * shape[-1] ** -0.5
        elif "norm" in name:
            value = (1.0 + 0.1 * torch.randn(shape, generator=g)).to(torch.bfloat16)
        else:
            fan_in = shape[-2]
            value = torch.empty(shape).uniform_(-(3.0 / fan_in) ** 0.5, (3.0 / fan_in) ** 0.5, generator=g)
            value = value.to(torch.bfloat16)
        parameter.data = value
        parameter.requires_grad_(False)  # loaded for inference, as NxDI's builder traces it
    return model


def hidden_states(model: torch.nn.Module, phase: Phase, seed: int = 1, batch: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    hidden = model.layers[0].input_layernorm.weight.shape[-1]
    return torch.randn(batch, TOKENS[phase], hidden, generator=g).bfloat16()


def positions(phase: Phase, rows: tuple[int, ...] = (DECODE_POSITION,)) -> tuple[torch.Tensor, torch.Tensor]:
    """position_ids and NxDI's boolean attention mask for a prompt at the start of its sequence ([1, S], causal
    [1, 1, S, S]) or one decoded token per row at the rows' positions in the KV bucket ([B, 1], [B, 1, 1, BUCKET]:
    True before each row's position)."""
    if phase is Phase.CONTEXT:
        tokens = TOKENS[phase]
        return torch.arange(tokens)[None], torch.ones(tokens, tokens, dtype=torch.bool).tril()[None, None]
    position_ids = torch.tensor(rows).reshape(-1, 1)
    return position_ids, (torch.arange(BUCKET) < position_ids)[:, None, None, :]


def home(layer: str, name: str, params: dict | None = None) -> KernelSet:
    return KernelSet.from_choices({layer: name}, {layer: params or {}}, executor="interp", target=TARGET)


def launched(run) -> tuple[object, list[str]]:
    with nki_cpu.recording() as traces:
        out = run()
    return out, [t.kernel for t in traces]


def check_norm(model, name: str, phase: Phase, params: dict) -> list[str]:
    """The whole decoder layer: input norm, (fake) attention, the post-attention norm with the residual add,
    (NxDI's) MoE, the final add; the norms on the CPU home's slot."""
    layer, slot = model.layers[0], home("norm", name).norm
    eps = layer.input_layernorm.variance_epsilon
    x = hidden_states(model, phase)
    position_ids, mask = positions(Phase.CONTEXT if phase is Phase.CONTEXT else Phase.TOKEN)
    mask = mask[..., :x.shape[1]]  # no KV cache given: NxDI's module attends within x
    out, names = launched(lambda: layer(x, attention_mask=mask, position_ids=position_ids)[0])
    normed, _ = slot(phase, x, layer.input_layernorm.weight, eps)
    attention = layer.self_attn(hidden_states=normed, attention_mask=mask, position_ids=position_ids)[0]
    normed, summed = slot(phase, attention, layer.post_attention_layernorm.weight, eps, x)
    reference, _ = kernels.get("norm", name).reference(attention, layer.post_attention_layernorm.weight, eps, x)
    assert max_relative_error(normed, reference) <= kernels.get("norm", name).rtol
    assert torch.equal(out, summed + layer.mlp(normed)[0])
    return names


def check_router(model, name: str, phase: Phase, params: dict) -> list[str]:
    """MoE's router call: NxD's (logits, affinities [T, E], index) contract with the kernel's normalised top-k."""
    moe = model.layers[0].mlp
    x = hidden_states(model, phase)
    (logits, affinities, index), names = launched(lambda: moe.router(x))
    tokens, weight = x.reshape(-1, x.shape[-1]), moe.router.linear_router.weight
    expected, expected_index = home("router", name, params).router(phase, tokens, weight, moe.router.top_k)
    assert logits is None and torch.equal(index, expected_index)
    assert torch.equal(affinities.gather(1, index), expected)
    assert int((affinities != 0).sum()) <= index.numel()  # nothing outside the chosen experts
    reference = kernels.get("router", name).reference(tokens, weight, moe.router.top_k)
    assert max_relative_error(expected, reference[0]) <= kernels.get("router", name).rtol
    assert moe.expert_mlps.routed_experts_mlp_config.normalize_top_k_affinities is False  # applied once, in-kernel
    return names


def check_experts(model, name: str, phase: Phase, params: dict) -> list[str]:
    """ExpertMLPsV2's call from MoE with NxD's router output: in token generation the kernel on the module's
    own per-rank weights, in context encoding NxD's forward, untouched."""
    moe = model.layers[0].mlp
    x = hidden_states(model, phase)
    _, affinities, index = moe.router(x)
    tokens = x.reshape(-1, x.shape[-1])
    out, names = launched(lambda: moe.expert_mlps(tokens, affinities, index, seq_len=x.shape[1]))
    if phase is Phase.CONTEXT:
        nxdi = neuron_fakes.ExpertMLPsV2.forward(moe.expert_mlps, tokens, affinities, index, x.shape[1])
        assert torch.equal(out, nxdi)
        return names
    chosen = torch.nn.functional.normalize(affinities.gather(1, index), p=1.0, dim=1)
    mlp_op = moe.expert_mlps.mlp_op
    weights = ExpertWeights(mlp_op.gate_up_proj.weight, mlp_op.down_proj.weight)
    assert torch.equal(out, home("experts", name, params).experts(phase, tokens, chosen, index, weights))
    variant = kernels.get("experts", name)
    reference = variant.reference(tokens, chosen, index, weights, params=variant.make_params(params))
    assert max_relative_error(out, reference) <= variant.rtol
    return names


def kv_caches(model, batch: int, seed: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every layer's (k, v) cache [B, Hkv, MAX_SEQ, D] in the model dtype, random (stale slots included)."""
    g = torch.Generator().manual_seed(seed)
    attention = model.layers[0].self_attn
    shape = (batch, attention.num_key_value_heads, MAX_SEQ, attention.head_dim)
    return [tuple(torch.randn(shape, generator=g).bfloat16() for _ in "kv") for _ in model.layers]


def check_attention(model, name: str, phase: Phase, params: dict,
                    rows: tuple[int, ...] = (DECODE_POSITION,)) -> list[str]:
    """NeuronAttentionBase.forward as NxDI's model calls it: in token generation (one token per row, at `rows`)
    with the bucket's cache fetched and the new k/v written by the KV-cache manager (get_kv_per_layer,
    update_kv_per_layer), equal to the CPU home's slot (whose kernel writes its cache in place) in output and in
    the written cache; in context encoding NxDI's."""
    attention = model.layers[0].self_attn
    x = hidden_states(model, phase, batch=len(rows) if phase is Phase.TOKEN else 1)
    position_ids, mask = positions(phase, rows)
    if phase is Phase.CONTEXT:
        out, names = launched(lambda: attention(x, attention_mask=mask, position_ids=position_ids))
        nxdi = neuron_fakes.attention.NeuronAttentionBase.standard_causal_attention_forward(
            attention, x, mask, position_ids)
        assert torch.equal(out.hidden_states, nxdi.hidden_states)
        assert all(torch.equal(a, b) for a, b in zip(out.present_key_value, nxdi.present_key_value))
        return names
    caches = kv_caches(model, len(rows))
    manager = neuron_fakes.attention.KVCacheManager([tuple(c.clone() for c in pair) for pair in caches])
    out, names = launched(lambda: attention(
        x, attention_mask=mask, position_ids=position_ids, kv_mgr=manager, get_kv_per_layer=True,
        update_kv_per_layer=True, idx=0, is_for_context_encoding=False, seq_ids=torch.arange(len(rows)),
        seq_len=BUCKET))
    qkv = attention.qkv_proj
    weights = AttentionWeights(qkv.q_proj.weight, qkv.k_proj.weight, qkv.v_proj.weight, attention.o_proj.o_proj.weight,
                               attention.q_layernorm.weight, attention.k_layernorm.weight, attention.rms_norm_eps)
    cos, sin = attention.rotary_emb(x, position_ids)
    k_cache, v_cache = (c.clone() for c in caches[0])
    inputs = AttentionInputs(Phase.TOKEN, position_ids, cos, sin, k_cache, v_cache, BUCKET)
    expected = home("attention", name, params).attention(phase, x, weights, inputs)
    assert torch.equal(out.hidden_states, expected)
    assert torch.equal(out.present_key_value[0], k_cache) and torch.equal(out.present_key_value[1], v_cache)
    for b, position in enumerate(rows):  # each row's new k/v landed at its position: the comparison is not vacuous
        assert (k_cache[b, :, position] != caches[0][0][b, :, position]).any()
        assert (v_cache[b, :, position] != caches[0][1][b, :, position]).any()
    reference_inputs = AttentionInputs(Phase.TOKEN, position_ids, cos, sin, *(c.clone() for c in caches[0]), BUCKET)
    variant = kernels.get("attention", name)
    assert max_relative_error(out.hidden_states, variant.reference(x, weights, reference_inputs)) <= variant.rtol
    # as the decoder layer calls it (cache given, written later by the manager): NxDI's own token-generation
    # contract, (attn_output, (K, V) [B, Hkv, 1, D]), within rtol of NxDI's native branch
    bucket = tuple(c[:, :, :BUCKET] for c in caches[0])
    plain = attention(x, attention_mask=mask, position_ids=position_ids, past_key_value=bucket)
    native = neuron_fakes.attention.NeuronAttentionBase.standard_causal_attention_forward(
        attention, x, mask, position_ids, bucket)
    assert torch.equal(plain.hidden_states, out.hidden_states)
    for ours, nxdi in zip([plain.hidden_states, *plain.present_key_value],
                          [native.hidden_states, *native.present_key_value]):
        assert ours.shape == nxdi.shape and ours.dtype == nxdi.dtype
        assert max_relative_error(ours, nxdi) <= variant.rtol
    return names


CHECKS = {"norm": check_norm, "router": check_router, "experts": check_experts, "attention": check_attention}
