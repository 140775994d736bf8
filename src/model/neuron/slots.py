"""Which NKI variants run in an NxDI layer slot, and through which `@nki.jit` function. Pure Python, so the
platform can reject an unwired choice before anything imports the Neuron SDK.

A kernel module is named relative to the kernel package (`kernels` in this repository, a private bundle
package in the exported submission); the function takes what the variant's launcher gives it on the CPU
home, so the same `*_kernel.py` file runs on the device and on the interpreter."""

# NxDI's numerics-relevant compiler choices (modeling_qwen3_moe.py, NeuronQwen3MoeForCausalLM.get_compiler_args).
NXDI_COMPILER_SETTINGS = {"auto_cast": "none", "mixed_precision_accumulation": True}

# (layer, variant) -> (kernel module relative to the kernel package, @nki.jit function)
DEVICE_KERNELS = {
    ("norm", "nki_rmsnorm"): ("norm.nki_rmsnorm_kernel", "rmsnorm"),
}


def unwired(choices):
    """One line per non-baseline choice ({layer: variant}) that has no NxDI slot yet; empty when all have."""
    wired = ", ".join(f"kernel.{layer}={name}" for layer, name in sorted(DEVICE_KERNELS))
    return [f"kernel.{layer}={name} has no NxDI slot yet (wired: {wired}; src/model/neuron/slots.py)"
            for layer, name in choices.items() if name != "baseline" and (layer, name) not in DEVICE_KERNELS]
