"""The NKI decode expert variants (selective_v1, grouped_v2) through the CPU interpreter against the baseline's
selective-loading numerics: tiny and real per-rank shapes, batches whose tokens share experts, every tunable,
both targets; and what the traces must show: only the selected experts' weights move (indirect DMA from the
full per-rank tensors, passed without a copy), grouped_v2 runs on both physical cores with half the weight
bytes each and issues its loads ahead of compute, on-chip use stays within the budget the shape checks
assume, the cost model puts grouped_v2 within 1.5x of its floor at real shapes, and unservable shapes are
rejected with a reason."""
from collections import Counter
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

import kernels
import nki_cpu
from nki_cpu import cost
from kernels.executors import interpret
from kernels.experts.baseline import experts_reference
from kernels.experts.nki_tiling import equal_chunk, pair_tiling, tiling
from kernels.macs import baseline_macs
from kernels.slots import KernelSet
from kernels.types import ExpertWeights, LayerShapes, Phase
from pipeline.stages.compile import UnsupportedShapes, check_shapes
from tests.kernels.shapes import REAL_TP4, TINY

VARIANTS = ["selective_v1", "grouped_v2"]
# hidden 512 (4 K tiles), I/rank 192 (2 chunks of 96, or 3 of 64 ...), so every knob has room to vary.
MEDIUM = replace(TINY, hidden=512, experts=16, top_k=4, intermediate=192, batch=2)


def make_weights(shapes: LayerShapes, seed: int = 0) -> ExpertWeights:
    """Unit-variance-preserving uniform weights (cheaper to draw than normal ones at real shapes)."""
    g = torch.Generator().manual_seed(seed)

    def uniform(*shape: int, fan_in: int) -> torch.Tensor:
        bound = (3.0 / fan_in) ** 0.5
        return torch.empty(shape).uniform_(-bound, bound, generator=g).to(shapes.dtype)

    return ExpertWeights(uniform(shapes.experts, shapes.hidden, 2 * shapes.intermediate, fan_in=shapes.hidden),
                         uniform(shapes.experts, shapes.intermediate, shapes.hidden, fan_in=shapes.intermediate))


def make_tokens(shapes: LayerShapes, tokens: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(tokens, shapes.hidden, generator=g).to(shapes.dtype)
    affinities = torch.softmax(torch.randn(tokens, shapes.top_k, generator=g), dim=1).to(shapes.dtype)
    return x, affinities


def distinct_index(shapes: LayerShapes, tokens: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 2)
    return torch.stack([torch.randperm(shapes.experts, generator=g)[: shapes.top_k] for _ in range(tokens)])


def run(name: str, x, affinities, index, weights, target: str = "trn2", **knobs):
    variant = kernels.get("experts", name)
    return interpret(variant, variant.make_params(knobs), (x, affinities, index, weights), target)


def assert_matches_baseline(name: str, out, x, affinities, index, weights) -> None:
    expected = experts_reference(x, affinities, index, weights)
    assert out.shape == expected.shape and out.dtype == expected.dtype
    error = (out.float() - expected.float()).abs().max()
    assert error <= kernels.get("experts", name).rtol * expected.float().abs().max()


@pytest.fixture(scope="module")
def real_weights() -> ExpertWeights:
    return make_weights(REAL_TP4)


def weight_loads(trace, program_id=None):
    """(tensor, HBM byte range read, bytes moved, SBUF allocation written) of every indirect weight DMA (of one
    program instance if given). The kernels take gate_up before down, so its HBM allocation has the lower id."""
    indirect = [ins for ins in trace.instructions
                if ins.op == "dma_copy" and any(o.role == "index" for o in ins.operands)]
    gate_up = min(ins.reads[0].alloc for ins in indirect)
    return [("gate_up" if ins.reads[0].alloc == gate_up else "down", ins.reads[0].byte_range, ins.dma_bytes,
             ins.writes[0].alloc) for ins in indirect if program_id is None or ins.program_id == program_id]


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("tokens", [1, 3])  # 3 x top-8 < 32 experts: the largest selective-loading batch
def test_tiny_decode_matches_baseline(name, tokens):
    x, affinities = make_tokens(TINY, tokens)
    index, weights = distinct_index(TINY, tokens), make_weights(TINY)
    out, _ = run(name, x, affinities, index, weights)
    assert_matches_baseline(name, out, x, affinities, index, weights)


@pytest.mark.parametrize("name", VARIANTS)
def test_every_token_choosing_the_same_experts(name):
    x, affinities = make_tokens(TINY, 3)
    chosen = torch.tensor([30, 2, 17, 5, 11, 0, 23, 8])
    index = torch.stack([chosen, chosen.flip(0), chosen.roll(3)])
    weights = make_weights(TINY)
    out, _ = run(name, x, affinities, index, weights)
    assert_matches_baseline(name, out, x, affinities, index, weights)
    assert not torch.equal(out[0], out[1])  # same experts, other tokens and affinities


@pytest.mark.slow
@pytest.mark.parametrize("name", VARIANTS)
def test_real_shapes_one_token_eight_distinct_experts(name, real_weights):
    x, affinities = make_tokens(REAL_TP4, 1)
    index = distinct_index(REAL_TP4, 1)
    assert index.unique().numel() == REAL_TP4.top_k
    out, _ = run(name, x, affinities, index, real_weights)
    assert_matches_baseline(name, out, x, affinities, index, real_weights)


@pytest.mark.slow
@pytest.mark.parametrize("tp", [1, 2])
@pytest.mark.parametrize("name", VARIANTS)
def test_real_shapes_at_the_slices_tp_1_and_2(name, tp):
    """768 // tp intermediate rows per rank: 6 or 3 chunks of 128 where TP 4 has 2 of 96."""
    shapes = replace(REAL_TP4, intermediate=768 // tp)
    weights = make_weights(shapes)
    x, affinities = make_tokens(shapes, 2)
    index = torch.stack([torch.arange(8), torch.arange(4, 12)])
    out, _ = run(name, x, affinities, index, weights)
    assert_matches_baseline(name, out, x, affinities, index, weights)


@pytest.mark.slow
@pytest.mark.parametrize("name", VARIANTS)
def test_real_shapes_batch_with_overlapping_selections(name, real_weights):
    x, affinities = make_tokens(REAL_TP4, 4)
    index = torch.stack([torch.arange(8), torch.arange(4, 12), torch.arange(8).flip(0), torch.arange(120, 128)])
    out, _ = run(name, x, affinities, index, real_weights)
    assert_matches_baseline(name, out, x, affinities, index, real_weights)


GROUPED_KNOBS = [
    {"cores": 1}, {"k_tiles_per_dma": 1}, {"k_tiles_per_dma": 3}, {"i_chunks_per_dma": 1}, {"i_chunks_per_dma": 2},
    {"last_i_chunks": 0}, {"last_i_chunks": 2}, {"bufs": 1}, {"bufs": 2, "k_tiles_per_dma": 2, "i_chunks_per_dma": 2},
    {"wide_pairs": 0}, {"wide_pairs": 1, "k_tiles_per_dma": 3}, {"cores": 1, "wide_pairs": 9},
]


@pytest.mark.parametrize("tokens", [1, 2, 3])  # one token on both cores; a token per core; one token split
@pytest.mark.parametrize("knobs", GROUPED_KNOBS, ids=lambda knobs: ",".join(f"{k}={v}" for k, v in knobs.items()))
def test_grouped_v2_tunables_keep_the_numerics(knobs, tokens):
    x, affinities = make_tokens(MEDIUM, tokens)
    index, weights = distinct_index(MEDIUM, tokens), make_weights(MEDIUM)
    out, _ = run("grouped_v2", x, affinities, index, weights, **knobs)
    assert_matches_baseline("grouped_v2", out, x, affinities, index, weights)


@pytest.mark.parametrize("name", VARIANTS)
def test_trn3_target(name):
    x, affinities = make_tokens(MEDIUM, 2)
    index, weights = distinct_index(MEDIUM, 2), make_weights(MEDIUM)
    out, traces = run(name, x, affinities, index, weights, target="trn3")
    assert traces[0].target == "trn3"
    assert_matches_baseline(name, out, x, affinities, index, weights)


@pytest.mark.parametrize("name,knobs", [("selective_v1", {}), ("grouped_v2", {}),
                                        ("grouped_v2", {"k_tiles_per_dma": 3, "i_chunks_per_dma": 2})])
def test_only_the_selected_experts_weights_move(name, knobs):
    s = MEDIUM
    x, affinities = make_tokens(s, 3)
    index, weights = distinct_index(s, 3), make_weights(s)
    _, traces = run(name, x, affinities, index, weights, **knobs)
    slab = {"gate_up": s.hidden * 2 * s.intermediate * 2, "down": s.intermediate * s.hidden * 2}
    touched = {"gate_up": [], "down": []}
    for tensor, (lo, hi), moved, _ in weight_loads(traces[0]):
        assert lo // slab[tensor] == (hi - 1) // slab[tensor]  # one DMA reads one expert
        touched[tensor].append((lo // slab[tensor], moved))
    selected = Counter(index.flatten().tolist())  # a token's experts are distinct, tokens may share them
    for tensor, loads in touched.items():
        per_expert = Counter()
        for expert, moved in loads:
            per_expert[expert] += moved
        assert per_expert == {e: count * slab[tensor] for e, count in selected.items()}  # whole, once per slot


@pytest.mark.parametrize("name", VARIANTS)
def test_launcher_hands_the_full_weights_to_the_kernel_without_copies(name):
    x, affinities = make_tokens(TINY, 1)
    index, weights = distinct_index(TINY, 1), make_weights(TINY)
    seen = []

    def launch(kernel, *args):
        seen.extend(args)
        return nki_cpu.run_kernel(kernel, *args).outputs

    variant = kernels.get("experts", name)
    variant.nki(x, affinities, index, weights, params=variant.make_params(), launch=launch)
    assert any(a is weights.gate_up for a in seen) and any(a is weights.down for a in seen)


@pytest.mark.parametrize("bufs", [1, 2, 3])
def test_grouped_v2_issues_loads_as_far_ahead_as_its_buffers_allow(bufs):
    x, affinities = make_tokens(MEDIUM, 1)
    index, weights = distinct_index(MEDIUM, 1), make_weights(MEDIUM)
    _, traces = run("grouped_v2", x, affinities, index, weights, cores=1, bufs=bufs, k_tiles_per_dma=1)
    ops = [ins for ins in traces[0].instructions if ins.op in ("dma_copy", "nc_matmul")]
    first_matmul = next(i for i, ins in enumerate(ops) if ins.op == "nc_matmul")
    issued_before = sum(1 for ins in ops[:first_matmul] if any(o.role == "index" for o in ins.operands))
    assert issued_before == 2 * bufs  # bufs loads of gate/up (4 one-tile loads per pair), two experts each
    gate_up_buffers = [alloc for tensor, _, _, alloc in weight_loads(traces[0]) if tensor == "gate_up"]
    assert len(set(gate_up_buffers)) == bufs
    if bufs > 1:  # consecutive loads land in different buffers, so a load never waits for the previous one's use
        pairs = gate_up_buffers[::2]
        assert all(a != b for a, b in zip(pairs, pairs[1:]))


def test_grouped_v2_issues_every_load_before_computing_at_real_shapes(real_weights):
    x, affinities = make_tokens(REAL_TP4, 1)
    index = distinct_index(REAL_TP4, 1)
    _, traces = run("grouped_v2", x, affinities, index, real_weights)
    for core in range(2):
        mine = [ins for ins in traces[0].instructions if ins.program_id == (core,)]
        first_matmul = next(i for i, ins in enumerate(mine) if ins.op == "nc_matmul")
        loads = [i for i, ins in enumerate(mine) if any(o.role == "index" for o in ins.operands)]
        assert loads and max(loads) < first_matmul
        assert mine[0].op == "dma_copy" and mine[0].writes[0].partitions == (0, 1)  # the expert ids come first
        assert sum(1 for ins in mine[:loads[0]] if ins.engine == "dma") == 4  # then x (twice), the affinities
        # the first pair's gate/up loads are wide: each expert's rows in one 24 KiB run on half the partitions
        first_pair = [mine[i] for i in loads[:2]]
        assert [ins.writes[0].partitions for ins in first_pair] == [(0, 64), (64, 128)]
        assert all(ins.dma_bytes == REAL_TP4.hidden * 2 * REAL_TP4.intermediate * 2 for ins in first_pair)


@pytest.mark.parametrize("tokens", [1, 3])
def test_grouped_v2_splits_the_weight_bytes_evenly_over_both_cores(tokens, real_weights):
    x, affinities = make_tokens(REAL_TP4, tokens)
    index = distinct_index(REAL_TP4, tokens)
    _, traces = run("grouped_v2", x, affinities, index, real_weights)
    trace = traces[0]
    assert trace.grid == (2,)
    moved = [sum(b for _, _, b, _ in weight_loads(trace, (core,))) for core in range(2)]
    expert = 3 * REAL_TP4.hidden * REAL_TP4.intermediate * 2
    assert moved[0] == moved[1] == tokens * REAL_TP4.top_k * expert // 2


@pytest.mark.parametrize("tokens,exported", [(1, {0: 1}), (2, {}), (3, {0: 1})])  # pairs core 0 hands over
def test_grouped_v2_exchanges_only_the_outputs_of_tokens_split_over_the_cores(tokens, exported):
    x, affinities = make_tokens(MEDIUM, tokens)  # top-4: two pairs per token
    index, weights = distinct_index(MEDIUM, tokens), make_weights(MEDIUM)
    _, traces = run("grouped_v2", x, affinities, index, weights)
    for core in range(2):
        mine = [ins for ins in traces[0].instructions if ins.program_id == (core,)]
        sends = [ins for ins in mine if ins.op == "dma_copy" and ins.writes[0].buffer == "hbm"]
        sums = [ins for ins in mine if ins.op == "dma_compute"]
        assert len(sends) == exported.get(core, 0)
        assert all(len([o for o in ins.operands if o.role.startswith("srcs")]) == MEDIUM.top_k for ins in sums)
    written = sum(len([i for i in traces[0].instructions if i.op == "dma_compute" and i.program_id == (c,)])
                  for c in range(2))
    assert written == tokens  # every token's sum once, by one core


@pytest.fixture(scope="module")
def real_estimates(real_weights) -> dict:
    x, affinities = make_tokens(REAL_TP4, 1)
    _, traces = run("grouped_v2", x, affinities, distinct_index(REAL_TP4, 1), real_weights)
    return {target: cost.estimate(traces[0], target=target, lnc=2) for target in ("trn2", "trn3")}


# Issue 4's goal is 1.5x the floor. trn3 stays above it: of its ~9 us above the 15.5 us floor, 2.6 us are the two
# DMA latencies before the first weight byte (expert ids, then the indirect loads), the DMA descriptors, and
# ~4 us the tail after the last weight byte: 0.5 us of matmuls and 0.4 us of rounding and scaling the last
# pair, then one DMA latency to hand the first core's outputs to the second and one for the output itself.
# The bounds guard against regressions of the kernel under the calibrated cost model (issue 8: 1.60x on trn3;
# the pre-calibration model put it at 1.54x).
BOUND = {"trn2": 1.5, "trn3": 1.65}


@pytest.mark.parametrize("target", ["trn2", "trn3"])
def test_grouped_v2_estimate_stays_within_its_bound_at_real_shapes(target, real_estimates):
    estimate = real_estimates[target]
    assert estimate.schedule.cores_used == 2
    assert estimate.time_ns <= BOUND[target] * estimate.floor_ns


@pytest.mark.xfail(reason="1.60x: the hand-over between the cores at the end of the kernel is not hidden", strict=True)
def test_grouped_v2_estimate_within_one_and_a_half_floors_on_trn3(real_estimates):
    estimate = real_estimates["trn3"]
    assert estimate.time_ns <= 1.5 * estimate.floor_ns


@pytest.mark.parametrize("name,knobs", [("selective_v1", {}), ("grouped_v2", {}), ("grouped_v2", {"bufs": 2}),
                                        ("grouped_v2", {"cores": 1, "k_tiles_per_dma": 1})])
@pytest.mark.parametrize("shapes", [MEDIUM, replace(MEDIUM, batch=3), replace(TINY, batch=3)],
                         ids=["medium", "medium_b3", "tiny_b3"])
def test_on_chip_use_within_the_checked_budget_and_macs_as_baseline(name, knobs, shapes):
    x, affinities = make_tokens(shapes, shapes.batch)
    index, weights = distinct_index(shapes, shapes.batch), make_weights(shapes)
    _, traces = run(name, x, affinities, index, weights, **knobs)
    params = kernels.get("experts", name).make_params(knobs)
    trace = traces[0]
    macs = baseline_macs("experts", Phase.TOKEN, shapes)
    if name == "selective_v1":
        budget = tiling(shapes, equal_chunk(shapes.intermediate, params.intermediate_tile), None, None, 1).sbuf_bytes()
    else:
        budget = pair_tiling(shapes.batch, shapes.top_k, shapes.hidden, shapes.intermediate, 2, params.cores,
                             params.k_tiles_per_dma, params.i_chunks_per_dma, params.last_i_chunks,
                             params.bufs).sbuf_bytes()
        # the down projection multiplies a pair's block-diagonal h (two columns, one expert's rows each): as many
        # multiplications by zero as useful ones, at no PE time (a matmul costs 64 cycles for up to 64 columns);
        # a wide pair's gate/up has them too, and computes each stationary column twice: 4x its MACs
        slots, pairs_per_core = shapes.batch * shapes.top_k, -(-shapes.batch * shapes.top_k // 2 // params.cores)
        macs += slots * shapes.intermediate * shapes.hidden
        pairs = [pairs_per_core] * (slots // 2 // pairs_per_core) + [slots // 2 % pairs_per_core]
        wide = sum(min(params.wide_pairs if params.wide_pairs is not None else n, n - 1) for n in pairs if n > 1)
        macs += wide * 3 * 2 * shapes.hidden * 2 * shapes.intermediate
    assert trace.peak_sbuf_bytes <= budget
    assert trace.peak_psum_bytes <= 4 * 2048  # two projections' partial sums, two experts (pairs) in flight
    assert trace.total_macs == macs


REJECTED = [
    (replace(TINY, batch=4), {}, "batch * top_k < experts"),
    (replace(TINY, hidden=200), {}, "not a multiple of 128"),
    (replace(TINY, intermediate=96), {}, "not a multiple of 64"),
    (replace(TINY, top_k=3), {}, "top_k=3 is odd"),
    (TINY, {"cores": 3}, "cores=3 must be 1 or 2"),
    (TINY, {"last_i_chunks": -1}, "last_i_chunks=-1 must be at least 0"),
    (replace(REAL_TP4, hidden=8192, intermediate=768), {"k_tiles_per_dma": 1}, "more than one 2048-byte PSUM bank"),
    (replace(REAL_TP4, intermediate=768), {"k_tiles_per_dma": 16, "bufs": 8}, "SBUF budget"),
    (TINY, {"bufs": 0}, "bufs=0 must be at least 1"),
]


@pytest.mark.parametrize("shapes,knobs,reason", REJECTED, ids=[r[2] for r in REJECTED])
def test_unservable_shapes_are_rejected_with_a_reason(shapes, knobs, reason):
    variant = kernels.get("experts", "grouped_v2")
    assert any(reason in problem for problem in variant.problems(shapes, variant.make_params(knobs)))


def test_the_compile_stage_refuses_a_batch_outside_selective_loading():
    job = SimpleNamespace(layer_shapes=lambda: replace(TINY, batch=4),
                          kernels=KernelSet.from_choices({"experts": "selective_v1"}, executor="interp"))
    with pytest.raises(UnsupportedShapes, match="kernel.experts=selective_v1: decode batch 4 x top-8 reaches 32"):
        check_shapes(job)


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("shapes", [replace(base, intermediate=base.intermediate * 4 // tp)
                                    for base in (TINY, REAL_TP4) for tp in (1, 2, 4)])
def test_the_model_shapes_at_tp_1_2_4_are_served(name, shapes):
    variant = kernels.get("experts", name)
    assert variant.problems(shapes, variant.make_params()) == []
