"""NKI data types, their NumPy storage, and the single rounding step of every instruction.

Engines compute in fp32 and round once to the destination type: round to nearest even for
floats (bf16/fp8 through ml_dtypes), round to nearest even plus saturation for integers.
"""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np

from .errors import NkiUnsupportedError, NkiUsageError


@dataclass(frozen=True, eq=False)
class NkiDtype:
    """One NKI dtype. `storage` is the NumPy dtype holding its bits."""

    name: str
    storage: np.dtype
    kind: str            # "float", "int", "uint", "bool" or "packed"

    @property
    def dtype(self) -> np.dtype:
        """Lets NumPy take an NKI dtype anywhere it takes a dtype: np.zeros(4, dtype=nl.bfloat16)."""
        return self.storage

    @property
    def itemsize(self) -> int:
        return self.storage.itemsize

    @property
    def is_float(self) -> bool:
        return self.kind == "float"

    @property
    def is_int(self) -> bool:
        return self.kind in ("int", "uint", "bool")

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"nl.{self.name}"

    def __hash__(self) -> int:
        return hash(self.name)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, NkiDtype):
            return other.name == self.name
        try:
            return as_dtype(other).name == self.name
        except (TypeError, NkiUsageError):
            return NotImplemented


def _make(name: str, storage, kind: str) -> NkiDtype:
    return NkiDtype(name, np.dtype(storage), kind)


float32 = _make("float32", np.float32, "float")
tfloat32 = _make("tfloat32", np.float32, "float")
bfloat16 = _make("bfloat16", ml_dtypes.bfloat16, "float")
float16 = _make("float16", np.float16, "float")
float8_e4m3 = _make("float8_e4m3", ml_dtypes.float8_e4m3, "float")
float8_e5m2 = _make("float8_e5m2", ml_dtypes.float8_e5m2, "float")
float8_e4m3fn = _make("float8_e4m3fn", ml_dtypes.float8_e4m3fn, "float")
float8_e8m0fnu = _make("float8_e8m0fnu", ml_dtypes.float8_e8m0fnu, "float")
int8 = _make("int8", np.int8, "int")
int16 = _make("int16", np.int16, "int")
int32 = _make("int32", np.int32, "int")
uint8 = _make("uint8", np.uint8, "uint")
uint16 = _make("uint16", np.uint16, "uint")
uint32 = _make("uint32", np.uint32, "uint")
bool_ = _make("bool_", np.uint8, "bool")
# Packed MX containers: 4 values per element, only moved as raw bits here.
float8_e5m2_x4 = _make("float8_e5m2_x4", np.uint32, "packed")
float8_e4m3fn_x4 = _make("float8_e4m3fn_x4", np.uint32, "packed")
float4_e2m1fn_x4 = _make("float4_e2m1fn_x4", np.uint16, "packed")

ALL_DTYPES: dict[str, NkiDtype] = {
    d.name: d
    for d in (
        float32, tfloat32, bfloat16, float16, float8_e4m3, float8_e5m2, float8_e4m3fn,
        float8_e8m0fnu, int8, int16, int32, uint8, uint16, uint32, bool_,
        float8_e5m2_x4, float8_e4m3fn_x4, float4_e2m1fn_x4,
    )
}
_ALIASES = {"bool": bool_, "float8e4": float8_e4m3, "float8e5": float8_e5m2, "fp32": float32, "bf16": bfloat16}

# NumPy storage dtype -> NKI dtype, for arrays handed to a kernel.
_FROM_NUMPY: dict[np.dtype, NkiDtype] = {
    np.dtype(d.storage): d
    for d in (float32, bfloat16, float16, float8_e4m3, float8_e5m2, float8_e4m3fn, float8_e8m0fnu,
              int8, int16, int32, uint8, uint16, uint32)
}
_FROM_NUMPY[np.dtype(np.bool_)] = bool_


def as_dtype(value) -> NkiDtype:
    """Accept an NKI dtype, a NumPy/ml_dtypes dtype or type, a torch dtype or a name."""
    if isinstance(value, NkiDtype):
        return value
    if isinstance(value, str):
        found = ALL_DTYPES.get(value) or _ALIASES.get(value)
        if found is None:
            raise NkiUsageError(f"unknown NKI dtype {value!r}")
        return found
    torch_name = _torch_dtype_name(value)
    if torch_name is not None:
        return as_dtype(torch_name)
    try:
        np_dtype = np.dtype(value)
    except TypeError as exc:
        raise NkiUsageError(f"not a dtype: {value!r}") from exc
    found = _FROM_NUMPY.get(np_dtype)
    if found is None:
        raise NkiUsageError(f"NumPy dtype {np_dtype} has no NKI equivalent (NKI has no 64-bit types)")
    return found


_TORCH_NAMES = {
    "torch.float32": "float32", "torch.bfloat16": "bfloat16", "torch.float16": "float16",
    "torch.float8_e4m3fn": "float8_e4m3fn", "torch.float8_e5m2": "float8_e5m2",
    "torch.int8": "int8", "torch.int16": "int16", "torch.int32": "int32", "torch.uint8": "uint8",
    "torch.uint16": "uint16", "torch.uint32": "uint32", "torch.bool": "bool_",
}


def _torch_dtype_name(value) -> str | None:
    if type(value).__name__ != "dtype" or type(value).__module__ != "torch":
        return None
    name = _TORCH_NAMES.get(str(value))
    if name is None:
        raise NkiUsageError(f"torch dtype {value} has no NKI equivalent (NKI has no 64-bit types)")
    return name


_INT_RANGES = {d.name: (np.iinfo(d.storage).min, np.iinfo(d.storage).max) for d in ALL_DTYPES.values() if d.is_int}
_INT_RANGES["bool_"] = (0, 1)


def _round_tf32(values: np.ndarray) -> np.ndarray:
    """fp32 -> tf32 (10 mantissa bits) with round to nearest even, kept in fp32 storage."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    finite = np.isfinite(values)
    lsb = (bits >> 13) & 1
    rounded = ((bits + 0x0FFF + lsb) & np.uint32(0xFFFFE000)).astype(np.uint32)
    return np.where(finite, rounded.view(np.float32), values).astype(np.float32)


def cast(values: np.ndarray, dtype: NkiDtype) -> np.ndarray:
    """Round fp32 (or integer) results once into `dtype`'s storage.

    Floats: round to nearest even. Integers: from floats round to nearest even, NaN -> 0,
    then saturate; from integers saturate.
    """
    if dtype.kind == "packed":
        raise NkiUnsupportedError(f"arithmetic into {dtype.name}", "packed MX types are only moved, not computed")
    if dtype.is_float:
        if values.dtype.kind in "iub":
            values = values.astype(np.float32)
        if dtype is tfloat32:
            return _round_tf32(values)
        return values.astype(dtype.storage)
    low, high = _INT_RANGES[dtype.name]
    if values.dtype.kind == "f":
        values = np.nan_to_num(np.rint(values.astype(np.float64)), nan=0.0, posinf=high, neginf=low)
    return np.clip(values, low, high).astype(dtype.storage)


def convert(values: np.ndarray, src: NkiDtype, dst: NkiDtype) -> np.ndarray:
    """Copy semantics: same dtype moves bits, otherwise src -> fp32 -> dst."""
    if src.name == dst.name or (src.kind == dst.kind == "packed" and src.itemsize == dst.itemsize):
        return values
    if src.kind == "packed" or dst.kind == "packed":
        raise NkiUnsupportedError(f"conversion {src.name} -> {dst.name}", "packed MX types are only moved")
    if src.is_int and dst.is_int:
        return cast(values, dst)
    return cast(to_f32(values, src), dst)


def to_f32(values: np.ndarray, dtype: NkiDtype) -> np.ndarray:
    """The engines' input conversion: every operand becomes fp32."""
    if dtype.kind == "packed":
        raise NkiUnsupportedError(f"arithmetic on {dtype.name}", "packed MX types are only moved, not computed")
    if values.dtype is _BF16 and values.size >= 1024:   # bf16 is fp32's upper half: a shift gives the same
        # bits as ml_dtypes' cast, faster on large arrays, and gathers a strided view in the same pass
        return np.left_shift(values.view(np.uint16), 16, dtype=np.uint32).view(np.float32)
    return values.astype(np.float32, copy=False)


_BF16 = np.dtype(ml_dtypes.bfloat16)


def fill_value(dtype: NkiDtype):
    """What fresh memory holds, as the official simulator does: NaN for floats, 4 for integers."""
    if dtype.is_float:
        return np.nan
    return 4 if dtype.kind != "packed" else 0


def to_storage_array(array: np.ndarray) -> tuple[np.ndarray, NkiDtype]:
    """Map a NumPy array handed to a kernel onto NKI storage without copying."""
    dtype = as_dtype(array.dtype)
    if array.dtype == np.bool_:
        array = array.view(np.uint8)
    return array, dtype
