"""Attention block variants (q/k/v projection, q/k norm, RoPE, attention with KV cache, o projection)."""
from kernels.attention import baseline  # noqa: F401
