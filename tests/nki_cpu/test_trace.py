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
                  "contiguous", "nbytes", "indirect"],
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
    assert scale.operands[1] == Operand("data", (64, 64), "float32", "sbuf", 64, 64, 4, True, 64 * 64 * 4, False)
    assert [i.seq for i in (load, scale, store)] == [0, 1, 2]
    assert scale.source == (__file__, line_of(__file__, "# <-" + " scale"))
