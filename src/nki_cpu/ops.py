"""ALU operators and activation functions: the values kernels pass as `op=`, `op0=`, `reduce_op=`.

One `Op` object per NKI name (`nl.add`, `nl.exp`, ...). An op may be an ALU operator (binary
or unary, VectorE/GpSimd/ScalarE arithmetic), an activation function (ScalarE), or both
(`nl.abs`, `nl.square`, `nl.rsqrt`, ...). Everything computes on fp32 arrays (fp32 in, fp32 out:
plain ufuncs where NumPy already keeps fp32); bitvec operators work on the raw integers.
Floating-point warnings are silenced for the whole launch (runtime), as hardware lets inf/NaN
flow. Calling an op (`nl.add(x, y)`) is the NKI 0.3 convenience layer,
implemented in `language_ops`.

Activation functions are exact NumPy formulas, not the hardware's piecewise polynomials: results
differ from hardware at the ULP level inside the documented ranges and can differ a lot outside
them (e.g. hardware `sin` does no range reduction).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

_SQRT_2_OVER_PI = np.float32(np.sqrt(2.0 / np.pi))
_INV_SQRT_2 = np.float32(1.0 / np.sqrt(2.0))
_INV_SQRT_2PI = np.float32(1.0 / np.sqrt(2.0 * np.pi))
_TWO_OVER_SQRT_PI = np.float32(2.0 / np.sqrt(np.pi))


@dataclass(frozen=True, eq=False)
class Op:
    """An NKI operator identifier with its NumPy semantics."""

    name: str
    binary: Callable | None = None        # f(a, b) on fp32 (or int for bitvec) arrays
    unary: Callable | None = None         # f(x) as an ALU op (tensor_scalar op0=nl.rsqrt, ...)
    activation: Callable | None = None    # f(x) as a ScalarE activation function
    bitvec: bool = False
    reduce_identity: float | None = None  # set for ops allowed as reduce_op
    hardware_note: str = ""               # non-empty: not available on hardware

    def __repr__(self) -> str:
        return f"nl.{self.name}"

    def __call__(self, *args, **kwargs):
        from .language_ops import apply_op
        return apply_op(self, *args, **kwargs)


def _sigmoid(x):
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def _erf(x):
    """Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): fp32-level accuracy without SciPy."""
    x64 = x.astype(np.float64)
    sign = np.sign(x64)
    a = np.abs(x64)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return (sign * (1.0 - poly * np.exp(-a * a))).astype(np.float32)


def _gelu(x):
    return (0.5 * x * (1.0 + _erf(x * _INV_SQRT_2))).astype(np.float32)


def _gelu_dx(x):
    cdf = 0.5 * (1.0 + _erf(x * _INV_SQRT_2))
    return (cdf + x * _INV_SQRT_2PI * np.exp(-0.5 * x * x)).astype(np.float32)


def _gelu_tanh(x):
    return (0.5 * x * (1.0 + np.tanh(_SQRT_2_OVER_PI * (x + np.float32(0.044715) * x * x * x)))).astype(np.float32)


def _gelu_sigmoid(x):
    return (x * _sigmoid(np.float32(1.702) * x)).astype(np.float32)


def _gelu_sigmoid_dx(x):
    s = _sigmoid(np.float32(1.702) * x)
    return (s + np.float32(1.702) * x * s * (1.0 - s)).astype(np.float32)


def _silu(x):
    return (x * _sigmoid(x)).astype(np.float32)


def _silu_dx(x):
    s = _sigmoid(x)
    return (s * (1.0 + x * (1.0 - s))).astype(np.float32)


def _softplus(x):
    return np.logaddexp(np.float32(0.0), x).astype(np.float32)


def _f32(fn):
    return lambda *args: np.asarray(fn(*args), dtype=np.float32)


def _compare(fn):
    return lambda a, b: fn(a, b).astype(np.float32)


_relu = _f32(lambda x: np.maximum(x, np.float32(0.0)))
_square = _f32(lambda x: x * x)
_abs = _f32(np.abs)
_rsqrt = _f32(lambda x: np.float32(1.0) / np.sqrt(x))
_reciprocal = _f32(lambda x: np.float32(1.0) / x)
_copy = _f32(lambda x: x)
_NEG_INF, _POS_INF = -np.inf, np.inf

_OPS = [
    # arithmetic binary ALU ops (fp32)
    Op("add", binary=np.add, reduce_identity=0.0),
    Op("subtract", binary=np.subtract),
    Op("multiply", binary=np.multiply, reduce_identity=1.0),
    Op("maximum", binary=np.maximum, reduce_identity=_NEG_INF),
    Op("minimum", binary=np.minimum, reduce_identity=_POS_INF),
    Op("divide", binary=np.divide, hardware_note="nl.divide is unsupported on hardware; use reciprocal and multiply"),
    Op("power", binary=np.power),
    Op("abs_max", binary=_f32(lambda a, b: np.maximum(np.abs(a), np.abs(b))), reduce_identity=0.0),
    Op("abs_min", binary=_f32(lambda a, b: np.minimum(np.abs(a), np.abs(b))), reduce_identity=_POS_INF),
    Op("equal", binary=_compare(np.equal)),
    Op("not_equal", binary=_compare(np.not_equal)),
    Op("greater", binary=_compare(np.greater)),
    Op("greater_equal", binary=_compare(np.greater_equal)),
    Op("less", binary=_compare(np.less)),
    Op("less_equal", binary=_compare(np.less_equal)),
    Op("logical_and", binary=_compare(lambda a, b: np.logical_and(a != 0, b != 0))),
    Op("logical_or", binary=_compare(lambda a, b: np.logical_or(a != 0, b != 0))),
    Op("logical_xor", binary=_compare(lambda a, b: np.logical_xor(a != 0, b != 0))),
    Op("fmod", binary=_f32(np.fmod), hardware_note="nl.fmod is unsupported on hardware"),
    Op("mod", binary=_f32(np.mod), hardware_note="nl.mod is unsupported on hardware"),
    # bitvec ALU ops (integers, bit patterns)
    Op("bitwise_and", binary=np.bitwise_and, bitvec=True, reduce_identity=-1),
    Op("bitwise_or", binary=np.bitwise_or, bitvec=True, reduce_identity=0),
    Op("bitwise_xor", binary=np.bitwise_xor, bitvec=True, reduce_identity=0),
    Op("left_shift", binary=lambda a, b: np.left_shift(a, b), bitvec=True),
    Op("right_shift", binary=lambda a, b: np.right_shift(a, b), bitvec=True),
    Op("invert", unary=np.invert, bitvec=True),
    # unary ALU ops that are also activation functions
    Op("abs", unary=_abs, activation=_abs),
    Op("square", unary=_square, activation=_square),
    Op("relu", unary=_relu, activation=_relu),
    Op("rsqrt", unary=_rsqrt, activation=_rsqrt),
    Op("reciprocal", unary=_reciprocal, activation=_reciprocal),
    Op("bypass", unary=_copy),
    # activation functions (ScalarE)
    Op("copy", activation=_copy),
    Op("identity", activation=_copy),
    Op("exp", activation=_f32(np.exp)),
    Op("log", activation=_f32(np.log)),
    Op("sqrt", activation=_f32(np.sqrt)),
    Op("sin", activation=_f32(np.sin)),
    Op("cos", activation=_f32(np.cos)),
    Op("tan", activation=_f32(np.tan)),
    Op("arctan", activation=_f32(np.arctan)),
    Op("tanh", activation=_f32(np.tanh)),
    Op("sign", activation=_f32(np.sign)),
    Op("sigmoid", activation=_sigmoid),
    Op("silu", activation=_silu),
    Op("silu_dx", activation=_silu_dx),
    Op("gelu", activation=_gelu),
    Op("gelu_dx", activation=_gelu_dx),
    Op("gelu_apprx_tanh", activation=_gelu_tanh),
    Op("gelu_apprx_sigmoid", activation=_gelu_sigmoid),
    Op("gelu_apprx_sigmoid_dx", activation=_gelu_sigmoid_dx),
    Op("softplus", activation=_softplus),
    Op("mish", activation=lambda x: (x * np.tanh(_softplus(x))).astype(np.float32)),
    Op("erf", activation=_erf),
    Op("erf_dx", activation=_f32(lambda x: _TWO_OVER_SQRT_PI * np.exp(-x * x))),
]

OPS: dict[str, Op] = {op.name: op for op in _OPS}


def op_name(op) -> str:
    return op.name if isinstance(op, Op) else str(op)
