"""iota / affine_select / range_select / select_reduce patterns, top-8 search and stream shuffle."""

import numpy as np

import nki
import nki.isa as nisa
import nki.language as nl
import nki_cpu
from interp_helpers import load, store

FP32_MIN = float(np.finfo(np.float32).min)


@nki.jit
def iota_kernel():
    ids = nl.ndarray((4, 2, 3), dtype=nl.int32, buffer=nl.sbuf)
    nisa.iota(dst=ids, pattern=[[10, 2], [1, 3]], offset=5, channel_multiplier=100)
    as_float = nl.ndarray((4, 6), dtype=nl.float32, buffer=nl.sbuf)
    nisa.iota(dst=as_float, pattern=[[-1, 6]], offset=0, channel_multiplier=1)
    return store(ids), store(as_float)


def test_iota_patterns():
    ids, as_float = iota_kernel()
    p, w, x = np.meshgrid(np.arange(4), np.arange(2), np.arange(3), indexing="ij")
    np.testing.assert_array_equal(ids, 5 + 100 * p + 10 * w + x)
    np.testing.assert_array_equal(as_float, np.arange(4)[:, None] - np.arange(6)[None, :])


@nki.jit
def causal_mask_kernel(scores, q0, k0):
    s = load(scores)
    masked = nl.ndarray(scores.shape, dtype=nl.float32, buffer=nl.sbuf)
    nisa.affine_select(dst=masked, pattern=[[-1, scores.shape[1]]], offset=q0 - k0, channel_multiplier=1,
                       cmp_op=nl.greater_equal, on_true_tile=s, on_false_value=FP32_MIN)
    diag = nl.ndarray(scores.shape, dtype=nl.float32, buffer=nl.sbuf)
    # 0.2 positional order: (dst, pattern, offset, channel_multiplier, on_true_tile, on_false_value)
    nisa.affine_select(diag, [[-1, scores.shape[1]]], 0, 1, s, 0.0)
    return store(masked), store(diag)


def test_affine_select_causal_mask_and_default_equal(rng):
    scores = rng.standard_normal((16, 24)).astype(np.float32)
    masked, diag = causal_mask_kernel(scores, 8, 0)
    q = 8 + np.arange(16)[:, None]
    k = np.arange(24)[None, :]
    np.testing.assert_array_equal(masked, np.where(q >= k, scores, FP32_MIN))
    np.testing.assert_array_equal(diag, np.where(np.arange(16)[:, None] == k, scores, 0.0))


@nki.jit
def range_select_kernel(data, low, high):
    x, lo, hi = load(data), load(low), load(high)
    out = nl.ndarray(data.shape, dtype=nl.float32, buffer=nl.sbuf)
    best = nl.ndarray((data.shape[0], 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.range_select(dst=out, on_true_tile=x, comp_op0=nl.greater_equal, comp_op1=nl.less, bound0=lo, bound1=hi,
                      reduce_cmd=nisa.reduce_cmd.reset_reduce, reduce_res=best, range_start=2)
    pred = nl.ndarray(data.shape, dtype=nl.uint8, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=pred, data=x, op0=nl.greater, operand0=0.0)
    sel = nl.ndarray(data.shape, dtype=nl.float32, buffer=nl.sbuf)
    sel_max = nl.ndarray((data.shape[0], 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.select_reduce(dst=sel, predicate=pred, on_true=x, on_false=-5.0, reduce_res=sel_max,
                       reduce_cmd=nisa.reduce_cmd.reset_reduce)
    return store(out), store(best), store(sel), store(sel_max)


def test_range_select_and_select_reduce(rng):
    data = rng.standard_normal((8, 12)).astype(np.float32)
    low = np.arange(8, dtype=np.float32)[:, None] + 2
    high = low + 4
    out, best, sel, sel_max = range_select_kernel(data, low, high)
    index = 2 + np.arange(12)[None, :]
    expected = np.where((index >= low) & (index < high), data, FP32_MIN)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(best[:, 0], expected.max(axis=1))
    expected_sel = np.where(data > 0, data, -5.0)
    np.testing.assert_array_equal(sel, expected_sel)
    np.testing.assert_array_equal(sel_max[:, 0], expected_sel.max(axis=1))


@nki.jit
def search_kernel(data, vals):
    x, v = load(data), load(vals)
    top = nl.ndarray((data.shape[0], 8), dtype=nl.float32, buffer=nl.sbuf)
    nisa.max8(dst=top, src=x)
    where = nl.ndarray((data.shape[0], 8), dtype=nl.uint32, buffer=nl.sbuf)
    nisa.nc_find_index8(dst=where, data=x, vals=v)
    replaced = nl.ndarray(data.shape, dtype=nl.float32, buffer=nl.sbuf)
    idx = nl.ndarray((data.shape[0], 8), dtype=nl.uint32, buffer=nl.sbuf)
    nisa.nc_match_replace8(dst=replaced, data=x, vals=v, imm=-100.0, dst_idx=idx)
    return store(top), store(where), store(replaced), store(idx)


def test_max8_find_index8_match_replace8():
    data = np.array([[3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8]], np.float32)
    vals = np.array([[5, 5, 1, 9, 7, 3, 8, 2]], np.float32)        # 7 is absent; 5 appears twice
    top, where, replaced, idx = search_kernel(data, vals)
    np.testing.assert_array_equal(top, [[9, 8, 6, 5, 5, 5, 4, 3]])
    missing = np.iinfo(np.uint32).max
    # duplicate vals advance through successive occurrences; an absent value gives all ones
    np.testing.assert_array_equal(where, [[4, 8, 1, 5, missing, 0, 11, 6]])
    # match_replace8 visits duplicates in reverse order: the later 5 takes the first occurrence
    np.testing.assert_array_equal(idx, [[8, 4, 1, 5, missing, 0, 11, 6]])
    expected = data.copy()
    expected[0, [4, 8, 1, 5, 0, 11, 6]] = -100.0
    np.testing.assert_array_equal(replaced, expected)


@nki.jit
def shuffle_kernel(src_rows):
    x = load(src_rows)
    wide = nl.ndarray((64, src_rows.shape[1]), dtype=src_rows.dtype, buffer=nl.sbuf)
    nisa.memset(dst=wide, value=0.0)
    for group in range(2):
        nisa.nc_stream_shuffle(dst=wide[group * 32:(group + 1) * 32, :], src=x[0:1, :], shuffle_mask=[0] * 32)
    mixed = nl.ndarray((32, src_rows.shape[1]), dtype=src_rows.dtype, buffer=nl.sbuf)
    nisa.memset(dst=mixed, value=-1.0)
    nisa.nc_stream_shuffle(dst=mixed, src=x, shuffle_mask=[3, 2, 1, 0] + [255] * 28)
    return store(wide), store(mixed)


def test_stream_shuffle_broadcast_and_mask_255(rng):
    rows = rng.standard_normal((4, 16)).astype(np.float32)
    wide, mixed = shuffle_kernel(rows)
    np.testing.assert_array_equal(wide, np.repeat(rows[0:1], 64, axis=0))
    np.testing.assert_array_equal(mixed[:4], rows[::-1])
    assert (mixed[4:] == -1.0).all()


def test_select_instructions_trace_engines(rng):
    run = nki_cpu.run_kernel(causal_mask_kernel, rng.standard_normal((4, 4)).astype(np.float32), 0, 0)
    assert [i.engine for i in run.trace.instructions if i.op == "affine_select"] == ["gpsimd", "gpsimd"]
