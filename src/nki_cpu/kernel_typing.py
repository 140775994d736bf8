"""`nki.typing`: annotations kernels put on their parameters; they carry no behaviour here."""

from __future__ import annotations

from .tensor import NkiTensor

tensor = NkiTensor
mutable_tensor = NkiTensor
scalar = float
