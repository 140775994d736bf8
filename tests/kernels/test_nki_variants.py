"""Every registered NKI variant, through the CPU interpreter, against its torch reference on the same
inputs, at tiny and at real per-rank Qwen3-30B-A3B shapes, in each phase it serves (max mode:
|out - ref| <= rtol * max|ref|, with the variant's declared rtol; 0 means bit-exact)."""
import pytest
import torch

import kernels
from kernels.examples import example_call
from kernels.executors import make_executor
from kernels.types import Phase
from tests.kernels.shapes import SHAPES

NKI_VARIANTS = [v for variants in kernels.catalogue().values() for v in variants if v.nki]
# A real-shape expert prefill runs ~130 expert blocks through the interpreter: slow (tests/kernels/test_experts_blockwise.py
# covers it at every TP degree and bucket).
SLOW = {("experts", Phase.CONTEXT, "real_tp4")}
CASES = [
    pytest.param(v, phase, name, id=f"{v.layer}.{v.name}-{phase.value}-{name}",
                 marks=[pytest.mark.slow] if (v.layer, phase, name) in SLOW else [])
    for v in NKI_VARIANTS for phase in sorted(v.phases, key=lambda p: p.value) for name in SHAPES
]


def flatten(result):
    return list(result) if isinstance(result, tuple) else [result]


@pytest.mark.parametrize("variant,phase,shape_name", CASES)
def test_nki_variant_matches_reference(variant, phase, shape_name):
    shapes = SHAPES[shape_name]
    assert not variant.problems(shapes, variant.make_params())
    run = make_executor("interp")
    actual = run(variant, variant.make_params(), example_call(variant.layer, phase, shapes, 0, variant.transpose_weights).args)
    expected = variant.reference(*example_call(variant.layer, phase, shapes, 0, variant.transpose_weights).args,
                                 params=variant.make_params())
    for a, e in zip(flatten(actual), flatten(expected)):
        assert a.shape == e.shape and a.dtype == e.dtype
        if variant.rtol == 0:
            assert torch.equal(a, e)
        else:
            assert (a.float() - e.float()).abs().max() <= variant.rtol * e.float().abs().max()


def test_there_are_nki_variants_for_norm():
    assert {"nki_rmsnorm", "nki_add_rmsnorm"} <= {v.name for v in NKI_VARIANTS}
