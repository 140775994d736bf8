"""Target queries, registers and synchronisation.

Kernels run one program instance at a time, so cross-instance synchronisation (core_barrier
between several instances, sendrecv, collectives) cannot be honoured and is refused.
"""

from __future__ import annotations

import numpy as np

from ..checks import kernel_site
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
    if instances > 1:
        raise NkiUnsupportedError("nisa.core_barrier across program instances",
                                  "instances run one after another, so they cannot wait for each other")
