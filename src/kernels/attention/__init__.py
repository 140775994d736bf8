"""Attention block variants (q/k/v projection, q/k norm, RoPE, attention with KV cache, o projection)."""
from kernels.attention import baseline, nki_decode, nki_prefill_decode  # noqa: F401
