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
from kernels.types import ExpertWeights, Phase
from tests import neuron_fakes

TOKENS = {Phase.TOKEN: 1, Phase.CONTEXT: 5}  # decode: one token per row; context: a short prompt
TARGET = "trn2"


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


def hidden_states(model: torch.nn.Module, phase: Phase, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, TOKENS[phase], model.layers[0].input_layernorm.weight.shape[-1], generator=g).bfloat16()


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
    out, names = launched(lambda: layer(x)[0])
    normed, _ = slot(phase, x, layer.input_layernorm.weight, eps)
    attention = layer.self_attn(hidden_states=normed)[0]
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


CHECKS = {"norm": check_norm, "router": check_router, "experts": check_experts}
