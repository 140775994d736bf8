"""The instruction trace: the stable contract between the interpreter and its consumers.

One `Trace` per kernel launch (per `kernel(...)`, `kernel[grid](...)`, `nki.simulate(...)` or
`run_kernel(...)` call). It lists every executed instruction in program order; instances of
an SPMD grid run one after another and are told apart by `Instruction.program_id`.

Contract (version 1; fields are only ever added, never renamed or removed):

Region — memory one operand touches, as a conservative box:
  buffer       "hbm" | "sbuf" | "psum"
  alloc        allocation id, unique within the trace (ids repeat across traces)
  partitions   [lo, hi) partitions; HBM: (0, 1)
  byte_range   [lo, hi) bytes within each partition (HBM: within the tensor's storage). Indirect
               (vector_offset / scalar_offset) HBM accesses report the resolved rows' span.

Operand — one tensor argument of an instruction:
  role         the NKI parameter name: "dst", "src", "data", "data1", "stationary", "moving",
               "bias", "scale", "operand0", "reduce_res", "predicate", "index" (indirect DMA indices) ...
  shape, dtype ("bfloat16", ...), buffer ("hbm" | "sbuf" | "psum")
  partitions   partition count (on-chip: shape[0]; HBM: 1)
  free_elems   elements per partition (HBM: all elements)
  inner_stride_bytes  byte stride of the innermost dimension of size > 1 (strided-access penalty)
  contiguous   the per-partition (HBM: whole) elements form one dense run
  nbytes       bytes the operand covers (elements x itemsize)
  indirect     True for vector_offset / scalar_offset (DGE) accesses

Instruction:
  seq          0-based position in the trace
  op           NKI name without namespace: "nc_matmul", "dma_copy", "activation", ...
  engine       "tensor" | "vector" | "scalar" | "gpsimd" | "dma" (explicit engine= wins,
               otherwise the documented default of the instruction)
  operands     every tensor argument, dst first
  reads/writes Regions read and written (for dependency analysis; a matmul accumulating into
               PSUM also reads its dst, an in-place instruction reads and writes the same region)
  dma_bytes    bytes written by a DMA instruction (0 for compute instructions)
  macs         multiply-accumulates of TensorE matmuls (K * M * N; 0 elsewhere)
  attrs        instruction options as plain JSON values: "op"/"op0"/"op1"/"reduce_op" (ALU op
               names), "act" (activation name), "accumulate" (resolved True/False for nc_matmul),
               "is_transpose", "perf_mode", "dge_mode", "oob_mode", "engine_requested", "axis",
               "reduce_cmd", "name" (the kernel's name= argument) ...
  source       (kernel file, line) of the first stack frame outside nki_cpu
  program_id   SPMD program id of the instance that ran it; () for a kernel launched without a grid

Trace: kernel name, target, grid, instructions, peak SBUF / PSUM bytes per partition and
their capacities; summary helpers; `to_json()` / `Trace.from_json()` round-trip.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

TRACE_VERSION = 1


@dataclass(frozen=True, slots=True)
class Region:
    buffer: str
    alloc: int
    partitions: tuple[int, int]
    byte_range: tuple[int, int]


class RegionFields(NamedTuple):
    """A Region's fields as the interpreter records them: cheap to make for every view an instruction touches;
    the Trace makes the Region when it is read."""

    buffer: str
    alloc: int
    partitions: tuple[int, int]
    byte_range: tuple[int, int]


@dataclass(frozen=True, slots=True)
class Operand:
    role: str
    shape: tuple[int, ...]
    dtype: str
    buffer: str
    partitions: int
    free_elems: int
    inner_stride_bytes: int
    contiguous: bool
    nbytes: int = 0
    indirect: bool = False
    run_elems: int = 1            # elements per contiguous run of memory (per partition on chip)


@dataclass(frozen=True, slots=True)
class Instruction:
    seq: int
    op: str
    engine: str
    operands: tuple[Operand, ...]
    reads: tuple[Region, ...]
    writes: tuple[Region, ...]
    dma_bytes: int
    macs: int
    attrs: dict
    source: tuple[str, int]
    program_id: tuple[int, ...]


@dataclass
class Trace:
    """All instructions of one launch. The interpreter appends raw field tuples (cheap), whose operands
    and regions may be plain tuples of Operand fields and RegionFields; `instructions` turns them into
    Instruction, Operand and Region objects on first access."""

    kernel: str
    target: str
    grid: tuple[int, ...] = ()
    raw_instructions: list = field(default_factory=list, repr=False)
    peak_sbuf_bytes: int = 0           # per partition
    peak_psum_bytes: int = 0           # per partition (bank-rounded)
    sbuf_capacity_bytes: int = 0       # per partition, usable
    psum_capacity_bytes: int = 0       # per partition
    _built: list = field(default_factory=list, init=False, repr=False, compare=False)

    @property
    def instructions(self) -> list[Instruction]:
        raw, built = self.raw_instructions, self._built
        if len(built) < len(raw):
            built.extend(_instruction(fields) for fields in raw[len(built):])
        return built

    def __len__(self) -> int:
        return len(self.raw_instructions)

    def count_by_engine(self) -> dict[str, int]:
        return dict(Counter(ins.engine for ins in self.instructions))

    def count_by_op(self) -> dict[str, int]:
        return dict(Counter(ins.op for ins in self.instructions))

    @property
    def total_macs(self) -> int:
        return sum(ins.macs for ins in self.instructions)

    @property
    def total_dma_bytes(self) -> int:
        return sum(ins.dma_bytes for ins in self.instructions)

    def summary(self) -> dict:
        return {
            "kernel": self.kernel, "target": self.target, "instructions": len(self.instructions),
            "by_engine": self.count_by_engine(), "total_macs": self.total_macs,
            "total_dma_bytes": self.total_dma_bytes, "peak_sbuf_bytes": self.peak_sbuf_bytes,
            "peak_psum_bytes": self.peak_psum_bytes,
        }

    def to_json(self) -> str:
        body = {
            "version": TRACE_VERSION, "kernel": self.kernel, "target": self.target, "grid": list(self.grid),
            "peak_sbuf_bytes": self.peak_sbuf_bytes, "peak_psum_bytes": self.peak_psum_bytes,
            "sbuf_capacity_bytes": self.sbuf_capacity_bytes, "psum_capacity_bytes": self.psum_capacity_bytes,
            "instructions": [asdict(ins) for ins in self.instructions],
        }
        return json.dumps(body)

    @classmethod
    def from_json(cls, text: str) -> "Trace":
        body = json.loads(text)
        return cls(
            kernel=body["kernel"], target=body["target"], grid=tuple(body["grid"]),
            raw_instructions=[_fields_from_dict(d) for d in body["instructions"]],
            peak_sbuf_bytes=body["peak_sbuf_bytes"], peak_psum_bytes=body["peak_psum_bytes"],
            sbuf_capacity_bytes=body["sbuf_capacity_bytes"], psum_capacity_bytes=body["psum_capacity_bytes"],
        )


def _instruction(fields: tuple) -> Instruction:
    seq, op, engine, operands, reads, writes, *rest = fields
    return Instruction(seq, op, engine, tuple(o if type(o) is Operand else Operand(*o) for o in operands),
                       tuple(r if type(r) is Region else Region(*r) for r in reads),
                       tuple(r if type(r) is Region else Region(*r) for r in writes), *rest)


def _region_from_dict(d: dict) -> Region:
    return Region(d["buffer"], d["alloc"], tuple(d["partitions"]), tuple(d["byte_range"]))


def _operand_from_dict(d: dict) -> Operand:
    return Operand(**{**d, "shape": tuple(d["shape"])})


def _fields_from_dict(d: dict) -> tuple:
    return (
        d["seq"], d["op"], d["engine"], tuple(_operand_from_dict(o) for o in d["operands"]),
        tuple(_region_from_dict(r) for r in d["reads"]), tuple(_region_from_dict(r) for r in d["writes"]),
        d["dma_bytes"], d["macs"], d["attrs"], tuple(d["source"]), tuple(d["program_id"]),
    )
