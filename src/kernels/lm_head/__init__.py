"""lm_head variants."""
from kernels.lm_head import baseline  # noqa: F401
