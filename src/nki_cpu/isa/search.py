"""Top-8 search on VectorE: max8, nc_find_index8, nc_match_replace8; and nc_stream_shuffle.

Values are compared in fp32 over each partition's flattened free elements.
"""

from __future__ import annotations

import numpy as np

from ..checks import fail, kernel_site
from ..context import current
from .common import attrs_of, check_buffers, check_same_elements, record, resolve, tile, tile_f32, write

_MIN_ELEMS, _MAX_ELEMS = 8, 16384


def _check_search_input(instr, site, role, t):
    count = t.elems_per_partition
    if not _MIN_ELEMS <= count <= _MAX_ELEMS:
        fail(instr, f"{role} needs {_MIN_ELEMS}..{_MAX_ELEMS} elements per partition", f"{count}", site)


def _check_eight(instr, site, role, t, parts):
    if t.shape[0] != parts or t.elems_per_partition != 8:
        fail(instr, f"{role} must be [{parts}, 8]", f"{role} {t.shape}", site)


def max8(dst, src, name=None):
    launch, site = current(), kernel_site()
    dst, src = resolve(dst), resolve(src)
    check_buffers("max8", "vector", site, {"dst": dst, "src": src})
    _check_search_input("max8", site, "src", src)
    _check_eight("max8", site, "dst", dst, src.shape[0])
    launch.execute(lambda: write(dst, -np.sort(-tile_f32(src), axis=1)[:, :8]))
    record(launch, "max8", "vector", site, {"dst": dst}, {"src": src}, attrs_of(name, None))


def _first_occurrences(data: np.ndarray, vals: np.ndarray, order) -> tuple[np.ndarray, np.ndarray]:
    """Index of each val's first not-yet-claimed occurrence, visiting vals in `order`."""
    parts = data.shape[0]
    claimed = np.zeros(data.shape, dtype=bool)
    index = np.zeros((parts, 8), dtype=np.int64)
    found = np.zeros((parts, 8), dtype=bool)
    rows = np.arange(parts)
    for k in order:
        hits = (data == vals[:, k:k + 1]) & ~claimed
        first = hits.argmax(axis=1)
        ok = hits[rows, first]
        claimed[rows[ok], first[ok]] = True
        index[:, k] = first
        found[:, k] = ok
    return index, found


def nc_find_index8(dst, data, vals, name=None):
    launch, site = current(), kernel_site()
    dst, data, vals = resolve(dst), resolve(data), resolve(vals)
    check_buffers("nc_find_index8", "vector", site, {"dst": dst, "data": data, "vals": vals})
    _check_search_input("nc_find_index8", site, "data", data)
    _check_eight("nc_find_index8", site, "vals", vals, data.shape[0])
    _check_eight("nc_find_index8", site, "dst", dst, data.shape[0])
    if dst.dtype.name not in ("uint32", "uint16"):
        fail("nc_find_index8", "dst must be uint32 or uint16", f"dst {dst.dtype.name}", site)
    not_found = np.iinfo(dst.dtype.storage).max

    def compute():
        index, found = _first_occurrences(tile_f32(data), tile_f32(vals), range(8))
        dst.np()[...] = np.where(found, index, not_found).astype(dst.dtype.storage).reshape(dst.shape)
    launch.execute(compute)
    record(launch, "nc_find_index8", "vector", site, {"dst": dst}, {"data": data, "vals": vals}, attrs_of(name, None))


def nc_match_replace8(dst, data, vals, imm, dst_idx=None, name=None):
    launch, site = current(), kernel_site()
    dst, data, vals = resolve(dst), resolve(data), resolve(vals)
    operands = {"dst": dst, "data": data, "vals": vals}
    check_buffers("nc_match_replace8", "vector", site, operands)
    _check_search_input("nc_match_replace8", site, "data", data)
    _check_eight("nc_match_replace8", site, "vals", vals, data.shape[0])
    check_same_elements("nc_match_replace8", site, "dst", dst, {"data": data})
    writes = {"dst": dst}
    idx_tensor = None
    if dst_idx is not None:
        idx_tensor = resolve(dst_idx)
        check_buffers("nc_match_replace8", "vector", site, {"dst_idx": idx_tensor})
        _check_eight("nc_match_replace8", site, "dst_idx", idx_tensor, data.shape[0])
        writes["dst_idx"] = idx_tensor

    def compute():
        values = tile_f32(data)
        index, found = _first_occurrences(values, tile_f32(vals), range(7, -1, -1))
        rows = np.repeat(np.arange(values.shape[0])[:, None], 8, axis=1)
        replaced = values.copy()
        replaced[rows[found], index[found]] = np.float32(imm)
        write(dst, replaced)
        if idx_tensor is not None:
            not_found = np.iinfo(idx_tensor.dtype.storage).max if idx_tensor.dtype.is_int else -1
            write(idx_tensor, np.where(found, index, not_found))
    launch.execute(compute)
    record(launch, "nc_match_replace8", "vector", site, writes, {"data": data, "vals": vals},
           attrs_of(name, None, imm=float(imm)))


def nc_stream_shuffle(dst, src, shuffle_mask, name=None):
    """Within each 32-partition group: dst[g*32 + i] = src[g*32 + mask[i]]; mask 255 keeps dst[i]."""
    launch, site = current(), kernel_site()
    dst, src = resolve(dst), resolve(src)
    check_buffers("nc_stream_shuffle", "vector", site, {"dst": dst, "src": src})
    if dst.dtype != src.dtype or dst.elems_per_partition != src.elems_per_partition:
        fail("nc_stream_shuffle", "src and dst need the same dtype and elements per partition",
             f"src {src.shape} {src.dtype.name}, dst {dst.shape} {dst.dtype.name}", site)
    mask = [int(m) for m in shuffle_mask]
    if len(mask) != 32:
        fail("nc_stream_shuffle", "shuffle_mask has 32 entries", f"{len(mask)} entries", site)
    span = -(-max(src.shape[0], dst.shape[0]) // 32) * 32
    allowed = {32: (0, 32, 64, 96), 64: (0, 64)}.get(span, (0,))
    for role, t in (("src", src), ("dst", dst)):
        start = t.layout().partitions[0]
        if start not in allowed:
            fail("nc_stream_shuffle", f"a {span}-partition shuffle starts at partition {allowed}",
                 f"{role} starts at {start}", site)
    lanes = np.arange(dst.shape[0])
    picks = np.asarray(mask)[lanes % 32]
    keep = picks != 255
    rows = (lanes // 32) * 32 + picks
    if np.any(rows[keep] >= src.shape[0]):
        fail("nc_stream_shuffle", "mask entries must select a partition of src",
             f"mask {mask} for src with {src.shape[0]} partitions", site)
    def compute():
        target = tile(dst).copy()
        target[keep] = tile(src)[rows[keep]]
        dst.np()[...] = target.reshape(dst.shape)
    launch.execute(compute)
    record(launch, "nc_stream_shuffle", "vector", site, {"dst": dst}, {"src": src},
           attrs_of(name, None), read_back=("dst",) if 255 in mask else ())
