"""Qwen3-MoE on the device: NxDI's model with the selected NKI variants in its layer slots (qwen3_moe_nki builds
the class, layer_slots puts each variant into NxDI's modules; both import the Neuron SDK and so are imported
only by the device path and the exported submission), the pure-Python table of which variants have a device
slot (slots), and the bundler that writes the single-file submission (bundle)."""
