"""The cut-point map and the per-layer parity on the tiny model: R2 Table II's verdicts with MPA on, every
boundary free with MPA off, and a custom call located to the layer and kernel where it first moves a value."""
import pytest
import torch

from kernels.numerics import CompilerNumerics
from kernels.slots import KernelSet
from model.generation import generate
from model.qwen3_moe import Qwen3Moe
from pipeline.evaluation.cutpoints import PUBLISHED, measure, table
from pipeline.evaluation.layer_parity import BlockRecorder, first_divergent, forced_outputs, layer_parity
from tests.models import checkpoint, contest_prompt_ids

pytestmark = pytest.mark.slow
BUCKETS = [128, 256]


@pytest.fixture(scope="module")
def tiny():
    return Qwen3Moe.from_checkpoint(checkpoint("qwen3_moe_tiny"), KernelSet.baseline(), 2)


@pytest.mark.parametrize("tokens", [48, 1])
def test_cut_point_verdicts(tiny, tokens):
    ids = list(contest_prompt_ids()[0])
    records = {}
    for mpa in (True, False):
        for r in measure(tiny, lambda n: KernelSet.baseline(numerics=n), CompilerNumerics(mpa=mpa), ids, tokens, 1,
                         BUCKETS, 8):
            records[(r.boundary, mpa)] = r
    for boundary, published in PUBLISHED.items():
        assert (records[(boundary, True)].verdict == "free") == (published == 0), boundary
    assert all(r.verdict == "free" for (_, mpa), r in records.items() if not mpa)
    assert records[("down | affinity+scatter", True)].verdict == "lossy"
    assert "input \\| gate_up" in table(list(records.values()))


def test_layer_parity_names_the_first_divergent_kernel(tiny):
    ids, forced = list(contest_prompt_ids()[3]), [11, 12, 13]
    numerics = CompilerNumerics(mpa=True)
    reference = tiny.with_kernels(KernelSet.baseline(numerics=numerics))
    same = layer_parity(forced_outputs(reference, ids, forced, BUCKETS), forced_outputs(reference, ids, forced, BUCKETS),
                        reference.kernels)
    assert all(r.mismatch_pct == 0 for r in same) and not first_divergent(same)
    candidate = tiny.with_kernels(KernelSet.from_choices({"experts": "selective_v1"}, numerics=numerics))
    records = layer_parity(forced_outputs(candidate, ids, forced, BUCKETS),
                           forced_outputs(reference, ids, forced, BUCKETS), candidate.kernels)
    first = first_divergent(records)
    assert "context" not in first  # selective_v1 is decode-only: context encoding runs the baseline
    assert (first["token"].layer, first["token"].block) == (0, "moe") and "selective_v1" in first["token"].kernels
    later = [r.mismatch_pct for r in records if r.phase == "token" and (r.layer, r.block) != (0, "attention")]
    assert torch.tensor(later).gt(0).all()  # layer 0's decode attention reads only embeddings and the same cache


def test_a_greedy_generation_records_the_teacher_forced_outputs_of_its_own_tokens(tiny):
    """The accuracy stage reuses the block outputs its greedy generations recorded for the per-layer parity
    instead of a second teacher-forced run: both must be the same calls on the same values."""
    ids = list(contest_prompt_ids()[3])
    recorder = BlockRecorder(len(ids))
    tokens = generate(tiny, [ids], 6, BUCKETS, taps=recorder).tokens[0].tolist()
    forced = forced_outputs(tiny, ids, tokens, BUCKETS)
    assert recorder.outputs.keys() == forced.keys() and len(forced[("token", 0, "moe")]) == 5
    for key, outputs in forced.items():
        assert all(torch.equal(a, b) for a, b in zip(recorder.outputs[key], outputs, strict=True)), key
