"""RMSNorm variants (input, post-attention and final norms; q/k norms belong to attention)."""
from kernels.norm import baseline, nki_rmsnorm  # noqa: F401
