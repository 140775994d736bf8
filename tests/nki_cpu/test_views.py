"""Tensor views: NKI indexing rules, reshape, view(dtype), access patterns and bounds."""

import numpy as np
import pytest

import nki
import nki.isa as nisa
import nki.language as nl
import nki_cpu


@nki.jit
def shapes_kernel(a):
    s = nl.ndarray((64, 64, 64), dtype=nl.float32, buffer=nl.sbuf)
    shapes = {
        "int_everywhere": s[0, 0, 10].shape,
        "int_free_dims": s[:, 0, 10].shape,
        "int_partition": s[3].shape,
        "ellipsis": s[..., 2:6].shape,
        "ds_and_step": s[nl.ds(8, 4), ::2, 1].shape,
        "hbm_int": a[1].shape,
        "hbm_reshape": a.reshape((2, 3, 4)).shape,
        "hbm_reshape_infer": a.reshape((-1, 2)).shape,
        "pattern": s.ap(pattern=[[4096, 2], [64, 3], [1, 5]], offset=0).shape,
        "get_pattern": s[0:2, 1:3, 0:4].get_pattern(),
    }
    return shapes


def test_indexing_follows_nki_rules():
    shapes = shapes_kernel(np.zeros((6, 4), np.float32))
    assert shapes["int_everywhere"] == (1, 1)
    assert shapes["int_free_dims"] == (64, 1)
    assert shapes["int_partition"] == (1, 64, 64)
    assert shapes["ellipsis"] == (64, 64, 4)
    assert shapes["ds_and_step"] == (4, 32)
    assert shapes["hbm_int"] == (4,)
    assert shapes["hbm_reshape"] == (2, 3, 4)
    assert shapes["hbm_reshape_infer"] == (12, 2)
    assert shapes["pattern"] == (2, 3, 5)
    assert shapes["get_pattern"] == [[4096, 2], [64, 2], [1, 4]]


@nki.jit
def reinterpret_kernel(a):
    bits = a.view(nl.uint16)
    t = nl.ndarray(a.shape, dtype=nl.uint16, buffer=nl.sbuf)
    nisa.dma_copy(dst=t, src=bits)
    wide = t.view(nl.uint32)
    out = nl.ndarray(wide.shape, dtype=nl.uint32, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=wide)
    return out


def test_view_reinterprets_bits():
    a = np.arange(8, dtype=np.float32).reshape(2, 4).astype(np.float16)
    out = reinterpret_kernel(a)
    assert out.shape == (2, 2)
    np.testing.assert_array_equal(out, a.view(np.uint32))


@nki.jit
def strided_compute_kernel(a):
    x = nl.ndarray(a.shape, dtype=a.dtype, buffer=nl.sbuf)
    nisa.dma_copy(dst=x, src=a)
    y = nl.ndarray((a.shape[0], a.shape[1] // 2), dtype=a.dtype, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=y, data1=x[:, 0::2], data2=x[:, 1::2], op=nl.add)
    out = nl.ndarray(y.shape, dtype=a.dtype, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=y)
    return out


def test_strided_views_feed_compute_and_trace_strides(rng):
    a = rng.standard_normal((32, 16)).astype(np.float32)
    run = nki_cpu.run_kernel(strided_compute_kernel, a)
    np.testing.assert_array_equal(run.outputs, a[:, 0::2] + a[:, 1::2])
    add = next(i for i in run.trace.instructions if i.op == "tensor_tensor")
    data1 = add.operands[1]
    assert data1.inner_stride_bytes == 8 and not data1.contiguous and data1.free_elems == 8
    assert add.reads[1].byte_range == (4, 64)


@pytest.mark.parametrize("index", ["slice_past_end", "int_past_end", "pattern_past_end"])
def test_out_of_range_views_raise(index):
    @nki.jit
    def kernel(a):
        s = nl.ndarray((8, 16), dtype=nl.float32, buffer=nl.sbuf)
        if index == "slice_past_end":
            return s[0:9, :]
        if index == "int_past_end":
            return s[:, 16]
        return s.ap(pattern=[[16, 8], [1, 17]], offset=0)

    with pytest.raises(nki_cpu.NkiIndexError, match="test_views.py"):
        kernel(np.zeros(1, np.float32))
