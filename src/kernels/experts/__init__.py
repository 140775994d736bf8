"""Routed expert MLP variants."""
from kernels.experts import baseline, perturbed  # noqa: F401
