"""The nl layer: constructors and the NKI 0.3 convenience functions built on nisa."""

import numpy as np
import pytest

import nki
import nki.isa as nisa
import nki.language as nl
import nki_cpu


def _out(tile, dtype=nl.float32):
    out = nl.ndarray(tile.shape, dtype=dtype, buffer=nl.shared_hbm)
    nl.store(out, tile if tile.dtype == dtype else nl.copy(tile, dtype=dtype))
    return out


@nki.jit
def constructors_kernel():
    z = nl.zeros((4, 3), dtype=nl.float32, buffer=nl.sbuf)
    o = nl.ones((4, 3), dtype=nl.bfloat16, buffer=nl.sbuf)
    f = nl.full((4, 3), 2.5, dtype=nl.float32, buffer=nl.sbuf)
    like = nl.zeros_like(f)
    const = nl.load(nl.shared_constant(np.arange(12, dtype=np.float32).reshape(4, 3)))
    eye = nl.shared_identity_matrix(4, dtype=nl.float32)
    return _out(z), _out(o), _out(f), _out(like), _out(const), _out(eye)


def test_constructors():
    z, o, f, like, const, eye = constructors_kernel()
    assert (z == 0).all() and (o == 1).all() and (f == 2.5).all() and (like == 0).all()
    np.testing.assert_array_equal(const, np.arange(12).reshape(4, 3))
    np.testing.assert_array_equal(eye, np.eye(4))


@nki.jit
def convenience_kernel(a, w, mask):
    x = nl.load(a)
    normed = nl.rms_norm(x, nl.load(w), axis=-1, epsilon=1e-6)
    chosen = nl.where(nl.load(mask), x, 0.0)
    avg = nl.mean(x, axis=1, keepdims=True)
    spread = nl.var(x, axis=1, keepdims=True)
    flipped = nl.transpose(x)
    widened = nl.broadcast_to(nl.load(w), x.shape)
    negated = nl.negative(x)
    return (_out(normed), _out(chosen), _out(avg), _out(spread), _out(flipped), _out(widened), _out(negated))


def test_convenience_functions_match_numpy(rng):
    a = rng.standard_normal((64, 32)).astype(np.float32)
    w = rng.standard_normal((1, 32)).astype(np.float32)
    mask = (rng.random((64, 32)) > 0.5).astype(np.uint8)
    normed, chosen, avg, spread, flipped, widened, negated = convenience_kernel(a, w, mask)
    np.testing.assert_allclose(normed, a / np.sqrt((a * a).mean(1, keepdims=True) + 1e-6) * w, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(chosen, np.where(mask != 0, a, 0.0))
    np.testing.assert_allclose(avg, a.mean(1, keepdims=True), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(spread, a.var(1, keepdims=True), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(flipped, a.T)
    np.testing.assert_array_equal(widened, np.repeat(w, 64, axis=0))
    np.testing.assert_array_equal(negated, -a)


def test_nl_matmul_without_transpose_is_refused():
    @nki.jit
    def kernel(a):
        x = nl.load(a)
        return nl.matmul(x, x)

    with pytest.raises(NotImplementedError, match="transpose_x=False"):
        kernel(np.zeros((4, 4), np.float32))


@nki.jit
def copy_dtype_kernel(a):
    x = nl.load(a)
    y = nl.ndarray(a.shape, dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=y, src=x, dtype=nl.bfloat16)
    acc = nl.load(a)
    nisa.dma_copy(dst=acc, src=a, dst_rmw_op=nl.add)     # NKI 0.2 read-modify-write DMA
    return _out(y), _out(acc)


def test_tensor_copy_dtype_and_dma_read_modify_write(rng):
    a = rng.standard_normal((8, 8)).astype(np.float32)
    y, acc = copy_dtype_kernel(a)
    np.testing.assert_array_equal(y, a.astype(nl.bfloat16.storage).astype(np.float32))
    np.testing.assert_array_equal(acc, 2 * a)
    trace = nki_cpu.run_kernel(copy_dtype_kernel, a).trace
    rmw = [i for i in trace.instructions if i.attrs.get("dst_rmw_op") == "add"]
    assert len(rmw) == 1 and len(rmw[0].reads) == 2
