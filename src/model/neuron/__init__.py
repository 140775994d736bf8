"""Qwen3-MoE on the device: NxDI's model with the selected NKI variants in its layer slots
(qwen3_moe_nki, which imports the Neuron SDK and so is imported only by the device path and the exported
submission), the pure-Python table of which variants have a device slot (slots), and the bundler that writes
the single-file submission (bundle)."""
