"""Helpers shared by the nki_cpu tests (a plain module, so it never clashes with other conftest files)."""

import os

import ml_dtypes
import numpy as np

import nki.isa as nisa
import nki.language as nl

KERNELS_DIR = os.path.join(os.path.dirname(__file__), "kernels")
BF16 = ml_dtypes.bfloat16


def line_of(path: str, marker: str) -> int:
    """1-based line number of the only line of `path` containing `marker`."""
    with open(path) as handle:
        hits = [i + 1 for i, text in enumerate(handle) if marker in text]
    assert len(hits) == 1, f"marker {marker!r} found {len(hits)} times"
    return hits[0]


def max_rel_error(actual, expected) -> float:
    """nki-library's "max" comparison: max |a - b| / max |expected|."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    return float(np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), 1e-30))


def load(src, dtype=None):
    """An SBUF copy of `src` (HBM), optionally in another dtype: the usual first line of a test kernel."""
    tile = nl.ndarray(src.shape, dtype=dtype or src.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=tile, src=src)
    return tile


def store(tile, dtype=None):
    """A kernel output in HBM holding `tile`, optionally in another dtype."""
    out = nl.ndarray(tile.shape, dtype=dtype or tile.dtype, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=tile)
    return out
