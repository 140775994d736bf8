"""SBUF/PSUM occupancy by live range in program order, with kernels written for these tests.

Each pattern is one that public kernels use and that a Python-object-lifetime rule rejects:
buffers allocated inside a loop, multi-buffer slots that are never used, a RoPE kernel that
allocates all its intermediates up front. A kernel whose tensors really are live together must
still fail, naming the `nl.ndarray` line of the tensor that does not fit.
"""

import ml_dtypes
import numpy as np
import pytest

import nki
import nki.isa as nisa
import nki.language as nl
import nki_cpu
from interp_helpers import line_of

BF16 = ml_dtypes.bfloat16
TRN2_SBUF = 212984


def loop_allocations_kernel(x):
    """Each iteration allocates a 120 KB buffer: two of them would not fit, one at a time does."""
    out = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.shared_hbm)
    for step in nl.affine_range(3):
        staging = nl.ndarray((128, 30000), dtype=nl.float32, buffer=nl.sbuf)
        nisa.dma_copy(dst=staging, src=x)
        nisa.tensor_scalar(dst=staging, data=staging, op0=nl.add, operand0=1.0)
        nisa.dma_copy(dst=out, src=staging)
    return out


def test_buffers_allocated_inside_a_loop_are_not_held_twice():
    x = np.zeros((128, 30000), np.float32)
    run = nki_cpu.run_kernel(loop_allocations_kernel, x)
    assert 2 * 120000 > TRN2_SBUF                        # the old rule held two of them
    assert run.trace.peak_sbuf_bytes == 120000
    assert np.all(run.outputs == 1.0)


def multi_buffer_kernel(x):
    """Four 60 KB slots declared, only two used (alternately, as a double buffer)."""
    out = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.shared_hbm)
    slots = [nl.ndarray((128, 15000), dtype=nl.float32, buffer=nl.sbuf) for _ in range(4)]
    for step in range(4):
        slot = slots[step % 2]
        nisa.dma_copy(dst=slot, src=x[:, step * 15000:(step + 1) * 15000])
        nisa.tensor_scalar(dst=slot, data=slot, op0=nl.multiply, operand0=2.0)
        nisa.dma_copy(dst=out[:, step * 15000:(step + 1) * 15000], src=slot)
    return out


def test_unused_multi_buffer_slots_hold_nothing():
    x = np.arange(128 * 60000, dtype=np.float32).reshape(128, 60000) % 7
    run = nki_cpu.run_kernel(multi_buffer_kernel, x)
    assert 4 * 60000 > TRN2_SBUF
    assert run.trace.peak_sbuf_bytes == 2 * 60000
    np.testing.assert_array_equal(run.outputs, x * 2)


def rope_like_kernel(x, cos, sin):
    """RoPE on [d, B, H, S] with the halves' products allocated up front, S split over the grid.

    out[:d/2] = x[:d/2] * cos - x[d/2:] * sin;  out[d/2:] = x[d/2:] * cos + x[:d/2] * sin
    (cos and sin are [d/2, B, S], shared by every head).
    """
    d, batch, heads, seq = x.shape
    half = d // 2
    width = seq // nl.num_programs(0)
    start = nl.program_id(0) * width
    out = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.shared_hbm)
    lo = nl.ndarray((half, batch, heads, width), dtype=x.dtype, buffer=nl.sbuf)
    hi = nl.ndarray((half, batch, heads, width), dtype=x.dtype, buffer=nl.sbuf)
    c = nl.ndarray((half, batch, width), dtype=cos.dtype, buffer=nl.sbuf)
    s = nl.ndarray((half, batch, width), dtype=sin.dtype, buffer=nl.sbuf)
    products = [nl.ndarray((half, batch, heads, width), dtype=x.dtype, buffer=nl.sbuf) for _ in range(4)]
    nisa.dma_copy(dst=lo, src=x[0:half, :, :, start:start + width])
    nisa.dma_copy(dst=hi, src=x[half:d, :, :, start:start + width])
    nisa.dma_copy(dst=c, src=cos[:, :, start:start + width])
    nisa.dma_copy(dst=s, src=sin[:, :, start:start + width])
    for h in range(heads):
        for k, (a, table) in enumerate(((lo, c), (hi, s), (hi, c), (lo, s))):
            nisa.tensor_tensor(dst=products[k][:, :, h, :], data1=a[:, :, h, :], data2=table, op=nl.multiply)
    nisa.tensor_tensor(dst=products[0], data1=products[0], data2=products[1], op=nl.subtract)
    nisa.dma_copy(dst=out[0:half, :, :, start:start + width], src=products[0])
    nisa.tensor_tensor(dst=products[2], data1=products[2], data2=products[3], op=nl.add)
    nisa.dma_copy(dst=out[half:d, :, :, start:start + width], src=products[2])
    return out


def _rope_reference(x, cos, sin):
    """The kernel's rounding: each product and each sum rounded once to bf16."""
    f = lambda a: a.astype(np.float32)
    r = lambda a: a.astype(BF16)
    half = x.shape[0] // 2
    lo, hi = f(x[:half]), f(x[half:])
    c, s = f(cos)[:, :, None, :], f(sin)[:, :, None, :]
    first = r(f(r(lo * c)) - f(r(hi * s)))
    second = r(f(r(hi * c)) + f(r(lo * s)))
    return np.concatenate([first, second])


@pytest.mark.parametrize("shape", [(128, 64, 8, 128), (128, 2, 128, 256)])    # nki-library test_rope configs
def test_rope_like_kernel_fits_at_the_library_test_shapes(shape, rng):
    d, batch, heads, seq = shape
    x = rng.standard_normal(shape).astype(BF16)
    cos = rng.standard_normal((d // 2, batch, seq)).astype(BF16)
    sin = rng.standard_normal((d // 2, batch, seq)).astype(BF16)
    run = nki_cpu.run_kernel(rope_like_kernel, x, cos, sin, grid=2)
    per_program = batch * heads * seq // 2 * 2
    assert 6 * per_program + 2 * batch * seq // 2 * 2 > TRN2_SBUF   # everything allocated would not fit
    assert run.trace.peak_sbuf_bytes <= TRN2_SBUF
    np.testing.assert_array_equal(run.outputs.astype(np.float32), _rope_reference(x, cos, sin).astype(np.float32))


def overflow_kernel(x):
    """Three 80 KB tiles that are all read after the third is written: 240 KB live at once."""
    first = nl.ndarray((128, 20000), dtype=nl.float32, buffer=nl.sbuf)
    second = nl.ndarray((128, 20000), dtype=nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=first, src=x)
    nisa.dma_copy(dst=second, src=x)
    third = nl.ndarray((128, 20000), dtype=nl.float32, buffer=nl.sbuf)  # LIVE:overflow
    nisa.tensor_tensor(dst=third, data1=first, data2=second, op=nl.add)
    nisa.tensor_tensor(dst=first, data1=first, data2=third, op=nl.add)
    nisa.tensor_tensor(dst=second, data1=second, data2=third, op=nl.add)


def test_a_kernel_that_really_overflows_sbuf_is_rejected_at_its_line():
    with pytest.raises(nki_cpu.HardwareLimitError) as caught:
        nki_cpu.run_kernel(overflow_kernel, np.zeros((128, 20000), np.float32))
    error = caught.value
    assert error.source == (__file__, line_of(__file__, "# LIVE:" + "overflow"))
    assert "SBUF capacity 212984" in error.limit and "live ranges" in error.limit
    assert "240000 bytes live" in error.values


def psum_rotation_kernel(x):
    """A PSUM tile per (row, column) block inside the loops, as nki-autotune's matmul_block does."""
    out = nl.ndarray((128, 4096), dtype=nl.float32, buffer=nl.shared_hbm)
    xs = nl.ndarray((128, 128), dtype=nl.bfloat16, buffer=nl.sbuf)
    nisa.dma_copy(dst=xs, src=x)
    for block in range(8):
        acc = nl.ndarray((128, 512), dtype=nl.float32, buffer=nl.psum)
        staged = nl.ndarray((128, 512), dtype=nl.float32, buffer=nl.sbuf)
        for k in range(4):
            nisa.nc_matmul(dst=acc[:, k * 128:(k + 1) * 128], stationary=xs, moving=xs)
        nisa.tensor_copy(dst=staged, src=acc)
        nisa.dma_copy(dst=out[:, block * 512:(block + 1) * 512], src=staged)
    return out


def test_psum_tiles_allocated_per_block_take_one_bank_at_a_time():
    x = np.eye(128, dtype=np.float32).astype(BF16)
    run = nki_cpu.run_kernel(psum_rotation_kernel, x)
    assert run.trace.peak_psum_bytes == 2048
    np.testing.assert_array_equal(run.outputs, np.tile(np.eye(128, dtype=np.float32), (1, 32)))


@nki.jit(grid=2)
def declared_grid_kernel(x):
    out = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.shared_hbm)
    row = nl.program_id(0)
    tile = nl.ndarray((1, x.shape[1]), dtype=x.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=tile, src=x[row:row + 1, :])
    nisa.tensor_scalar(dst=tile, data=tile, op0=nl.add, operand0=float(row + 1))
    nisa.dma_copy(dst=out[row:row + 1, :], src=tile)
    return out


def test_a_kernel_declared_with_a_grid_runs_it_when_called_without_brackets():
    x = np.zeros((2, 8), np.float32)
    np.testing.assert_array_equal(declared_grid_kernel(x), [[1.0] * 8, [2.0] * 8])
    run = nki_cpu.run_kernel(declared_grid_kernel, x)
    assert run.trace.grid == (2,) and {i.program_id for i in run.trace.instructions} == {(0,), (1,)}
    assert nki_cpu.run_kernel(declared_grid_kernel[1], x).trace.grid == (1,)    # brackets still win
