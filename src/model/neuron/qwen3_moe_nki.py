"""NxDI's Qwen3-MoE (neuronx_distributed_inference/models/qwen3_moe/modeling_qwen3_moe.py) with the selected
NKI variant in each layer slot (model.neuron.layer_slots: which NxDI module each variant takes over, in which
phase, and with which weights). With every choice `baseline` and the compiler at NxDI's settings, the class
`model_class` returns differs from NxDI's in nothing but its name.

Compiler settings that change numerics (accuracy-wall.md) go into `get_compiler_args`, and the same
settings are given to the baseline the pipeline compiles beside it.

This module is also the body of the exported `qwen_with_nki.py`: it imports only the Neuron SDK, torch and
the kernel modules (by name, under the kernel package it is given)."""
import importlib
import types

from neuronx_distributed_inference.models.qwen3_moe import modeling_qwen3_moe as nxdi_qwen3_moe
from model.neuron.layer_slots import INSTALLERS
from model.neuron.slots import DEVICE_KERNELS, NXDI_COMPILER_SETTINGS

MPA_ON, MPA_OFF = "--enable-mixed-precision-accumulation", "--disable-mixed-precision-accumulation"


def compiler_args(nxdi_args, settings):
    """NxDI's compiler args with the config's numerics settings: --auto-cast and mixed-precision accumulation."""
    nxdi_auto_cast = f"--auto-cast={NXDI_COMPILER_SETTINGS['auto_cast']}"
    args = nxdi_args.replace(nxdi_auto_cast, f"--auto-cast={settings['auto_cast']}")
    if not settings["mixed_precision_accumulation"]:
        args = args.replace(MPA_ON, MPA_OFF)
    return args


def load_kernels(kernel_package, layer, variant):
    """The slot's @nki.jit functions by name, from its kernel module under `kernel_package`."""
    module_name, functions = DEVICE_KERNELS[(layer, variant)]
    module = importlib.import_module(f"{kernel_package}.{module_name}")
    return types.SimpleNamespace(**{name: getattr(module, name) for name in functions})


def model_class(choices, compiler_settings, params=None, kernel_package="kernels"):
    """NeuronQwen3MoeForCausalLM with `choices` ({layer: variant}) in its slots, their `params` ({layer: every
    knob of the variant's params dataclass, resolved by the caller}) and `compiler_settings`
    ({auto_cast, mixed_precision_accumulation}) in its compiler args."""
    selected = {layer: name for layer, name in choices.items() if name != "baseline"}
    kernels = {layer: load_kernels(kernel_package, layer, name) for layer, name in selected.items()}
    knobs = {layer: dict((params or {}).get(layer) or {}) for layer in selected}
    settings = dict(compiler_settings)

    class NeuronQwen3MoeModel(nxdi_qwen3_moe.NeuronQwen3MoeModel):
        def init_model(self, config):
            super().init_model(config)
            for layer, name in selected.items():
                INSTALLERS[(layer, name)](self, kernels[layer], knobs[layer])

    class NeuronQwen3MoeForCausalLM(nxdi_qwen3_moe.NeuronQwen3MoeForCausalLM):
        _model_cls = NeuronQwen3MoeModel
        kernel_choices = dict(choices)
        nki_kernels = kernels
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
