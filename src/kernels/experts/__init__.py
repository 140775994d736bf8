"""Routed expert MLP variants."""
from kernels.experts import baseline, grouped_v2, r1_tkg_fused, r2_cte_pair, selective_v1  # noqa: F401
