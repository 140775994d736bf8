"""Reductions, scans, statistics and ScalarE activations (scale, bias, accumulator reduce)."""

import numpy as np
import pytest

import nki
import nki.isa as nisa
import nki.language as nl
import nki_cpu
from interp_helpers import BF16, load, store


@nki.jit
def reduce_kernel(a, op, axis, negate):
    x = load(a)
    kept = [s for i, s in enumerate(a.shape) if i == 0 or i not in axis]
    out = nl.ndarray(tuple(kept) if len(kept) > 1 else (kept[0], 1), dtype=nl.float32, buffer=nl.psum)
    nisa.tensor_reduce(dst=out, op=op, data=x, axis=axis, negate=negate)
    sb = nl.ndarray(out.shape, dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_copy(dst=sb, src=out)
    return store(sb)


@pytest.mark.parametrize("op, ref, axis, negate", [
    (nl.add, np.sum, (2,), False), (nl.maximum, np.max, (2,), True), (nl.minimum, np.min, (1, 2), False),
])
def test_tensor_reduce(op, ref, axis, negate, rng):
    a = rng.standard_normal((64, 8, 16)).astype(BF16)
    out = reduce_kernel(a, op, axis, negate)
    expected = ref(a.astype(np.float32), axis=axis)
    expected = -expected if negate else expected
    np.testing.assert_allclose(out.reshape(expected.shape), expected, rtol=1e-5, atol=1e-5)


@nki.jit
def activation_kernel(a, bias, scale):
    x, b, s = load(a), load(bias), load(scale)
    y = nl.ndarray(a.shape, dtype=nl.float32, buffer=nl.sbuf)
    total = nl.ndarray((a.shape[0], 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.activation(dst=y, op=nl.exp, data=x, bias=b, scale=s, reduce_op=nl.add, reduce_res=total,
                    reduce_cmd=nisa.reduce_cmd.reset_reduce)
    again = nl.ndarray((a.shape[0], 1), dtype=nl.float32, buffer=nl.sbuf)
    z = nl.ndarray(a.shape, dtype=nl.bfloat16, buffer=nl.sbuf)
    # reduce (no reset) keeps adding onto the ScalarE accumulators.
    nisa.activation(dst=z, op=nl.silu, data=x, scale=2.0, reduce_op=nl.add, reduce_res=again,
                    reduce_cmd=nisa.reduce_cmd.reduce)
    sq = nl.ndarray(a.shape, dtype=nl.float32, buffer=nl.sbuf)
    sum_sq = nl.ndarray((a.shape[0], 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.activation_reduce(dst=sq, op=nl.square, data=x, reduce_op=nl.add, reduce_res=sum_sq)
    return store(y), store(total), store(z), store(again), store(sum_sq)


def _silu(x):
    return x / (1 + np.exp(-x))


def test_activation_scale_bias_reduce_and_accumulators(rng):
    a = rng.standard_normal((128, 64)).astype(np.float32)
    bias = rng.standard_normal((128, 1)).astype(np.float32)
    scale = rng.uniform(0.5, 1.5, (128, 1)).astype(np.float32)
    y, total, z, again, sum_sq = activation_kernel(a, bias, scale)
    expected = np.exp(a * scale + bias)
    np.testing.assert_allclose(y, expected, rtol=1e-6)
    np.testing.assert_allclose(total[:, 0], expected.sum(axis=1), rtol=1e-5)
    silu = _silu(2 * a)
    np.testing.assert_array_equal(z, silu.astype(np.float32).astype(BF16))
    np.testing.assert_allclose(again[:, 0], expected.sum(axis=1) + silu.sum(axis=1), rtol=1e-5)
    np.testing.assert_allclose(sum_sq[:, 0], (a * a).sum(axis=1), rtol=1e-5)


@pytest.mark.parametrize("name, ref", [
    ("gelu", lambda x: 0.5 * x * (1 + np.vectorize(__import__("math").erf)(x / np.sqrt(2)))),
    ("gelu_apprx_tanh", lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))),
    ("sigmoid", lambda x: 1 / (1 + np.exp(-x))), ("tanh", np.tanh), ("softplus", lambda x: np.log1p(np.exp(x))),
])
def test_activation_functions(name, ref, rng):
    @nki.jit
    def kernel(a):
        x = load(a)
        y = nl.ndarray(a.shape, dtype=nl.float32, buffer=nl.sbuf)
        nisa.activation(dst=y, op=getattr(nl, name), data=x)
        return store(y)

    a = rng.uniform(-4, 4, (16, 64)).astype(np.float32)
    np.testing.assert_allclose(kernel(a), ref(a.astype(np.float64)), rtol=2e-6, atol=2e-6)


@nki.jit
def vector_reduce_kernel(a, b, init):
    x, y, c = load(a), load(b), load(init)
    scaled = nl.ndarray(a.shape, dtype=nl.float32, buffer=nl.sbuf)
    row_max = nl.ndarray((a.shape[0], 1), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar_reduce(dst=scaled, data=x, op0=nl.multiply, operand0=3.0, reduce_op=nl.maximum,
                              reduce_res=row_max)
    scan = nl.ndarray(a.shape, dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_tensor_scan(dst=scan, data0=x, data1=y, initial=c, op0=nl.multiply, op1=nl.add)
    column = nl.ndarray((1, a.shape[1]), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_partition_reduce(dst=column, op=nl.add, data=x)
    stats = nl.ndarray((a.shape[0], 6), dtype=nl.float32, buffer=nl.sbuf)
    nisa.bn_stats(dst=stats, data=x)
    mv = nl.ndarray((a.shape[0], 2), dtype=nl.float32, buffer=nl.sbuf)
    nisa.bn_aggr(dst=mv, data=stats)
    return store(scaled), store(row_max), store(scan), store(column), store(mv)


def test_vector_reductions_scan_and_bn_stats(rng):
    a = rng.uniform(-1, 1, (32, 20)).astype(np.float32)
    b = rng.uniform(-1, 1, (32, 20)).astype(np.float32)
    init = rng.uniform(-1, 1, (32, 1)).astype(np.float32)
    scaled, row_max, scan, column, mv = vector_reduce_kernel(a, b, init)
    np.testing.assert_allclose(scaled, 3 * a, rtol=1e-7)
    np.testing.assert_allclose(row_max[:, 0], (3 * a).max(axis=1), rtol=1e-7)
    state, expected = init[:, 0].astype(np.float64), np.empty_like(a, dtype=np.float64)
    for i in range(a.shape[1]):
        state = a[:, i] * state + b[:, i]
        expected[:, i] = state
    np.testing.assert_allclose(scan, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(column[0], a.sum(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mv[:, 0], a.mean(axis=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mv[:, 1], a.var(axis=1), rtol=1e-4, atol=1e-6)


def test_activation_is_traced_on_scalar_engine(rng):
    a = rng.standard_normal((8, 4)).astype(np.float32)
    run = nki_cpu.run_kernel(activation_kernel, a, np.zeros((8, 1), np.float32), np.ones((8, 1), np.float32))
    acts = [i for i in run.trace.instructions if i.op.startswith("activation")]
    assert {i.engine for i in acts} == {"scalar"}
    assert [i.attrs["act"] for i in acts] == ["exp", "silu", "square"]
    assert {o.role for o in acts[0].operands} == {"dst", "reduce_res", "data", "scale", "bias"}
