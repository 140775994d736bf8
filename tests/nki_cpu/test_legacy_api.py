"""Beta 1 (`neuronxcc.nki`) kernels as public calibration kernels and SDK tutorials write them, and
`@dataclass` over `nl.NKIObject` with the NKI front end's constructor semantics."""

from dataclasses import dataclass
from typing import Optional

import ml_dtypes
import numpy as np

import neuronxcc.nki as nki
import neuronxcc.nki.compiler as ncc
import neuronxcc.nki.isa as nisa
import neuronxcc.nki.language as nl
import nki_cpu

BF16 = ml_dtypes.bfloat16


@nki.jit
def legacy_matmul_kernel(a, b):
    """out = a @ b + 1 with Beta 1 calls: nl.load, value-returning nl.matmul, nl.par_dim, nl.store."""
    out = nl.ndarray(a.shape[:1] + b.shape[1:], dtype=nl.float32, buffer=nl.shared_hbm)
    a_tile = nl.load(a)
    b_tile = nl.ndarray((nl.par_dim(b.shape[0]), b.shape[1]), dtype=b.dtype, buffer=ncc.sbuf.auto_alloc())
    nisa.dma_copy(dst=b_tile, src=b)
    product = nl.matmul(a_tile, b_tile)
    shifted = nl.add(product, 1.0, dtype=nl.float32)
    nl.store(out, shifted)
    return out


def test_a_legacy_api_kernel_runs_with_its_instruction_stream(rng):
    a = rng.standard_normal((64, 128)).astype(BF16)
    b = rng.standard_normal((128, 96)).astype(BF16)
    run = nki_cpu.run_kernel(legacy_matmul_kernel, a, b)
    expected = a.astype(np.float32) @ b.astype(np.float32) + 1.0
    np.testing.assert_allclose(run.outputs, expected, rtol=1e-5, atol=1e-4)
    ops = [i.op for i in run.trace.instructions]
    assert ops.count("nc_transpose") == 1 and ops.count("nc_matmul") == 1     # a is transposed on TensorE


@dataclass
class Tiling(nl.NKIObject):
    rows: int
    cols: int
    remainder: int                 # no default, and not passed below: the front end makes it None
    label: Optional[str] = None

    def __post_init__(self):
        self.tiles = self.rows // 32


def dataclass_kernel(x):
    tiling = Tiling(rows=x.shape[0], cols=x.shape[1])
    assert tiling.remainder is None and tiling.label is None and tiling.tiles == 2
    out = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.shared_hbm)
    tile = nl.ndarray((tiling.rows, tiling.cols), dtype=x.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=tile, src=x)
    nisa.dma_copy(dst=out, src=tile)
    return out


def test_a_dataclass_over_nkiobject_defaults_a_field_without_default_to_none():
    x = np.arange(64 * 4, dtype=np.float32).reshape(64, 4)
    np.testing.assert_array_equal(nki_cpu.run_kernel(dataclass_kernel, x).outputs, x)
    assert Tiling(1, 2, 3).remainder == 3 and Tiling(1, 2, 3, "x").label == "x"    # positional, as declared
