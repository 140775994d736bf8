"""GpSimd gathers inside SBUF: local_gather (per 16-partition core group) and nc_n_gather (per partition).

Both read SBUF only (GpSimd cannot access PSUM) and move values bit-exactly.
"""

from __future__ import annotations

import numpy as np

from ..checks import fail, kernel_site
from ..context import current
from .common import attrs_of, check_buffers, record, resolve, tile

PARTITIONS_PER_CORE = 16


def local_gather(dst, src_buffer, index, num_elem_per_idx=1, num_valid_indices=None, name=None):
    """Each 16-partition group flattens its index slice partition-first and every partition of the
    group reads num_elem_per_idx elements at each index (an element offset into its free data)."""
    launch, site = current(), kernel_site()
    dst, src, idx = resolve(dst), resolve(src_buffer), resolve(index)
    check_buffers("local_gather", "gpsimd", site, {"dst": dst, "src_buffer": src, "index": idx})
    parts = src.shape[0]
    if parts % PARTITIONS_PER_CORE or idx.shape[0] != parts or dst.shape[0] != parts:
        fail("local_gather", "src_buffer, index and dst cover whole 16-partition GpSimd core groups",
             f"src {src.shape}, index {idx.shape}, dst {dst.shape}", site)
    per_group = PARTITIONS_PER_CORE * idx.elems_per_partition
    valid = per_group if num_valid_indices is None else int(num_valid_indices)
    width = int(num_elem_per_idx)
    if valid > per_group or dst.elems_per_partition != valid * width:
        fail("local_gather", "dst holds num_valid_indices * num_elem_per_idx elements per partition",
             f"{valid} indices x {width} for dst {dst.shape}", site)
    values, offsets = tile(src), tile(idx).astype(np.int64)
    out = np.empty((parts, valid * width), dtype=values.dtype)
    columns = np.arange(width)
    for start in range(0, parts, PARTITIONS_PER_CORE):
        group = slice(start, start + PARTITIONS_PER_CORE)
        indices = offsets[group].flatten(order="F")[:valid]
        positions = (indices[:, None] + columns[None, :]).reshape(-1)
        if positions.size and (positions.min() < 0 or positions.max() >= values.shape[1]):
            fail("local_gather", "indices must stay inside src_buffer's partition data",
                 f"offsets up to {int(positions.max())} for {values.shape[1]} elements", site)
        out[group] = values[group][:, positions]
    dst.np()[...] = out.astype(dst.dtype.storage, copy=False).reshape(dst.shape)
    record(launch, "local_gather", "gpsimd", site, {"dst": dst}, {"src_buffer": src, "index": idx},
           attrs_of(name, None, num_elem_per_idx=width, num_valid_indices=valid))


def nc_n_gather(dst, data, indices, name=None):
    """dst[p, j] = data[p, indices[p, j]] over each partition's flattened free elements."""
    launch, site = current(), kernel_site()
    dst, data, idx = resolve(dst), resolve(data), resolve(indices)
    check_buffers("nc_n_gather", "gpsimd", site, {"dst": dst, "data": data, "indices": idx})
    if dst.dtype != data.dtype or idx.dtype.name != "uint32":
        fail("nc_n_gather", "dst keeps data's dtype and indices are uint32",
             f"data {data.dtype.name}, dst {dst.dtype.name}, indices {idx.dtype.name}", site)
    if not (dst.shape[0] == data.shape[0] == idx.shape[0]) or dst.elems_per_partition != idx.elems_per_partition:
        fail("nc_n_gather", "data, indices and dst share partitions; dst has one element per index",
             f"data {data.shape}, indices {idx.shape}, dst {dst.shape}", site)
    values, positions = tile(data), tile(idx).astype(np.int64)
    if positions.max() >= values.shape[1]:
        fail("nc_n_gather", "indices must stay inside each partition's data",
             f"index {int(positions.max())} for {values.shape[1]} elements", site)
    dst.np()[...] = np.take_along_axis(values, positions, axis=1).reshape(dst.shape)
    record(launch, "nc_n_gather", "gpsimd", site, {"dst": dst}, {"data": data, "indices": idx}, attrs_of(name, None))
