"""Which NKI variants run in an NxDI layer slot, and through which `@nki.jit` functions. Pure Python, so the
platform can reject an unwired choice before anything imports the Neuron SDK.

A kernel module is named relative to the kernel package (`kernels` in this repository, a private bundle
package in the exported submission); the functions take what the variant's launcher gives them on the CPU
home, so the same `*_kernel.py` file runs on the device and on the interpreter. How each slot sits in NxDI's
modules: model.neuron.layer_slots."""

# NxDI's numerics-relevant compiler choices (modeling_qwen3_moe.py, NeuronQwen3MoeForCausalLM.get_compiler_args).
NXDI_COMPILER_SETTINGS = {"auto_cast": "none", "mixed_precision_accumulation": True}

# (layer, variant) -> (kernel module relative to the kernel package, the @nki.jit functions the slot calls)
DEVICE_KERNELS = {
    ("norm", "nki_rmsnorm"): ("norm.nki_rmsnorm_kernel", ("rmsnorm",)),
    ("norm", "nki_add_rmsnorm"): ("norm.nki_rmsnorm_kernel", ("rmsnorm", "add_rmsnorm")),
    ("router", "nki_topk"): ("router.nki_topk_kernel", ("router_topk",)),
    ("experts", "selective_v1"): ("experts.selective_v1_kernel", ("selective_v1",)),
    ("experts", "grouped_v2"): ("experts.grouped_v2_kernel", ("grouped_v2",)),
    ("attention", "nki_decode"): ("attention.nki_decode_kernel", ("decode_attention_new_kv",)),
}

# Why a registered non-baseline variant has no device slot (variants not listed: torch-only test variants).
NOT_WIRED: dict[tuple[str, str], str] = {
    ("attention", "nki_prefill_decode"): (
        "its context-encoding kernel (attention.nki_context_kernel) writes the prompt's k/v into the KV cache in "
        "place, while NxDI's context-encoding attention returns them to its KV-cache manager; no slot installs it "
        "in NxDI's attention yet (nki_decode is the wired decode half)"),
    ("lm_head", "nki_tiled"): (
        "no slot replaces NxDI's lm_head (a ColumnParallelLinear over the vocabulary) with its kernel yet"),
}
TORCH_ONLY = "is a torch-only test variant (no NKI kernel to put on the device)"


def unwired(choices):
    """One line per non-baseline choice ({layer: variant}) that has no NxDI slot; empty when all have."""
    wired = ", ".join(f"kernel.{layer}={name}" for layer, name in sorted(DEVICE_KERNELS))
    return [f"kernel.{layer}={name} has no NxDI slot: {NOT_WIRED.get((layer, name), TORCH_ONLY)} "
            f"(wired: {wired}; src/model/neuron/slots.py)"
            for layer, name in choices.items() if name != "baseline" and (layer, name) not in DEVICE_KERNELS]
