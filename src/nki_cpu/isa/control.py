"""Target queries, registers and synchronisation.

The program instances of a grid run one at a time as a gang (nki_cpu.gang): `sendrecv` is a
rendezvous at which every instance hands an SBUF tile to another, and `core_barrier` one at which
they only wait for each other, so instructions after a barrier see everything every instance did
before it. Barriers are not recorded in the trace: the cost model does not model their latency, and
the ordering they enforce appears there as data dependencies through shared HBM. Collectives are
refused.
"""

from __future__ import annotations

import numpy as np

from ..checks import fail, kernel_site, usage
from ..context import current
from ..errors import NkiUnsupportedError
from ..gang import Rendezvous
from ..tensor import NkiTensor, register_value
from .common import attrs_of, record, resolve, write
from .enums import dma_engine as DmaEngine
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
    value = np.full((1, 1), int(src), dtype=np.int64)
    launch.execute(lambda: write(target, value))
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
    site = kernel_site()
    if not isinstance(data, NkiTensor) or data.alloc.kind != "hbm":
        usage("nisa.core_barrier", "data must be a shared_hbm tensor", site)
    launch.gang.meet(_Barrier(site))


class _Barrier(Rendezvous):
    kind = "core_barrier"

    def __init__(self, site):
        self.site = site

    def describe(self) -> str:
        return f"core_barrier (kernel {self.site[0]}:{self.site[1]})"

    def complete(self, gang, meetings: list["_Barrier"]) -> None:
        """Nothing moves: every instance has done everything before its barrier."""


def _count(t: NkiTensor) -> int:
    return int(np.prod(t.shape))


class _SendRecv(Rendezvous):
    kind = "sendrecv"

    def __init__(self, index: int, src: NkiTensor, dst: NkiTensor, send_to: int, recv_from: int, pipe_id,
                 attrs: dict, site):
        self.index, self.src, self.dst, self.send_to, self.recv_from = index, src, dst, send_to, recv_from
        self.pipe_id, self.attrs, self.site = pipe_id, attrs, site

    def describe(self) -> str:
        return f"sendrecv (kernel {self.site[0]}:{self.site[1]})"

    def complete(self, gang, meetings: list["_SendRecv"]) -> None:
        """Every dst receives its sender's src (raw bytes); each instance's sendrecv is traced as a DMA
        that reads the sender's src and writes its own dst."""
        for m in meetings:
            sender = meetings[m.recv_from]
            if sender.send_to != m.index or sender.pipe_id != m.pipe_id:
                usage("nisa.sendrecv", f"instance {m.index} receives from {m.recv_from} (pipe {m.pipe_id}), which "
                                       f"sends to {sender.send_to} (pipe {sender.pipe_id})", m.site)
            if sender.src.dtype.name != m.dst.dtype.name or _count(sender.src) != _count(m.dst):
                usage("nisa.sendrecv", f"instance {m.index} receives {sender.src.shape} {sender.src.dtype.name} "
                                       f"into {m.dst.shape} {m.dst.dtype.name}; sizes and dtypes must match", m.site)
        pairs = [(meetings[m.recv_from].src, m.dst) for m in meetings]

        def compute():
            received = [src.np().copy() for src, _ in pairs]
            for (_, dst), values in zip(pairs, received):
                view = dst.np()
                view[...] = values.reshape(view.shape)
        launch = current()
        launch.execute(compute, instruction=False)
        for m in meetings:
            gang.switch_to(m.index)
            src = meetings[m.recv_from].src
            launch.execute(_nothing)       # the exchange above is this instruction's work
            record(launch, "sendrecv", "dma", m.site, {"dst": m.dst}, {"src": src}, m.attrs,
                   dma_bytes=_count(m.dst) * m.dst.dtype.itemsize)


def _nothing() -> None:
    return None


def sendrecv(src, dst, send_to_rank, recv_from_rank, pipe_id=0, dma_engine=None, name=None) -> None:
    """Send `src` (SBUF) to instance `send_to_rank` and receive instance `recv_from_rank`'s src into `dst`
    (SBUF); every instance of the grid takes part. A rendezvous: the call returns once all have arrived."""
    launch, site = current(), kernel_site()
    gang = launch.gang
    if gang is None:
        usage("nisa.sendrecv", "exchanges data between the program instances of a grid (kernel[2](...)); "
              "this launch has one instance", site)
    s, d = resolve(src), resolve(dst)
    for role, t in (("src", s), ("dst", d)):
        if t.alloc.kind != "sbuf":
            fail("nisa.sendrecv", "src and dst in SBUF", f"{role} in {t.alloc.kind.upper()}", site)
    for role, rank in (("send_to_rank", send_to_rank), ("recv_from_rank", recv_from_rank)):
        if not 0 <= int(rank) < gang.size or int(rank) == gang.index:
            usage("nisa.sendrecv", f"{role}={rank} must be another instance of the {gang.size}-instance grid", site)
    engine = DmaEngine(dma_engine).name if dma_engine is not None else None
    attrs = attrs_of(name, None, send_to_rank=int(send_to_rank), recv_from_rank=int(recv_from_rank),
                     pipe_id=int(pipe_id), dma_engine=engine)
    gang.meet(_SendRecv(gang.index, s, d, int(send_to_rank), int(recv_from_rank), int(pipe_id), attrs, site))
