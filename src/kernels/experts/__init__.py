"""Routed expert MLP variants."""
from kernels.experts import baseline, grouped_v2, selective_v1  # noqa: F401
