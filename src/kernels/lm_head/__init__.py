"""lm_head variants."""
from kernels.lm_head import baseline, nki_tiled, perturbed  # noqa: F401
