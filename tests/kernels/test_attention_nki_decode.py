"""kernel.attention=nki_decode through the CPU interpreter against the baseline's torch reference: rows at
their own positions, KV-bucket boundaries, the cache write, tiling knobs, targets, the trace's matrix
products and HBM traffic, and the shapes it refuses."""
import dataclasses
import math

import pytest
import torch

import kernels
import nki_cpu
from kernels.attention.launch import decode_arguments
from kernels.attention.nki_decode import KERNELS
from kernels.examples import example_call
from kernels.executors import make_executor
from kernels.macs import baseline_macs
from kernels.nki_support import nki_module
from kernels.slots import KernelSet
from kernels.types import Phase
from model.qwen3_moe import rope_tables
from tests.kernels.shapes import REAL_TP4, TINY

VARIANT = kernels.get("attention", "nki_decode")
THETA = 1_000_000.0  # the RoPE base kernels.examples uses


def decode_call(shapes, positions, seed=0, max_seq=None):
    """Example decode inputs with row b at positions[b] (cos/sin to match), the cache optionally longer
    than the KV bucket (its extra slots random too)."""
    x, weights, inputs = example_call("attention", Phase.TOKEN, shapes, seed, transposed=True).args
    pos = torch.tensor(positions).reshape(-1, 1)
    cos, sin = rope_tables(pos, shapes.head_dim, THETA, shapes.dtype)
    caches = {}
    for name in ("k_cache", "v_cache"):
        cache = getattr(inputs, name)
        if max_seq is not None:
            extra = torch.randn(*cache.shape[:2], max_seq - cache.shape[2], cache.shape[3],
                                generator=torch.Generator().manual_seed(seed + 1)).to(cache.dtype)
            cache = torch.cat([cache, extra], dim=2)
        caches[name] = cache
    return x, weights, dataclasses.replace(inputs, positions=pos, cos=cos, sin=sin, **caches)


def run_kernel(args, params=None, target="trn2"):
    return make_executor("interp", target)(VARIANT, params or VARIANT.make_params(), args)


def assert_close(actual, expected):
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    assert (actual.float() - expected.float()).abs().max() <= VARIANT.rtol * expected.float().abs().max()


def check(shapes, positions, params=None, target="trn2", max_seq=None, seed=0):
    """The kernel's output and caches against the reference's on identical inputs; returns both inputs."""
    kernel_args = decode_call(shapes, positions, seed, max_seq)
    reference_args = decode_call(shapes, positions, seed, max_seq)
    assert_close(run_kernel(kernel_args, params, target), VARIANT.reference(*reference_args))
    for name in ("k_cache", "v_cache"):
        assert_close(getattr(kernel_args[2], name), getattr(reference_args[2], name))
    return kernel_args, reference_args


def with_(shapes, **changes):
    return dataclasses.replace(shapes, **changes)


@pytest.mark.parametrize("shapes,positions", [
    pytest.param(TINY, [63], id="tiny-last-slot-of-bucket"),
    pytest.param(TINY, [0], id="tiny-empty-prior"),
    pytest.param(with_(TINY, batch=3), [63, 0, 17], id="tiny-rows-at-own-positions"),
    pytest.param(REAL_TP4, [127], id="real-last-slot-of-bucket"),
    pytest.param(REAL_TP4, [0], id="real-empty-prior"),
    pytest.param(with_(REAL_TP4, kv_lengths=(256,)), [200], id="real-kv256"),
    pytest.param(with_(REAL_TP4, batch=2, kv_lengths=(640,)), [639, 301], id="real-kv640-rows-at-own-positions"),
])
def test_matches_reference(shapes, positions):
    check(shapes, positions)


@pytest.mark.parametrize("degree", [1, 2])
def test_matches_reference_at_the_slices_tp_1_and_2_shapes(degree):
    """Qwen3-30B-A3B's 32 q / 4 KV heads split over 1 or 2 ranks: groups of 8 q heads, 4 or 2 of them per rank
    (TP 4 has one), at the last position of the 640 bucket."""
    check(with_(REAL_TP4, q_heads=32 // degree, kv_heads=4 // degree, kv_lengths=(640,)), [639])


@pytest.mark.slow
def test_error_stays_within_rtol_over_seeds_and_positions():
    """The declared rtol against fresh weights, inputs and row positions at real shapes, longest bucket."""
    shapes = with_(REAL_TP4, batch=2, kv_lengths=(640,))
    generator = torch.Generator().manual_seed(0)
    for seed in range(1, 9):
        check(shapes, torch.randint(0, 640, (2,), generator=generator).tolist(), seed=seed)


def test_cache_is_written_at_each_rows_position_and_nowhere_else():
    shapes, positions = with_(TINY, batch=3), [63, 0, 17]
    kernel_args, reference_args = check(shapes, positions, max_seq=80)
    untouched = decode_call(shapes, positions, max_seq=80)[2]
    written = torch.zeros(untouched.k_cache.shape[:3], dtype=torch.bool)
    for b, p in enumerate(positions):
        written[b, :, p] = True
    for name in ("k_cache", "v_cache"):
        cache, before = getattr(kernel_args[2], name), getattr(untouched, name)
        assert torch.equal(cache[~written], before[~written])
        assert (cache[written] != before[written]).any(dim=-1).all()
        assert_close(cache[written], getattr(reference_args[2], name)[written])


@pytest.mark.parametrize("cores", [1, 2])
def test_new_kv_entry_returns_the_rows_the_in_place_entry_writes(cores):
    """decode_attention_new_kv (for NxDI's KV-cache manager) is decode_attention with the cache read only: the same
    output and the same instructions bit for bit, and its new k/v are the rows decode_attention writes."""
    shapes, positions = with_(TINY, batch=3), [63, 0, 17]
    module = nki_module(KERNELS)
    params = VARIANT.make_params({"cores": cores})
    runs = {}
    for entry in ("decode_attention", "decode_attention_new_kv"):
        x, w, inputs = decode_call(shapes, positions, max_seq=80)
        args = decode_arguments(x, w.q_proj.T, w.k_proj.T, w.v_proj.T, w.o_proj.T, w.q_norm, w.k_norm, inputs.cos,
                                inputs.sin, inputs.positions, inputs.k_cache, inputs.v_cache, inputs.kv_len, w.eps,
                                params)
        runs[entry] = nki_cpu.run_kernel(getattr(module, entry), *args, grid=cores), inputs
    (in_place, written), (new_kv, read) = runs["decode_attention"], runs["decode_attention_new_kv"]
    out, k_new, v_new = new_kv.outputs
    assert torch.equal(out, in_place.outputs)
    untouched = decode_call(shapes, positions, max_seq=80)[2]
    rows = torch.tensor(positions)
    for name, new in (("k_cache", k_new), ("v_cache", v_new)):
        assert torch.equal(getattr(read, name), getattr(untouched, name))  # read only
        cache = getattr(written, name)
        assert new.shape == (3, shapes.kv_heads, 1, shapes.head_dim) and new.dtype == cache.dtype
        assert torch.equal(new[:, :, 0], cache[torch.arange(3), :, rows])
    ops = [[i.op for i in run.trace.instructions] for run in (in_place, new_kv)]
    assert ops[0] == ops[1]


def test_tolerance_catches_a_mask_off_by_one():
    """Fed position p + 1 (cos/sin of p), the kernel also attends to the stale slot p: the check fails."""
    shapes, position = TINY, 40
    x, weights, inputs = decode_call(shapes, [position])
    shifted = dataclasses.replace(inputs, positions=inputs.positions + 1)
    actual = run_kernel((x, weights, shifted))
    expected = VARIANT.reference(*decode_call(shapes, [position]))
    assert (actual.float() - expected.float()).abs().max() > VARIANT.rtol * expected.float().abs().max()


@pytest.mark.parametrize("shapes,params", [
    pytest.param(with_(TINY, kv_lengths=(100,)), dict(kv_tile=32), id="tiny-kv100-tile32"),
    pytest.param(with_(TINY, kv_lengths=(100,)), dict(kv_tile=48, q_chunks=2, out_heads_early=0),
                 id="tiny-kv100-tile48-tail-partition"),
    pytest.param(TINY, dict(cores=1), id="tiny-one-core"),
    pytest.param(with_(REAL_TP4, kv_lengths=(300,)), dict(kv_tile=64, q_chunks=2, out_heads_early=8),
                 id="real-kv300-tile64"),
    pytest.param(with_(REAL_TP4, kv_lengths=(640,)), dict(cache_position=0, out_heads_mid=0),
                 id="real-kv640-cache-first"),
    pytest.param(with_(TINY, batch=3), dict(cache_position=1, kv_tile=16), id="tiny-batch3-cache-between"),
    pytest.param(with_(REAL_TP4, batch=2), dict(cores=1), id="real-one-core-batch2"),
])
def test_tiling_knobs(shapes, params):
    check(shapes, [shapes.kv_lengths[0] - 1] * shapes.batch, params=VARIANT.make_params(params))


@pytest.mark.parametrize("shapes", [pytest.param(TINY, id="tiny"), pytest.param(REAL_TP4, id="real_tp4")])
def test_runs_within_trn3_limits(shapes):
    check(shapes, [shapes.kv_lengths[0] - 1], target="trn3")


def test_scale_multiply_is_the_baselines_division():
    """The kernel scales bf16 scores by the fp32 constant 1/sqrt(D) (the engines have no divide); for every
    finite bf16 score and every supported D this rounds exactly as the baseline's `scores / sqrt(D)`."""
    scores = torch.arange(-2**15, 2**15, dtype=torch.int32).to(torch.int16).view(torch.bfloat16)
    scores = scores[torch.isfinite(scores)]
    for head_dim in (2, 4, 8, 16, 32, 64, 128):
        multiplied = (scores.float() * float(torch.tensor(1.0 / math.sqrt(head_dim)))).to(torch.bfloat16)
        divided = scores / math.sqrt(head_dim)
        assert torch.equal(multiplied.view(torch.int16), divided.view(torch.int16)), head_dim


def attention_macs(shapes):
    """MACs of the scores and value products (cached positions plus the active token)."""
    return 2 * shapes.batch * shapes.q_heads * (shapes.kv_lengths[0] + 1) * shapes.head_dim


@pytest.mark.parametrize("cores", [1, 2])
def test_trace_does_the_baselines_matrix_products_and_touches_hbm_only_for_io(cores):
    """No helper matmuls (transposes count no MACs): the projections once, the attention products once per
    core (each core attends with every head, so that its o_proj columns need no second exchange); the only
    HBM writes are the output and the cache slots: scores, probabilities and intermediates never leave the
    chip."""
    shapes = with_(REAL_TP4, batch=2)
    with nki_cpu.recording() as traces:
        run_kernel(decode_call(shapes, [127, 5]), VARIANT.make_params({"cores": cores}))
    (trace,) = traces
    assert trace.total_macs == baseline_macs("attention", Phase.TOKEN, shapes) + (cores - 1) * attention_macs(shapes)
    hbm_writes = [i for i in trace.instructions if i.op.startswith("dma") and i.operands[0].buffer == "hbm"]
    cache_slots = 2 * shapes.batch * shapes.kv_heads
    assert len(hbm_writes) == cache_slots + cores
    assert sum(i.dma_bytes for i in hbm_writes) == (cache_slots * shapes.head_dim + shapes.batch * shapes.hidden) * 2


def test_the_cores_share_the_weight_and_cache_bytes():
    """Every weight byte and every cached row is read from HBM once, by one of the two cores, each core
    reading half of the bytes within a few percent; the cores exchange partial sums and cache rows on chip."""
    shapes = REAL_TP4
    with nki_cpu.recording() as traces:
        run_kernel(decode_call(shapes, [127]))
    (trace,) = traces
    kv = shapes.kv_lengths[0]
    weights = (shapes.hidden * (shapes.q_heads + 2 * shapes.kv_heads) * shapes.head_dim
               + shapes.q_heads * shapes.head_dim * shapes.hidden) * 2
    cache = 2 * shapes.kv_heads * kv * shapes.head_dim * 2
    small = (shapes.hidden + 4 * shapes.head_dim + 2) * 2   # x, q_norm, k_norm, cos, sin, position
    reads = {0: 0, 1: 0}
    for i in trace.instructions:
        if i.op == "dma_copy":
            reads[i.program_id[0]] += sum(i.dma_bytes for r in i.reads[:1] if r.buffer == "hbm")
    assert sum(reads.values()) == weights + cache + 2 * small
    assert abs(reads[0] - reads[1]) < 0.02 * sum(reads.values())
    assert {i.program_id[0] for i in trace.instructions if i.op == "sendrecv"} == {0, 1}


def test_serves_token_generation_only():
    slot = KernelSet.from_choices({"attention": "nki_decode"}).slots["attention"]
    assert slot.resolve(Phase.TOKEN)[0].name == "nki_decode"
    assert slot.resolve(Phase.CONTEXT)[0].name == "baseline"
    context = example_call("attention", Phase.CONTEXT, TINY, transposed=True).args
    with pytest.raises(ValueError, match="token generation"):
        VARIANT.nki(*context, params=VARIANT.make_params(), launch=None)


@pytest.mark.parametrize("changes,reason", [
    (dict(head_dim=256), "head_dim 256 must be a power of two"),
    (dict(head_dim=96), "head_dim 96 must be a power of two"),
    (dict(hidden=2000), "hidden size 2000 must be a multiple of 128"),
    (dict(q_heads=6, kv_heads=4), "6 q heads are not a whole number of groups of 4 KV heads"),
    (dict(q_heads=128, kv_heads=8), "128 q + 8 k heads exceed the 128 rows"),
    (dict(batch=64), "batch 64 x 10 q/k/v heads"),
    (dict(batch=160, q_heads=1, kv_heads=1), "batch 160 exceeds 128"),
    (dict(kv_lengths=(128, 4096)), "KV bucket 4096"),
])
def test_unsupported_shapes_are_rejected_with_a_reason(changes, reason):
    problems = VARIANT.problems(with_(REAL_TP4, **changes), VARIANT.make_params())
    assert any(reason in p for p in problems), problems


@pytest.mark.parametrize("params,reason", [
    (dict(cores=3), "cores=3 must be 1 or 2"),
    (dict(kv_tile=0), "kv_tile=0 must be in [1, 128]"),
    (dict(q_chunks=0), "q_chunks=0 must be >= 1"),
    (dict(out_heads_early=-2), "out_heads_early=-2 must be >= 0"),
    (dict(cache_position=3), "cache_position=3 must be 0, 1 or 2"),
    (dict(out_heads_mid=-1), "out_heads_mid=-1 must be >= 0"),
    (dict(kv_tile=1), "640 probability chunks of 8 heads do not fit one PSUM bank"),
])
def test_unsupported_knobs_are_rejected_with_a_reason(params, reason):
    problems = VARIANT.problems(with_(REAL_TP4, kv_lengths=(640,)), VARIANT.make_params(params))
    assert any(reason in p for p in problems), problems


def test_resident_weights_must_fit_sbuf():
    slice_tp1 = with_(REAL_TP4, q_heads=32, kv_heads=4)
    assert VARIANT.problems(slice_tp1, VARIANT.make_params()) == []
    (problem,) = VARIANT.problems(slice_tp1, VARIANT.make_params({"cores": 1}))
    assert "SBUF" in problem and "cores=1" in problem


@pytest.mark.parametrize("degree", [1, 2, 4])
def test_serves_the_tiny_and_slice_models_at_each_tp_degree(degree):
    for shapes, q_heads, kv_heads in ((TINY, 8, 4), (REAL_TP4, 32, 4)):
        per_rank = with_(shapes, q_heads=q_heads // degree, kv_heads=kv_heads // degree)
        assert VARIANT.problems(per_rank, VARIANT.make_params()) == []


def estimate_ratios(shapes, params=None):
    """Cost-model est./floor on trn2 and trn3 (LNC=2) of one kernel launch at these shapes."""
    from nki_cpu import cost

    with nki_cpu.recording() as traces:
        run_kernel(decode_call(shapes, [shapes.kv_lengths[0] - 1]), params)
    (trace,) = traces
    ratios = {}
    for target in ("trn2", "trn3"):
        est = cost.estimate(trace, target=target, lnc=2)
        ratios[target] = est.time_ns / est.floor_ns
    return ratios


def test_estimate_stays_near_the_floor_at_real_shapes():
    """Regression guard on the cost model's estimate at the real TP=4 shapes, smallest and largest bucket
    (issue 4 asks for 1.5x; what bounds this kernel above it is in the variant's report). Two cores must
    beat one: each physical core streams at most half of the logical core's HBM bandwidth."""
    limits = {128: {"trn2": 1.80, "trn3": 2.35}, 640: {"trn2": 1.85, "trn3": 2.50}}
    for kv, limit in limits.items():
        ratios = estimate_ratios(with_(REAL_TP4, kv_lengths=(kv,)))
        assert all(ratios[t] < limit[t] for t in limit), (kv, ratios)
    one_core = estimate_ratios(REAL_TP4, VARIANT.make_params({"cores": 1}))
    two_cores = estimate_ratios(REAL_TP4)
    assert all(two_cores[t] < 0.8 * one_core[t] for t in two_cores), (one_core, two_cores)
