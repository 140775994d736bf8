"""Microkernels and hand-built traces for the cost-model tests (a plain module, not a conftest)."""

import os

import ml_dtypes
import numpy as np

import nki
import nki.isa as nisa
import nki.language as nl
import nki_cpu
from nki_cpu.trace import Instruction, Operand, Region, Trace

BF16 = ml_dtypes.bfloat16
KERNELS_DIR = os.path.join(os.path.dirname(__file__), "..", "kernels")


def load_test_kernel(file: str, name: str):
    return nki_cpu.load_kernel(os.path.join(KERNELS_DIR, file), name)


@nki.jit
def one_matmul_kernel(stationary, moving):
    """stationary [K, M], moving [K, N] -> [M, N] fp32 through one nc_matmul."""
    k, m = stationary.shape
    _, n = moving.shape
    s_sb = nl.ndarray((k, m), dtype=stationary.dtype, buffer=nl.sbuf)
    m_sb = nl.ndarray((k, n), dtype=moving.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=s_sb, src=stationary)
    nisa.dma_copy(dst=m_sb, src=moving)
    product = nl.ndarray((m, n), dtype=nl.float32, buffer=nl.psum)
    nisa.nc_matmul(dst=product, stationary=s_sb, moving=m_sb)
    result = nl.ndarray((m, n), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=result, src=product)
    out = nl.ndarray((m, n), dtype=nl.float32, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=result)
    return out


@nki.jit
def one_tensor_tensor_kernel(a, b):
    """a + b through one VectorE tensor_tensor on SBUF tiles of the inputs' dtype."""
    a_sb = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.sbuf)
    b_sb = nl.ndarray(b.shape, dtype=b.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=a_sb, src=a)
    nisa.dma_copy(dst=b_sb, src=b)
    total = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=total, data1=a_sb, data2=b_sb, op=nl.add)
    out = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=total)
    return out


@nki.jit
def copy_through_sbuf_kernel(a):
    """One DMA in and one DMA out of a single SBUF tile."""
    a_sb = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=a_sb, src=a)
    out = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=a_sb)
    return out


@nki.jit
def four_engines_kernel(x, chained):
    """One instruction on each compute engine after loading x [128, 512] bf16. Independent: each reads
    x. Chained: each reads the previous one's output (scalar -> vector -> gpsimd -> tensor)."""
    x_sb = nl.ndarray((128, 512), dtype=x.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=x_sb, src=x)
    a = nl.ndarray((128, 512), dtype=x.dtype, buffer=nl.sbuf)
    nisa.activation(dst=a, op=nl.exp, data=x_sb)
    b = nl.ndarray((128, 512), dtype=x.dtype, buffer=nl.sbuf)
    nisa.tensor_copy(dst=b, src=a if chained else x_sb, engine=nisa.engine.vector)
    c = nl.ndarray((128, 512), dtype=x.dtype, buffer=nl.sbuf)
    nisa.tensor_copy(dst=c, src=b if chained else x_sb, engine=nisa.engine.gpsimd)
    product = nl.ndarray((128, 512), dtype=nl.float32, buffer=nl.psum)
    source = c if chained else x_sb
    nisa.nc_matmul(dst=product, stationary=source[:, 0:128], moving=source)
    return x


@nki.jit
def stream_copy_kernel(a):
    """Copy a [R, C] HBM tensor through SBUF in [128, C] tiles: every load first, then every store, so
    the DMA queues stream back to back. SPMD instances split the rows."""
    rows, cols = a.shape
    out = nl.ndarray((rows, cols), dtype=a.dtype, buffer=nl.shared_hbm)
    share = rows // nl.num_programs(0)
    first = nl.program_id(0) * share
    tiles = []
    for r in nl.affine_range(share // 128):
        tile = nl.ndarray((128, cols), dtype=a.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=tile, src=a[first + r * 128:first + (r + 1) * 128, :])
        tiles.append(tile)
    for r, tile in enumerate(tiles):
        nisa.dma_copy(dst=out[first + r * 128:first + (r + 1) * 128, :], src=tile)
    return out


def random(shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# --- hand-built traces -----------------------------------------------------------------------------

def operand(role, shape, dtype="float32", buffer="sbuf", itemsize=4, inner_stride_bytes=None,
            contiguous=True, run_elems=None) -> Operand:
    """run_elems defaults to the whole view (per partition on chip) when dense, one element when strided."""
    partitions = shape[0] if buffer != "hbm" else 1
    free = int(np.prod(shape)) // partitions
    stride = itemsize if inner_stride_bytes is None else inner_stride_bytes
    if run_elems is None:
        run_elems = free if contiguous and stride == itemsize else 1
    return Operand(role, tuple(shape), dtype, buffer, partitions, free, stride, contiguous,
                   partitions * free * itemsize, False, run_elems)


def region(alloc, byte_range, partitions=(0, 128), buffer="sbuf") -> Region:
    return Region(buffer, alloc, partitions, byte_range)


def instruction(seq, op, engine, operands, reads=(), writes=(), dma_bytes=0, macs=0, attrs=None) -> Instruction:
    return Instruction(seq, op, engine, tuple(operands), tuple(reads), tuple(writes), dma_bytes, macs,
                       attrs or {}, ("hand_built.py", seq + 1), ())


def trace_of(instructions, target="trn2") -> Trace:
    return Trace(kernel="hand_built", target=target,
                 raw_instructions=[tuple(getattr(i, f) for f in Instruction.__slots__) for i in instructions])


def tile_copy(seq, dst_alloc, src_alloc, engine="vector", elems=512, dst_bytes=(0, 2048),
              src_bytes=(0, 2048)) -> Instruction:
    """A [128, elems] fp32 tensor_copy from src_alloc to dst_alloc."""
    return instruction(seq, "tensor_copy", engine,
                       [operand("dst", (128, elems)), operand("src", (128, elems))],
                       reads=[region(src_alloc, src_bytes)], writes=[region(dst_alloc, dst_bytes)])
