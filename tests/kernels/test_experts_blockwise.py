"""experts.grouped_v2 in context encoding: the blockwise NKI pair (gate/up + SwiGLU | down + affinity + scatter)
through the CPU interpreter against the baseline's blockwise numerics, at tiny and real per-rank shapes (TP 1, 2,
4) for the contest buckets, with prompts shorter than their bucket; the block table (only chosen experts, ascending,
no padding tokens); the rounding knobs against the compiler's MPA schedule; what the traces show (only the chosen
experts' weights move, the context MACs are NKI MACs); and the shapes it rejects.

Real-shape cases are marked slow; on a loaded machine run them with OPENBLAS_NUM_THREADS=1 (numpy's threaded BLAS
is about 1000x slower than one thread for the interpreter's small matmuls when the cores are oversubscribed)."""
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

import kernels
from kernels.executors import interpret
from kernels.experts.baseline import experts_reference, experts_scheduled
from kernels.experts.blockwise import block_table
from kernels.examples import example_call
from kernels.experts.grouped_v2 import kernel_numerics
from kernels.macs import baseline_macs
from kernels.slots import CALLS_PER_LAYER, CALLS_PER_MODEL, KernelSet
from kernels.types import Phase
from pipeline.stages.compile import mac_ratio, trace_kernel
from tests.kernels.shapes import REAL_TP4, TINY
from tests.kernels.test_experts_nki import make_tokens, make_weights

VARIANT = kernels.get("experts", "grouped_v2")
TINY_TP = {tp: replace(TINY, intermediate=256 // tp) for tp in (1, 2, 4)}  # tiny model: I = 256 at TP 1
REAL_TP = {tp: replace(REAL_TP4, intermediate=768 // tp) for tp in (1, 2, 4)}  # Qwen3-30B-A3B: I = 768 at TP 1


def routed(shapes, tokens: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 3)
    return torch.rand(tokens, shapes.experts, generator=g).topk(shapes.top_k, dim=1).indices


def prompt_mask(tokens: int, length: int) -> torch.Tensor:
    return torch.arange(tokens) < length


def run(shapes, tokens: int, length: int | None = None, seed: int = 0, **knobs):
    """(output, traces, expected, inputs) of the variant on `tokens` tokens, the first `length` real."""
    weights = make_weights(shapes, seed)
    x, affinities = make_tokens(shapes, tokens, seed)
    index = routed(shapes, tokens, seed)
    valid = None if length is None else prompt_mask(tokens, length)
    params = VARIANT.make_params(knobs)
    out, traces = interpret(VARIANT, params, (x, affinities, index, weights, valid), "trn2")
    expected = VARIANT.reference(x, affinities, index, weights, valid, params=params)
    return out, traces, expected, (x, affinities, index, weights, valid)


def assert_within_rtol(out, expected) -> None:
    assert out.shape == expected.shape and out.dtype == expected.dtype
    assert (out.float() - expected.float()).abs().max() <= VARIANT.rtol * expected.float().abs().max()


def test_the_block_table_groups_chosen_experts_ascending_without_padding_tokens():
    index = torch.tensor([[3, 1], [1, 0], [3, 2], [5, 4]])  # token 3 is padding: experts 4 and 5 only its
    affinities = torch.arange(8, dtype=torch.float32).view(4, 2) / 10
    table = block_table(affinities, index, 2, prompt_mask(4, 3))
    assert table.experts.tolist() == [[0, 1, 2, 3]]
    assert table.token_ids.tolist() == [[1, -1], [0, 1], [2, -1], [0, 2]]
    assert table.affinities[1].tolist() == pytest.approx([0.1, 0.2]) and table.affinities[0, 1] == 0
    full = block_table(affinities, index, 1)  # block_size 1: one block per assignment
    assert full.experts.tolist() == [[0, 1, 1, 2, 3, 3, 4, 5]] and (full.token_ids >= 0).all()


@pytest.mark.parametrize("tp,bucket,length", [(1, 128, 128), (2, 128, 77), (4, 256, 200), (2, 640, 300)])
def test_tiny_shapes_match_the_baseline(tp, bucket, length):
    out, _, expected, (x, affinities, index, weights, valid) = run(TINY_TP[tp], bucket, length)
    assert_within_rtol(out, expected)
    baseline = experts_reference(x, affinities, index, weights)
    assert torch.equal(expected[valid], baseline[valid])  # the reference is the baseline on real tokens
    assert (out[~valid] == 0).all()
    assert (out[valid] != baseline[valid]).float().mean() < 0.01  # fp32 accumulation order: rare 1-ulp flips


@pytest.mark.parametrize("block_size", [16, 64])
def test_block_size_is_a_tunable(block_size):
    out, traces, expected, (_, _, index, _, _) = run(TINY_TP[2], 128, 100, block_size=block_size)
    assert_within_rtol(out, expected)
    blocks = block_table(torch.ones(index.shape), index, block_size, prompt_mask(128, 100)).token_ids.shape[0]
    hidden, intermediate = TINY.hidden, TINY_TP[2].intermediate
    assert traces[0].total_macs == blocks * block_size * hidden * 2 * intermediate
    assert traces[1].total_macs == blocks * block_size * intermediate * hidden


@pytest.mark.parametrize("knobs,numerics", [({"fp32_swiglu": True, "fp32_affinity": True}, "mpa"),
                                            ({"fp32_swiglu": True}, "swiglu"), ({}, "eager")])
def test_rounding_knobs_follow_the_compiler_schedules(knobs, numerics):
    out, _, expected, (x, affinities, index, weights, _) = run(TINY_TP[1], 128, **knobs)
    assert_within_rtol(out, expected)
    params = VARIANT.make_params(knobs)
    assert torch.equal(expected, experts_scheduled(x, affinities, index, weights, kernel_numerics(params, x.dtype)))
    eager = experts_reference(x, affinities, index, weights)
    assert torch.equal(expected, eager) == (numerics == "eager")


def test_only_the_chosen_experts_weights_move_and_padding_pulls_in_none():
    shapes = TINY_TP[1]
    tokens, length = 128, 5
    index = routed(shapes, tokens)
    chosen = set(index[:length].flatten().tolist())
    assert len(chosen) < shapes.experts  # padding tokens alone would have pulled in more
    _, traces, _, _ = run(shapes, tokens, length)
    gate_up_bytes = shapes.hidden * 2 * shapes.intermediate * 2
    # gate/up: one load per block, blocks split over the 2 cores; down: each core loads half of every expert's columns
    for trace, per_load, loads in zip(traces, (gate_up_bytes, gate_up_bytes // 4), (len(chosen), 2 * len(chosen))):
        weight_loads = [ins for ins in trace.instructions
                        if ins.op == "dma_copy" and any(o.role == "index" for o in ins.operands)
                        and ins.dma_bytes == per_load]
        assert len(weight_loads) == loads
        assert {ins.program_id for ins in weight_loads} == {(0,), (1,)}


def test_all_padding_is_zero_without_a_launch():
    out, traces, expected, _ = run(TINY_TP[1], 128, 0)
    assert traces == [] and (out == 0).all() and torch.equal(out, expected)


def test_short_prompts_take_the_decode_kernel_like_the_baseline_path():
    out, traces, expected, _ = run(TINY_TP[2], 3, 2)  # 3 tokens x top-8 < 32 experts: selective loading
    assert_within_rtol(out, expected)
    assert [t.kernel for t in traces] == ["grouped_v2"] and (out[2] == 0).all()


def test_context_encoding_is_served_in_both_phases_and_the_shapes_are_checked():
    assert VARIANT.phases == frozenset(Phase)
    for shapes in (*TINY_TP.values(), *REAL_TP.values()):
        assert VARIANT.problems(replace(shapes, context_lengths=(128, 256, 640)), VARIANT.make_params()) == []
    problems = VARIANT.problems(TINY, VARIANT.make_params({"block_size": 96}))
    assert any("block_size=96 must be a power of two" in p for p in problems)
    problems = VARIANT.problems(replace(TINY, hidden=1536), VARIANT.make_params())
    assert any("context encoding: a core's 768 hidden columns are not a multiple of the 512-column output tile" in p
               for p in problems)
    problems = VARIANT.problems(replace(TINY, hidden=384), VARIANT.make_params())
    assert any("hidden size 384 does not split into 2 cores' shares" in p for p in problems)


@pytest.mark.slow
@pytest.mark.parametrize("tp", [1, 2, 4])
@pytest.mark.parametrize("bucket,length", [(128, 100), (256, 256), (640, 500)])
def test_real_shapes_match_the_baseline(tp, bucket, length):
    out, traces, expected, (x, affinities, index, weights, valid) = run(REAL_TP[tp], bucket, length)
    assert_within_rtol(out, expected)
    assert (out[~valid] == 0).all()
    assert (out[valid] != expected[valid]).float().mean() < 0.01


def test_the_compile_stage_counts_the_context_pair_as_nki_macs():
    shapes = TINY_TP[2]
    job = SimpleNamespace(layer_shapes=lambda: shapes, dims=SimpleNamespace(num_hidden_layers=2),
                          conf=SimpleNamespace(platform=SimpleNamespace(target="trn2")),
                          kernels=KernelSet.from_choices({"experts": "grouped_v2"}, executor="interp"))
    entry = trace_kernel(job, "experts", job.kernels.experts, Phase.CONTEXT)
    assert entry["launches"] == 2 and entry["max_relative_error_vs_reference"] <= VARIANT.rtol
    call = example_call("experts", Phase.CONTEXT, shapes)
    blocks = block_table(call.args[1], call.args[2], VARIANT.make_params().block_size).token_ids.shape[0]
    assert entry["macs"] == blocks * 128 * 3 * shapes.hidden * shapes.intermediate
    ratio, counts = mac_ratio(job, {("experts", "context"): entry})
    assert counts["nki_macs"] == 2 * entry["macs"]  # one call per layer
    context_baseline = 2 * baseline_macs("experts", Phase.CONTEXT, shapes)
    assert counts["torch_macs"] + context_baseline == sum(
        (2 * CALLS_PER_LAYER.get(layer, 0) + CALLS_PER_MODEL.get(layer, 0)) * baseline_macs(layer, phase, shapes)
        for layer in CALLS_PER_LAYER | CALLS_PER_MODEL for phase in Phase)
