"""Router (gate + top-k) variants."""
from kernels.router import baseline, nki_topk  # noqa: F401
