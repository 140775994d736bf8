"""NxDI's Qwen3-MoE (neuronx_distributed_inference/models/qwen3_moe/modeling_qwen3_moe.py) with the selected
NKI variant in each layer slot. With every choice `baseline` and the compiler at NxDI's settings, the class
`model_class` returns differs from NxDI's in nothing but its name.

Slots (the CPU home's `norm` slot, kernels.slots): every decoder layer's `input_layernorm` and
`post_attention_layernorm` and the final `norm`; q/k norms stay NxDI's. The `@nki.jit` kernel is called on
the traced tensors directly, as the contest's own NKI RMSNorm example does (aws-neuron/nki-moe
nki_custom_rmsnorm.py), with the weight passed as `weight.view(-1)` so tracing sees a real tensor.

Compiler settings that change numerics (accuracy-wall.md) go into `get_compiler_args`, and the same
settings are given to the baseline the pipeline compiles beside it.

This module is also the body of the exported `qwen_with_nki.py`: it imports only the Neuron SDK, torch and
the kernel modules (by name, under the kernel package it is given)."""
import importlib

import torch
from torch import nn

from neuronx_distributed_inference.models.qwen3_moe import modeling_qwen3_moe as nxdi_qwen3_moe
from model.neuron.slots import DEVICE_KERNELS, NXDI_COMPILER_SETTINGS
MPA_ON, MPA_OFF = "--enable-mixed-precision-accumulation", "--disable-mixed-precision-accumulation"


def compiler_args(nxdi_args, settings):
    """NxDI's compiler args with the config's numerics settings: --auto-cast and mixed-precision accumulation."""
    nxdi_auto_cast = f"--auto-cast={NXDI_COMPILER_SETTINGS['auto_cast']}"
    args = nxdi_args.replace(nxdi_auto_cast, f"--auto-cast={settings['auto_cast']}")
    if not settings["mixed_precision_accumulation"]:
        args = args.replace(MPA_ON, MPA_OFF)
    return args


class NKIRMSNorm(nn.Module):
    """An RMSNorm slot (NxDI's CustomRMSNorm: `weight`, `variance_epsilon`, forward(hidden_states)) that runs an
    NKI kernel taking (x [tokens, hidden], weight [hidden], eps)."""

    def __init__(self, kernel, hidden_size, eps):
        super().__init__()
        self.kernel = kernel
        self.hidden_size = hidden_size
        self.variance_epsilon = eps
        self.weight = nn.Parameter(torch.ones(hidden_size))

    def forward(self, hidden_states):
        shape = hidden_states.shape
        out = self.kernel(hidden_states.reshape(-1, shape[-1]), self.weight.view(-1), self.variance_epsilon)
        return out.view(shape)


def _replace_norm(kernel, module):
    return NKIRMSNorm(kernel, module.weight.shape[-1], module.variance_epsilon)


def install_norm(model, kernel):
    for layer in model.layers:
        layer.input_layernorm = _replace_norm(kernel, layer.input_layernorm)
        layer.post_attention_layernorm = _replace_norm(kernel, layer.post_attention_layernorm)
    model.norm = _replace_norm(kernel, model.norm)


INSTALLERS = {"norm": install_norm}


def load_kernel(kernel_package, layer, variant):
    module_name, function = DEVICE_KERNELS[(layer, variant)]
    return getattr(importlib.import_module(f"{kernel_package}.{module_name}"), function)


def model_class(choices, compiler_settings, kernel_package="kernels"):
    """NeuronQwen3MoeForCausalLM with `choices` ({layer: variant}) in its slots and `compiler_settings`
    ({auto_cast, mixed_precision_accumulation}) in its compiler args."""
    kernels = {layer: load_kernel(kernel_package, layer, name) for layer, name in choices.items() if name != "baseline"}
    settings = dict(compiler_settings)

    class NeuronQwen3MoeModel(nxdi_qwen3_moe.NeuronQwen3MoeModel):
        def init_model(self, config):
            super().init_model(config)
            for layer, kernel in kernels.items():
                INSTALLERS[layer](self, kernel)

    class NeuronQwen3MoeForCausalLM(nxdi_qwen3_moe.NeuronQwen3MoeForCausalLM):
        _model_cls = NeuronQwen3MoeModel
        kernel_choices = dict(choices)
        compiler_settings = settings

        def get_compiler_args(self):
            return compiler_args(super().get_compiler_args(), settings)

    return NeuronQwen3MoeForCausalLM


def apply_to_baseline(compiler_settings):
    """Give NxDI's own Qwen3-MoE class the same compiler settings (the contest compiles it as the accuracy
    reference in the process that imports the submission)."""
    if dict(compiler_settings) == NXDI_COMPILER_SETTINGS:
        return
    base = nxdi_qwen3_moe.NeuronQwen3MoeForCausalLM
    original = base.get_compiler_args
    base.get_compiler_args = lambda self: compiler_args(original(self), compiler_settings)
