"""TensorE: nc_matmul (with PSUM accumulation and is_transpose) and nc_transpose.

dst[M, N] (+)= stationary[K, M].T @ moving[K, N], inputs from SBUF, fp32 accumulation into PSUM.
With accumulate=None the first matmul write to a PSUM element overwrites and later ones add;
this is tracked per element with a byte mask on the PSUM allocation (only matmuls set it;
transposes and other instructions leave it alone) [the hardware granularity is unconfirmed].
"""

from __future__ import annotations

import math

import numpy as np

from ..checks import fail, kernel_site
from ..context import current
from ..dtypes import convert, to_f32
from ..errors import NkiUnsupportedError
from .common import attrs_of, check_buffers, compute_into, pick_engine, record, resolve, tile, tile_f32, write
from .enums import engine as Engine
from .enums import matmul_perf_mode

_PE_INPUTS = {"float8_e4m3", "float8_e5m2", "float8_e4m3fn", "bfloat16", "float16", "tfloat32", "float32"}
_FP32_FAMILY = {"float32", "tfloat32"}


def _check_pe_io(instr, site, dst, inputs: dict):
    for role, t in inputs.items():
        if t.alloc.kind != "sbuf":
            fail(instr, "TensorE reads its inputs from SBUF", f"{role} in {t.alloc.kind.upper()}", site)
    if dst.alloc.kind != "psum":
        fail(instr, "TensorE writes its output to PSUM", f"dst in {dst.alloc.kind.upper()}", site)


def _check_matmul_dtypes(site, target, stationary, moving, dst, is_transpose):
    names = (stationary.dtype.name, moving.dtype.name)
    for role, name in zip(("stationary", "moving"), names):
        if name not in _PE_INPUTS:
            fail("nc_matmul", "TensorE inputs are fp8/bf16/fp16/tf32/fp32", f"{role} dtype {name}", site)
    if (names[0] in _FP32_FAMILY) != (names[1] in _FP32_FAMILY) and not is_transpose:
        fail("nc_matmul", "fp32/tf32 inputs combine only with fp32/tf32", f"stationary {names[0]}, moving {names[1]}", site)
    if {"float8_e4m3", "float8_e4m3fn"} <= set(names):
        fail("nc_matmul", "float8_e4m3 and float8_e4m3fn cannot be mixed", f"{names}", site)
    if "float8_e4m3fn" in names and target.nc_version < 4:
        fail("nc_matmul", "float8_e4m3fn inputs need trn3", f"target {target.name}", site)
    if is_transpose:
        return
    allowed = ("float32", "bfloat16") if target.matmul_bf16_psum else ("float32",)
    if dst.dtype.name not in allowed:
        fail("nc_matmul", f"matmul output in PSUM must be {' or '.join(allowed)} on {target.name}",
             f"dst dtype {dst.dtype.name}", site)


def _check_one_bank(instr, site, target, dst):
    """v2/v3: one matmul output lies within one 2 KiB PSUM bank (PSUM tensors start at a bank)."""
    if target.matmul_output_spans_banks:
        return
    lo, hi = dst.layout().byte_range
    base = int(dst.alloc.address[1]) if dst.alloc.address is not None else 0
    bank = target.psum_bank_bytes
    if (base + lo) // bank != (base + hi - 1) // bank:
        fail(instr, f"one matmul output must fit in one PSUM bank ({bank} bytes per partition) on {target.name}",
             f"dst {dst.shape} {dst.dtype.name} spans bytes [{base + lo}, {base + hi})", site)


_FLAG_SET = {size: (1 << 8 * size) - 1 for size in (1, 2, 4, 8)}  # every byte of the element's flags set
_FLAG_DTYPES = {size: np.dtype(f"u{size}") for size in (1, 2, 4, 8)}


def _flag_view(dst) -> np.ndarray:
    """The accumulate=None byte mask seen through dst's view, as [M, N] unsigned ints."""
    itemsize = dst.dtype.itemsize
    flags = np.ndarray(dst.shape, _FLAG_DTYPES[itemsize], dst.alloc.matmul_flags, dst.offset * itemsize,
                       [s * itemsize for s in dst.strides])
    return flags


def nc_matmul(dst, stationary, moving, is_stationary_onezero=False, is_moving_onezero=False, is_transpose=False,
              accumulate=None, tile_position=(), tile_size=(), perf_mode=matmul_perf_mode.none, name=None):
    launch, site = current(), kernel_site()
    target = launch.target
    dst, stationary, moving = resolve(dst), resolve(stationary), resolve(moving)
    _check_pe_io("nc_matmul", site, dst, {"stationary": stationary, "moving": moving})
    double_row = perf_mode == matmul_perf_mode.double_row or perf_mode == "double_row"
    rows = 2 if double_row else 1
    k = stationary.shape[0]
    m = stationary.elems_per_partition // rows
    n = moving.elems_per_partition // rows
    if moving.shape[0] != k:
        fail("nc_matmul", "stationary and moving need the same contraction size K (partition dim)",
             f"stationary {stationary.shape}, moving {moving.shape}", site)
    if m > target.gemm_stationary_fmax:
        fail("nc_matmul", f"stationary free size <= {target.gemm_stationary_fmax} (stationary <= 128x128)",
             f"stationary {stationary.shape} has free size {m}", site)
    moving_max = target.matmul_moving_max_bf16 if dst.dtype.name == "bfloat16" else target.matmul_moving_max_fp32
    if n > moving_max:
        fail("nc_matmul", f"moving free size <= {moving_max} on {target.name} (moving <= 128x{moving_max})",
             f"moving {moving.shape} has free size {n}", site)
    if dst.shape[0] != m or dst.elems_per_partition != n:
        fail("nc_matmul", "dst must be [M, N] = [stationary free, moving free]",
             f"dst {dst.shape} for stationary {stationary.shape}, moving {moving.shape}", site)
    if is_transpose and not target.matmul_transpose:
        fail("nc_matmul", "is_transpose needs NeuronCore-v3 or later", f"target {target.name}", site)
    if double_row:
        if target.nc_version < 3 or not stationary.dtype.name.startswith("float8") or rows != 2 or is_transpose:
            fail("nc_matmul", "perf_mode=double_row needs trn2+, fp8 inputs shaped [K, 2, F] and no transpose",
                 f"stationary {stationary.shape} {stationary.dtype.name} on {target.name}", site)
    _check_matmul_dtypes(site, target, stationary, moving, dst, is_transpose)
    _check_one_bank("nc_matmul", site, target, dst)
    reads = {"stationary": stationary, "moving": moving}
    if is_transpose:
        launch.execute(lambda: _transpose_through_pe(dst, stationary, moving))
        record(launch, "nc_matmul", "tensor", site, {"dst": dst}, reads,
               attrs_of(name, None, is_transpose=True, pe_equivalent_macs=k * m * n))
        return
    # Which elements accumulate follows from the instruction stream alone (the flags), so it is settled now.
    flags = _flag_view(dst)
    if accumulate is None:
        accumulated = bool(flags.any())
        everywhere = accumulated and bool(flags.all())
    else:
        accumulated = everywhere = bool(accumulate)
    written = flags.reshape(m, n) != 0 if accumulated and not everywhere else None
    flags[...] = _FLAG_SET[flags.dtype.itemsize]

    repeats = _repeats(stationary)
    spread = None if repeats is None else repeats[1]
    views = None if double_row or (accumulated and not everywhere) else _fixed_views(dst, stationary, moving, repeats)
    if views is not None:           # the common case, on views fixed now: fewer Python steps per replay
        d, s, v = views

        def compute():
            product = _product(s, stationary.dtype, to_f32(v, moving.dtype), spread)
            if everywhere:
                np.add(d, product, out=d)
            else:
                d[...] = product
    else:
        def compute():
            if double_row:
                product = np.einsum("kli,klj->ij", tile_f32(stationary).reshape(k, 2, m),
                                    tile_f32(moving).reshape(k, 2, n))
            else:
                values = tile_f32(stationary) if repeats is None else stationary.np()[repeats[0]]
                product = _product(values, stationary.dtype, tile_f32(moving), spread)
            if not accumulated:
                write(dst, product)
            elif everywhere:
                if not compute_into(dst, np.add, tile_f32(dst), product):
                    write(dst, tile_f32(dst) + product)
            else:
                write(dst, np.where(written, tile_f32(dst) + product, product))
    launch.execute(compute)
    record(launch, "nc_matmul", "tensor", site, {"dst": dst}, reads,
           attrs_of(name, None, accumulate=accumulate, accumulated=accumulated,
                    perf_mode="double_row" if double_row else "none",
                    tile_position=list(tile_position) or None, tile_size=list(tile_size) or None),
           macs=k * m * n * rows, read_back=("dst",) if accumulated else ())


def _fixed_views(dst, stationary, moving, repeats) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """[P, F] views of an fp32 on-chip dst and moving, and the view of the stationary's distinct columns, when each
    exists without a copy. On-chip memory keeps its storage across replays (nki_cpu.replay), so views taken now stay
    valid."""
    if dst.dtype.name != "float32" or "hbm" in (dst.alloc.kind, stationary.alloc.kind, moving.alloc.kind):
        return None
    d, v = dst.tile_view(), moving.tile_view()
    s = stationary.tile_view() if repeats is None else stationary.np()[repeats[0]]
    if d is None or v is None or s is None or d.shape != (stationary.elems_per_partition, v.shape[1]):
        return None
    return d, s, v


def _repeats(t) -> tuple[tuple, np.ndarray] | None:
    """A stationary view that repeats columns (free dims of stride 0): the index of its distinct columns and, for
    each column of the view, the distinct column it repeats. The access pattern fixes both, so a replay does not
    look again."""
    repeated = [d for d in range(1, len(t.shape)) if t.strides[d] == 0 and t.shape[d] > 1]
    if not repeated:
        return None
    distinct = tuple(slice(0, 1) if d in repeated else slice(None) for d in range(len(t.shape)))
    distinct_shape = [1 if d in repeated else size for d, size in enumerate(t.shape)][1:]
    columns = np.arange(math.prod(distinct_shape)).reshape(distinct_shape)
    return distinct, np.broadcast_to(columns, t.shape[1:]).reshape(-1)


def _product(stationary: np.ndarray, dtype, moving: np.ndarray, spread: np.ndarray | None) -> np.ndarray:
    """stationary.T @ moving (fp32). A stationary that repeats columns comes as its distinct columns, converted and
    multiplied once each; `spread` then repeats the product's rows: each is the same dot product."""
    product = to_f32(stationary, dtype).reshape(stationary.shape[0], -1).T @ moving
    return product if spread is None else product[spread]


def _transpose_through_pe(dst, data, identity):
    """is_transpose: the PE passes data through, so dst = data.T bit-exactly when moving is an identity."""
    k = data.shape[0]
    moving = tile_f32(identity)
    if moving.shape == (k, k) and np.array_equal(moving, np.eye(k, dtype=np.float32)):
        values = tile(data).T
        if dst.dtype.itemsize == 2 and data.dtype.itemsize == 1:
            dst.np()[...] = values.view(np.uint8).astype(np.uint16).view(dst.dtype.storage).reshape(dst.shape)
        else:
            dst.np()[...] = convert(np.ascontiguousarray(values), data.dtype, dst.dtype).reshape(dst.shape)
    else:
        write(dst, tile_f32(data).T @ moving)


def nc_transpose(dst, data, engine=Engine.unknown, name=None):
    launch, site = current(), kernel_site()
    dst, data = resolve(dst), resolve(data)
    default = "tensor" if data.alloc.kind == "sbuf" and dst.alloc.kind == "psum" else "vector"
    eng = pick_engine(engine, default)
    parts, free = data.shape[0], data.elems_per_partition
    if eng == "tensor":
        _check_pe_io("nc_transpose", site, dst, {"data": data})
        limit = launch.target.pmax
    elif eng == "vector":
        check_buffers("nc_transpose", eng, site, {"dst": dst, "data": data})
        limit = launch.target.vector_transpose_max
    else:
        fail("nc_transpose", "nc_transpose runs on TensorE or VectorE", f"engine={eng}", site)
    if parts > limit or free > limit:
        fail("nc_transpose", f"{eng} engine transposes at most [{limit}, {limit}]", f"data {data.shape}", site)
    if dst.shape[0] != free or dst.elems_per_partition != parts:
        fail("nc_transpose", "dst must be data transposed", f"dst {dst.shape} for data {data.shape}", site)
    if dst.dtype != data.dtype and not (eng == "tensor" and dst.dtype.name == "float32"):
        fail("nc_transpose", "dst keeps data's dtype", f"data {data.dtype.name}, dst {dst.dtype.name}", site)
    def compute():
        values = np.ascontiguousarray(tile(data).T)
        dst.np()[...] = convert(values, data.dtype, dst.dtype).reshape(dst.shape)
    launch.execute(compute)
    macs = parts * parts * free if eng == "tensor" else 0
    record(launch, "nc_transpose", eng, site, {"dst": dst}, {"data": data},
           attrs_of(name, engine, pe_equivalent_macs=macs or None))


def nc_matmul_mx(*args, **kwargs):
    raise NkiUnsupportedError("nisa.nc_matmul_mx", "MX (microscaling) matmuls are not interpreted")
