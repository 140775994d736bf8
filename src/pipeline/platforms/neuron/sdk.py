"""Is the Neuron SDK here? Checked by import spec only (nothing Neuron is imported until a device stage
runs). The SDK never comes from PyPI: the PyPI names are placeholders (hardware-and-model.md §0, SDK)."""
from __future__ import annotations

import importlib.util

# What the device path imports: NxDI's model and harness utilities, torch-neuronx (logit_validation, the HLO
# protobuf schema), the compiler, and the NKI package the kernels import.
REQUIRED = ("neuronx_distributed_inference", "neuronx_distributed", "torch_neuronx", "neuronxcc", "nki")
HOW_TO_GET_IT = (
    "run on a Trainium instance launched from the Neuron DLAMI (SDK 2.27-2.29), "
    "`source /opt/aws_neuronx_venv_pytorch_*_nxd_inference/bin/activate`, then install this repository there "
    "as README: Trainium says"
)


def missing_modules() -> list[str]:
    return [name for name in REQUIRED if importlib.util.find_spec(name) is None]


def sdk_problem(platform: str) -> str | None:
    """One line saying what is missing and how to get it, or None when the SDK is importable."""
    missing = missing_modules()
    if not missing:
        return None
    return (f"platform={platform} needs the Neuron SDK, which is not installed here "
            f"(missing: {', '.join(missing)}); {HOW_TO_GET_IT}")
