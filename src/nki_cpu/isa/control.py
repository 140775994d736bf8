"""Target queries, registers and synchronisation.

Kernels run one program instance at a time, so cross-instance communication (sendrecv,
collectives) cannot be honoured and is refused. `core_barrier` across the instances of a grid is
emulated: running the instances one after another is a valid order of the barrier's semantics
as long as no instance, after a barrier, touches shared HBM that a later instance touches (with a
write on either side) before that barrier; the launch checks this once every instance has run
(`runtime.check_barriers`) and refuses kernels for which the emulation would be wrong. Data a
later instance reads after a barrier, written by an earlier one before it, is therefore exact.
Barriers are not recorded in the trace: the cost model does not model them, and the ordering they
enforce appears there as data dependencies through shared HBM.
"""

from __future__ import annotations

import numpy as np

from ..checks import kernel_site, usage
from ..context import current
from ..errors import NkiUnsupportedError
from ..tensor import NkiTensor, register_value
from .common import attrs_of, record, resolve, write
from .enums import nc_version


class VirtualRegister:
    """An engine register holding one integer (loop bounds, scalar offsets)."""

    def __init__(self, value: int = 0):
        self.value = int(value)

    def __int__(self) -> int:
        return self.value

    def __index__(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return f"VirtualRegister({self.value})"


def get_nc_version() -> nc_version:
    return nc_version(current().target.nc_version)


def register_alloc(x=None) -> VirtualRegister:
    return VirtualRegister(0 if x is None else register_value(x))


def register_move(dst: VirtualRegister, src=None, imm=None) -> None:
    dst.value = register_value(src if src is not None else imm)


def register_load(dst: VirtualRegister, src: NkiTensor) -> None:
    dst.value = register_value(src)


def register_store(dst: NkiTensor, src: VirtualRegister) -> None:
    launch, site = current(), kernel_site()
    target = resolve(dst)
    write(target, np.full((1, 1), int(src), dtype=np.int64))
    record(launch, "register_store", "gpsimd", site, {"dst": target}, {}, attrs_of(None, None))


def core_barrier(data, cores, engine=None, name=None) -> None:
    launch = current()
    instances = int(np.prod(launch.grid)) if launch.grid else 1
    if instances == 1:
        return
    listed = sorted(int(c) for c in (cores if isinstance(cores, (tuple, list)) else (cores,)))
    if listed != list(range(instances)):
        raise NkiUnsupportedError("nisa.core_barrier over a subset of the program instances",
                                  f"cores={tuple(listed)} for a grid of {instances} instances")
    if not isinstance(data, NkiTensor) or data.alloc.kind != "hbm":
        usage("nisa.core_barrier", "data must be a shared_hbm tensor", kernel_site())
    launch.note_barrier()
