"""Router (gate + top-k) variants."""
from kernels.router import baseline  # noqa: F401
