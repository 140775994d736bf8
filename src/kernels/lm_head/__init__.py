"""lm_head variants."""
from kernels.lm_head import baseline, perturbed  # noqa: F401
