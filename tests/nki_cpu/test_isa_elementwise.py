"""Element-wise instructions against NumPy goldens: rounding, integer casts, bitvec, operands."""

import ml_dtypes
import numpy as np
import pytest

import nki
import nki.isa as nisa
import nki.language as nl
from interp_helpers import BF16, load, store


@nki.jit
def binary_kernel(a, b, op, out_dtype):
    x, y = load(a), load(b)
    z = nl.ndarray(a.shape, dtype=out_dtype, buffer=nl.sbuf)
    nisa.tensor_tensor(dst=z, data1=x, data2=y, op=op)
    return store(z)


def test_bf16_output_rounds_once_to_nearest_even():
    # Sums chosen to land exactly between two bf16 values: ties go to the even mantissa.
    a = np.array([[1.0, 1.0, 1.0, 256.0]], np.float32)
    b = np.array([[2.0 ** -8, 3 * 2.0 ** -8, 2.0 ** -9, 1.0]], np.float32)
    out = binary_kernel(a, b, nl.add, nl.bfloat16)
    assert out.dtype == BF16
    np.testing.assert_array_equal(out.astype(np.float32), [[1.0, 1.015625, 1.0, 256.0]])


def test_bf16_inputs_compute_in_fp32_not_bf16():
    # (1 + 2^-9) is not representable in bf16, but the fp32 sum is exact: rounded once into fp32.
    a = np.array([[1.0, 3.0]], BF16)
    b = np.array([[2.0 ** -9, 2.0 ** -7]], BF16)
    out = binary_kernel(a, b, nl.add, nl.float32)
    np.testing.assert_array_equal(out, [[1.0 + 2.0 ** -9, 3.0 + 2.0 ** -7]])


def test_float_to_int_rounds_to_even_and_saturates():
    a = np.array([[0.5, 1.5, 2.5, -0.5, 1e10, -1e10, 300.0, np.nan]], np.float32)
    zeros = np.zeros_like(a)
    np.testing.assert_array_equal(binary_kernel(a, zeros, nl.add, nl.int32),
                                  [[0, 2, 2, 0, 2 ** 31 - 1, -2 ** 31, 300, 0]])
    np.testing.assert_array_equal(binary_kernel(a, zeros, nl.add, nl.uint8), [[0, 2, 2, 0, 255, 0, 255, 0]])
    np.testing.assert_array_equal(binary_kernel(a, zeros, nl.add, nl.int8), [[0, 2, 2, 0, 127, -128, 127, 0]])


def test_bitvec_ops_are_exact_on_integers():
    a = np.array([[0x7FFFFFFF, -1, 12, 5]], np.int32)
    b = np.array([[0x0F0F0F0F, 0x00FF, 10, 1]], np.int32)
    np.testing.assert_array_equal(binary_kernel(a, b, nl.bitwise_and, nl.int32), a & b)
    np.testing.assert_array_equal(binary_kernel(a, b, nl.bitwise_xor, nl.int32), a ^ b)
    shifts = np.array([[1, 8, 10, 1]], np.int32)
    np.testing.assert_array_equal(binary_kernel(a, shifts, nl.left_shift, nl.int32), [[-2, -256, 12288, 10]])
    # right_shift is logical: the sign bit is not copied.
    np.testing.assert_array_equal(binary_kernel(a, shifts, nl.right_shift, nl.int32),
                                  [[0x3FFFFFFF, 0x00FFFFFF, 0, 2]])


def test_int32_arithmetic_is_exact():
    a = np.array([[16777217, 2 ** 30]], np.int32)
    b = np.array([[1, 2 ** 30 - 1]], np.int32)
    np.testing.assert_array_equal(binary_kernel(a, b, nl.add, nl.int32), [[16777218, 2 ** 31 - 1]])


@pytest.mark.parametrize("op, ref", [(nl.subtract, np.subtract), (nl.maximum, np.maximum),
                                     (nl.greater_equal, np.greater_equal), (nl.multiply, np.multiply)])
def test_tensor_tensor_ops(op, ref, rng):
    a = rng.standard_normal((128, 64)).astype(np.float32)
    b = rng.standard_normal((128, 64)).astype(np.float32)
    np.testing.assert_array_equal(binary_kernel(a, b, op, nl.float32), ref(a, b).astype(np.float32))


@nki.jit
def tensor_scalar_kernel(a, col):
    x, c = load(a), load(col)
    y = nl.ndarray(a.shape, dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=y, data=x, op0=nl.subtract, operand0=c, reverse0=True, op1=nl.multiply, operand1=2.0)
    z = nl.ndarray(a.shape, dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=z, data=x, op0=nl.rsqrt, operand0=None)
    w = nl.ndarray(a.shape, dtype=nl.float32, buffer=nl.sbuf)
    nisa.scalar_tensor_tensor(dst=w, data=x, op0=nl.multiply, operand0=c, op1=nl.add, operand1=y)
    return store(y), store(z), store(w)


def test_tensor_scalar_reverse_broadcast_and_unary(rng):
    a = rng.uniform(0.5, 2.0, (64, 32)).astype(np.float32)
    col = rng.standard_normal((64, 1)).astype(np.float32)
    y, z, w = tensor_scalar_kernel(a, col)
    expected_y = (col - a) * np.float32(2.0)
    np.testing.assert_allclose(y, expected_y, rtol=1e-6)
    np.testing.assert_allclose(z, 1 / np.sqrt(a), rtol=1e-6)
    np.testing.assert_allclose(w, a * col + expected_y, rtol=1e-6)


@nki.jit
def copy_kernel(a, mask):
    x, m = load(a), load(mask)
    low = nl.ndarray(a.shape, dtype=nl.bfloat16, buffer=nl.sbuf)
    nisa.tensor_copy(dst=low, src=x)
    picked = nl.ndarray(a.shape, dtype=nl.float32, buffer=nl.sbuf)
    nisa.memset(dst=picked, value=-1.0)
    nisa.tensor_copy_predicated(dst=picked, src=x, predicate=m)
    inv = nl.ndarray(a.shape, dtype=nl.float32, buffer=nl.sbuf)
    nisa.reciprocal(dst=inv, data=x)
    return store(low), store(picked), store(inv)


def test_copy_predicated_copy_memset_reciprocal(rng):
    a = rng.uniform(1.0, 3.0, (32, 16)).astype(np.float32)
    mask = (rng.random((32, 16)) > 0.5).astype(np.uint8)
    low, picked, inv = copy_kernel(a, mask)
    np.testing.assert_array_equal(low, a.astype(BF16))
    np.testing.assert_array_equal(picked, np.where(mask != 0, a, -1.0))
    np.testing.assert_allclose(inv, 1 / a, rtol=1e-7)


@nki.jit
def fresh_kernel(shape):
    f = nl.ndarray(shape, dtype=nl.float32, buffer=nl.sbuf)
    i = nl.ndarray(shape, dtype=nl.int32, buffer=nl.sbuf)
    return store(f), store(i)


def test_fresh_allocations_are_nan_and_four():
    floats, ints = fresh_kernel((4, 4))
    assert np.isnan(floats).all()
    assert (ints == 4).all()


@nki.jit
def fp8_kernel(a):
    x = load(a)
    y = nl.ndarray(a.shape, dtype=nl.float8_e4m3, buffer=nl.sbuf)
    nisa.tensor_copy(dst=y, src=x)
    return store(y)


def test_fp8_conversion_uses_round_to_nearest_even():
    a = np.array([[1.0, 1.0625, 1.1875, 3.0]], np.float32)   # 1.0625 ties to 1.0, 1.1875 ties to 1.25
    out = fp8_kernel(a)
    assert out.dtype == ml_dtypes.float8_e4m3
    np.testing.assert_array_equal(out.astype(np.float32), [[1.0, 1.0, 1.25, 3.0]])


@nki.jit
def int_scalar_kernel(a):
    x = load(a)
    masked = nl.ndarray(a.shape, dtype=nl.uint32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=masked, data=x, op0=nl.bitwise_and, operand0=0xFF, op1=nl.left_shift, operand1=4)
    flipped = nl.ndarray(a.shape, dtype=nl.uint32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=flipped, data=x, op0=nl.invert, operand0=None)
    return store(masked), store(flipped)


def test_tensor_scalar_bitvec_chain_and_unary_invert():
    a = np.array([[0x12345678, 0xFFFFFFFF, 7]], np.uint32)
    masked, flipped = int_scalar_kernel(a)
    np.testing.assert_array_equal(masked, (a & 0xFF) << 4)
    np.testing.assert_array_equal(flipped, ~a)
