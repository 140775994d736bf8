"""Routed expert MLP variants."""
from kernels.experts import baseline  # noqa: F401
