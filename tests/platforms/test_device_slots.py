"""Every wired NKI variant in the fake NxDI Qwen3-MoE: the installed slot runs the variant's kernel where the
variant applies (token generation for the decode-only expert kernels, both phases for the norm and router)
and NxDI's own module elsewhere, on NxDI's per-rank weights in the layout the kernel expects; its output
equals the CPU home's kernel slot on the interpreter bit for bit and the variant's torch reference within
its rtol (tests/platforms/slot_checks.py)."""
import pytest
import torch

import kernels
from kernels.types import ExpertWeights, Phase
from model.neuron.slots import DEVICE_KERNELS, NOT_WIRED, NXDI_COMPILER_SETTINGS, unwired
from tests import neuron_fakes
from tests.platforms.slot_checks import CHECKS, fill, hidden_states, home, launched, resolved_params

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
    (line,) = unwired({"attention": "nki_decode", "norm": "nki_add_rmsnorm", "experts": "grouped_v2"})
    assert line.startswith("kernel.attention=nki_decode has no NxDI slot: its kernel writes the new k/v")


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
