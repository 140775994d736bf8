"""Every wired NKI variant in the fake NxDI Qwen3-MoE: the installed slot runs the variant's kernel where the
variant applies (token generation for the decode-only expert kernels, both phases for the norm and router)
and NxDI's own module elsewhere, on NxDI's per-rank weights in the layout the kernel expects; its output
equals the CPU home's kernel slot on the interpreter bit for bit and the variant's torch reference within
its rtol (tests/platforms/slot_checks.py)."""
import pytest
import torch

import kernels
from kernels.types import AttentionInputs, AttentionWeights, ExpertWeights, Phase
from model.neuron.slots import DEVICE_KERNELS, NOT_WIRED, NXDI_COMPILER_SETTINGS, unwired
from tests import neuron_fakes
from tests.platforms.slot_checks import (BUCKET, CHECKS, DECODE_POSITION, check_attention, fill, hidden_states, home,
                                        kv_caches, launched, positions, resolved_params)

# (layer, variant, phase) -> the kernels the slot must launch there
EXPECTED = {
    ("norm", "nki_rmsnorm", Phase.TOKEN): ["rmsnorm", "rmsnorm"],
    ("norm", "nki_rmsnorm", Phase.CONTEXT): ["rmsnorm", "rmsnorm"],
    ("norm", "nki_add_rmsnorm", Phase.TOKEN): ["rmsnorm", "add_rmsnorm"],
    ("norm", "nki_add_rmsnorm", Phase.CONTEXT): ["rmsnorm", "add_rmsnorm"],
    ("router", "nki_topk", Phase.TOKEN): ["router_topk"],
    ("router", "nki_topk", Phase.CONTEXT): ["router_topk"],
    ("experts", "selective_v1", Phase.TOKEN): ["selective_v1"],
    ("experts", "selective_v1", Phase.CONTEXT): [],
    ("experts", "grouped_v2", Phase.TOKEN): ["grouped_v2"],
    ("experts", "grouped_v2", Phase.CONTEXT): [],
    ("attention", "nki_decode", Phase.TOKEN): ["decode_attention_new_kv"],
    ("attention", "nki_decode", Phase.CONTEXT): [],
}


@pytest.fixture
def nxdi(monkeypatch):
    neuron_fakes.install(monkeypatch)
    from model.neuron import qwen3_moe_nki

    return qwen3_moe_nki


def build(nxdi, choices, params):
    cls = nxdi.model_class(choices, NXDI_COMPILER_SETTINGS, params)
    return fill(cls._model_cls(neuron_fakes.tiny_config()))


@pytest.mark.parametrize("layer,name,phase", list(EXPECTED), ids=lambda v: getattr(v, "value", v))
def test_slot_runs_the_kernel_where_the_variant_applies_and_nxdi_elsewhere(nxdi, layer, name, phase):
    choices = {layer: name}
    params = resolved_params(choices)
    model = build(nxdi, choices, params)
    assert CHECKS[layer](model, name, phase, params[layer]) == EXPECTED[(layer, name, phase)]


def test_slots_keep_nxdis_parameter_names(nxdi):
    """Checkpoint conversion and per-rank sharding stay NxDI's: the state dict's keys are the baseline's."""
    baseline = nxdi.model_class({}, NXDI_COMPILER_SETTINGS)._model_cls(neuron_fakes.tiny_config())
    for layer, name in DEVICE_KERNELS:
        model = build(nxdi, {layer: name}, resolved_params({layer: name}))
        assert model.state_dict().keys() == baseline.state_dict().keys(), (layer, name)


def test_every_registered_nki_variant_is_wired_or_says_why_not():
    from model.neuron.layer_slots import INSTALLERS

    assert set(INSTALLERS) == set(DEVICE_KERNELS)
    for layer, variants in kernels.catalogue().items():
        for variant in variants:
            if variant.nki is not None:
                assert ((layer, variant.name) in DEVICE_KERNELS) != ((layer, variant.name) in NOT_WIRED)
    (line,) = unwired({"attention": "nki_decode", "lm_head": "perturbed", "experts": "grouped_v2"})
    assert line.startswith("kernel.lm_head=perturbed has no NxDI slot: is a torch-only test variant")


def test_slots_refuse_nxdis_fused_moe_kernel(nxdi):
    """With NxDI's own fused MoE TKG module, router and experts are not NxD's modules in decode any more."""
    config = neuron_fakes.tiny_config()
    config.moe_fused_nki_kernel_enabled = True
    for layer, name in [("router", "nki_topk"), ("experts", "grouped_v2"), ("norm", "nki_add_rmsnorm")]:
        cls = nxdi.model_class({layer: name}, NXDI_COMPILER_SETTINGS, resolved_params({layer: name}))
        with pytest.raises(ValueError, match="fused MoE TKG"):
            cls._model_cls(config)


def test_router_and_expert_slots_compose_as_on_the_cpu_home(nxdi):
    """Both MoE slots in one layer: the router kernel's normalised top-k reaches the expert kernel unchanged (NxD's
    normalisation is not applied a second time), as the CPU home passes the router slot's output on."""
    choices = {"router": "nki_topk", "experts": "grouped_v2"}
    params = resolved_params(choices)
    model = build(nxdi, choices, params)
    moe = model.layers[0].mlp
    x = hidden_states(model, Phase.TOKEN)
    out, names = launched(lambda: moe(x)[0])
    assert names == ["router_topk", "grouped_v2"]
    tokens = x.reshape(-1, x.shape[-1])
    affinities, index = home("router", "nki_topk", params["router"]).router(
        Phase.TOKEN, tokens, moe.router.linear_router.weight, moe.router.top_k)
    weights = ExpertWeights(moe.expert_mlps.mlp_op.gate_up_proj.weight, moe.expert_mlps.mlp_op.down_proj.weight)
    expected = home("experts", "grouped_v2", params["experts"]).experts(Phase.TOKEN, tokens, affinities, index, weights)
    assert torch.equal(out.reshape(tokens.shape), expected)


@pytest.mark.parametrize("cores", [1, 2])
def test_attention_slot_rows_at_their_own_positions_as_on_the_cpu_home(nxdi, cores):
    """Rows decoding at different positions (one at the bucket's last slot, one with an empty prior): NxDI's cache
    manager scatters each row's new k/v to its own position, and the cache and output equal the CPU home's."""
    choices = {"attention": "nki_decode"}
    params = resolved_params(choices, {"attention": {"cores": cores}})
    model = build(nxdi, choices, params)
    rows = (47, 0, 20)
    assert check_attention(model, "nki_decode", Phase.TOKEN, params["attention"], rows) == ["decode_attention_new_kv"]


def test_attention_slot_refuses_what_changes_nxdis_attention(nxdi):
    """NxDI's own attention-block TKG kernel (and features that reshape the attention) exclude the slot."""
    for flag in ("attn_block_tkg_nki_kernel_enabled", "fused_qkv", "k_cache_transposed"):
        config = neuron_fakes.tiny_config()
        setattr(config.neuron_config, flag, True)
        cls = nxdi.model_class({"attention": "nki_decode"}, NXDI_COMPILER_SETTINGS,
                               resolved_params({"attention": "nki_decode"}))
        with pytest.raises(ValueError, match=f"kernel.attention=nki_decode: .*{flag} is set"):
            cls._model_cls(config)


def test_every_slot_in_one_decoder_layer_composes_as_on_the_cpu_home(nxdi):
    """A whole decoder layer in token generation with every decode slot installed (attention with the cache NxDI's
    model passes it): each kernel once, in layer order, and the CPU home's slots chained give the same output bit
    for bit, and the same new k/v (the rows its attention kernel writes into its cache)."""
    choices = {"norm": "nki_add_rmsnorm", "attention": "nki_decode", "router": "nki_topk", "experts": "grouped_v2"}
    params = resolved_params(choices)
    model = build(nxdi, choices, params)
    layer = model.layers[0]
    attention, moe, eps = layer.self_attn, layer.mlp, layer.input_layernorm.variance_epsilon
    x = hidden_states(model, Phase.TOKEN)
    position_ids, mask = positions(Phase.TOKEN)
    caches = kv_caches(model, 1)[0]
    bucket = tuple(c[:, :, :BUCKET] for c in caches)
    (out, (k_new, v_new), _, _, _), names = launched(
        lambda: layer(x, attention_mask=mask, position_ids=position_ids, past_key_value=bucket))
    assert names == ["rmsnorm", "decode_attention_new_kv", "add_rmsnorm", "router_topk", "grouped_v2"]

    norm = home("norm", "nki_add_rmsnorm").norm
    normed, _ = norm(Phase.TOKEN, x, layer.input_layernorm.weight, eps)
    qkv = attention.qkv_proj
    weights = AttentionWeights(qkv.q_proj.weight, qkv.k_proj.weight, qkv.v_proj.weight, attention.o_proj.o_proj.weight,
                               attention.q_layernorm.weight, attention.k_layernorm.weight, attention.rms_norm_eps)
    cos, sin = attention.rotary_emb(x, position_ids)
    k_cache, v_cache = (c.clone() for c in caches)
    inputs = AttentionInputs(Phase.TOKEN, position_ids, cos, sin, k_cache, v_cache, BUCKET)
    attended = home("attention", "nki_decode", params["attention"]).attention(Phase.TOKEN, normed, weights, inputs)
    normed, summed = norm(Phase.TOKEN, attended, layer.post_attention_layernorm.weight, eps, x)
    tokens = normed.reshape(-1, normed.shape[-1])
    affinities, index = home("router", "nki_topk", params["router"]).router(
        Phase.TOKEN, tokens, moe.router.linear_router.weight, moe.router.top_k)
    experts = ExpertWeights(moe.expert_mlps.mlp_op.gate_up_proj.weight, moe.expert_mlps.mlp_op.down_proj.weight)
    expected = summed + home("experts", "grouped_v2", params["experts"]).experts(
        Phase.TOKEN, tokens, affinities, index, experts).view(summed.shape)
    assert torch.equal(out, expected)
    assert torch.equal(k_new[:, :, 0], k_cache[:, :, DECODE_POSITION])
    assert torch.equal(v_new[:, :, 0], v_cache[:, :, DECODE_POSITION])
