"""The trace contract: field names and types a cost model may rely on, and dependency regions."""

import dataclasses

import numpy as np
import pytest

import nki
import nki.isa as nisa
import nki.language as nl
import nki_cpu
from interp_helpers import line_of
from nki_cpu.trace import Instruction, Operand, Region


def test_contract_dataclasses_are_frozen_slotted_and_complete():
    expected = {
        Region: ["buffer", "alloc", "partitions", "byte_range"],
        Operand: ["role", "shape", "dtype", "buffer", "partitions", "free_elems", "inner_stride_bytes",
                  "contiguous", "nbytes", "indirect", "run_elems"],
        Instruction: ["seq", "op", "engine", "operands", "reads", "writes", "dma_bytes", "macs", "attrs",
                      "source", "program_id"],
    }
    for cls, names in expected.items():
        assert [f.name for f in dataclasses.fields(cls)] == names
        assert hasattr(cls, "__slots__")
        instance_fields = {f.name: None for f in dataclasses.fields(cls)}
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(cls(**instance_fields), names[0], 1)


@nki.jit
def pipeline_kernel(a):
    x = nl.ndarray((128, 64), dtype=nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=x, src=a)
    y = nl.ndarray((64, 64), dtype=nl.float32, buffer=nl.sbuf)
    nisa.tensor_scalar(dst=y, data=x[64:128, :], op0=nl.multiply, operand0=2.0)  # <- scale
    out = nl.ndarray((64, 64), dtype=nl.float32, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=y)
    return out


def test_regions_expose_read_after_write_dependencies(rng):
    a = rng.standard_normal((128, 64)).astype(np.float32)
    load, scale, store = nki_cpu.run_kernel(pipeline_kernel, a).trace.instructions
    assert scale.reads[0].alloc == load.writes[0].alloc
    assert scale.reads[0].partitions == (64, 128) and scale.reads[0].byte_range == (0, 256)
    assert store.reads[0] == scale.writes[0]
    assert load.dma_bytes == 128 * 64 * 4 and store.dma_bytes == 64 * 64 * 4
    assert [load.engine, scale.engine, store.engine] == ["dma", "vector", "dma"]
    assert scale.operands[1] == Operand("data", (64, 64), "float32", "sbuf", 64, 64, 4, True, 64 * 64 * 4, False, 64)
    assert [i.seq for i in (load, scale, store)] == [0, 1, 2]
    assert scale.source == (__file__, line_of(__file__, "# <-" + " scale"))


@nki.jit
def runs_kernel(a):
    block = nl.ndarray((128, 256), dtype=nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=block, src=a[0:128, 0:256])          # rows of a wider matrix: 256-element runs
    whole = nl.ndarray((64, 512), dtype=nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=whole, src=a[128:192, :])            # full rows: one contiguous run
    picked = nl.ndarray((128, 8), dtype=nl.float32, buffer=nl.sbuf)
    nisa.dma_copy(dst=picked, src=a[0:128, 0:512:64])      # every 64th element: one element per run
    out = nl.ndarray((1, 1), dtype=nl.float32, buffer=nl.shared_hbm)
    nisa.dma_copy(dst=out, src=picked[0:1, 0:1])
    return out


def test_operands_record_contiguous_runs_with_dims_merged():
    a = np.zeros((256, 512), np.float32)
    block, whole, picked, _ = nki_cpu.run_kernel(runs_kernel, a).trace.instructions
    assert block.operands[1].run_elems == 256
    assert whole.operands[1].run_elems == 64 * 512
    assert picked.operands[1].run_elems == 1
    assert block.operands[0].run_elems == 256               # on chip: per partition
