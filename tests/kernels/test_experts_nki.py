"""The NKI decode expert variants (selective_v1, grouped_v2) through the CPU interpreter against the baseline's
selective-loading numerics: tiny and real per-rank shapes, batches whose tokens share experts, every tunable,
both targets; and what the traces must show: only the selected experts' weights move (indirect DMA from the
full per-rank tensors, passed without a copy), loads run ahead of compute with bufs >= 2, on-chip use stays
within the budget the shape checks assume, and unservable shapes are rejected with a reason."""
from collections import Counter
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

import kernels
import nki_cpu
from kernels.executors import make_executor
from kernels.experts.baseline import experts_reference
from kernels.experts.nki_tiling import equal_chunk, tiling
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
    with nki_cpu.recording() as traces:
        out = make_executor("interp", target)(variant, variant.make_params(knobs), (x, affinities, index, weights))
    return out, traces


def assert_matches_baseline(name: str, out, x, affinities, index, weights) -> None:
    expected = experts_reference(x, affinities, index, weights)
    assert out.shape == expected.shape and out.dtype == expected.dtype
    error = (out.float() - expected.float()).abs().max()
    assert error <= kernels.get("experts", name).rtol * expected.float().abs().max()


@pytest.fixture(scope="module")
def real_weights() -> ExpertWeights:
    return make_weights(REAL_TP4)


def weight_loads(trace):
    """(tensor, HBM byte range read, bytes moved, SBUF allocation written) of every indirect weight DMA."""
    loads = []
    for ins in trace.instructions:
        if ins.op != "dma_copy" or not any(o.role == "index" for o in ins.operands):
            continue
        src = next(o for o in ins.operands if o.role == "src")
        loads.append(("gate_up" if len(src.shape) == 2 else "down", ins.reads[0].byte_range, ins.dma_bytes,
                      ins.writes[0].alloc))
    return loads


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
@pytest.mark.parametrize("name", VARIANTS)
def test_real_shapes_batch_with_overlapping_selections(name, real_weights):
    x, affinities = make_tokens(REAL_TP4, 4)
    index = torch.stack([torch.arange(8), torch.arange(4, 12), torch.arange(8).flip(0), torch.arange(120, 128)])
    out, _ = run(name, x, affinities, index, real_weights)
    assert_matches_baseline(name, out, x, affinities, index, real_weights)


@pytest.mark.parametrize("knobs", [
    {"intermediate_tile": 64}, {"intermediate_tile": 48}, {"k_tiles_per_dma": 1}, {"k_tiles_per_dma": 3},
    {"i_chunks_per_dma": 2}, {"bufs": 1}, {"bufs": 3, "k_tiles_per_dma": 2, "intermediate_tile": 64},
], ids=lambda knobs: ",".join(f"{k}={v}" for k, v in knobs.items()))
def test_grouped_v2_tunables_keep_the_numerics(knobs):
    x, affinities = make_tokens(MEDIUM, 2)
    index, weights = distinct_index(MEDIUM, 2), make_weights(MEDIUM)
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
    x, affinities = make_tokens(s, 2)
    index, weights = distinct_index(s, 2), make_weights(s)
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
def test_grouped_v2_issues_loads_bufs_minus_one_ahead(bufs):
    x, affinities = make_tokens(MEDIUM, 1)
    index, weights = distinct_index(MEDIUM, 1), make_weights(MEDIUM)
    _, traces = run("grouped_v2", x, affinities, index, weights, bufs=bufs, k_tiles_per_dma=1)
    loads = weight_loads(traces[0])
    ops = [ins for ins in traces[0].instructions if ins.op in ("dma_copy", "nc_matmul")]
    first_matmul = next(i for i, ins in enumerate(ops) if ins.op == "nc_matmul")
    issued_before = sum(1 for ins in ops[:first_matmul] if any(o.role == "index" for o in ins.operands))
    assert issued_before == bufs
    gate_up_buffers = [alloc for tensor, _, _, alloc in loads if tensor == "gate_up"]
    assert len(set(gate_up_buffers)) == bufs
    if bufs > 1:  # consecutive loads land in different buffers, so a load never waits for the previous one's use
        assert all(a != b for a, b in zip(gate_up_buffers, gate_up_buffers[1:]))


@pytest.mark.parametrize("name,knobs", [("selective_v1", {}), ("grouped_v2", {}), ("grouped_v2", {"bufs": 3})])
@pytest.mark.parametrize("shapes", [MEDIUM, replace(TINY, batch=3)], ids=["medium", "tiny_b3"])
def test_on_chip_use_within_the_checked_budget_and_macs_as_baseline(name, knobs, shapes):
    x, affinities = make_tokens(shapes, shapes.batch)
    index, weights = distinct_index(shapes, shapes.batch), make_weights(shapes)
    _, traces = run(name, x, affinities, index, weights, **knobs)
    params = kernels.get("experts", name).make_params(knobs)
    loads = (None, None, 1) if name == "selective_v1" else (params.k_tiles_per_dma, params.i_chunks_per_dma,
                                                             params.bufs)
    plan = tiling(shapes, equal_chunk(shapes.intermediate, params.intermediate_tile), *loads)
    trace = traces[0]
    assert trace.peak_sbuf_bytes <= plan.sbuf_bytes()
    assert trace.peak_psum_bytes <= 4 * 2048  # two projections' partial sums, two experts in flight
    assert trace.total_macs == baseline_macs("experts", Phase.TOKEN, shapes)


REJECTED = [
    (replace(TINY, batch=4), {}, "batch * top_k < experts"),
    (replace(TINY, hidden=200), {}, "not a multiple of 128"),
    (replace(TINY, intermediate=257), {}, "does not split into 3 equal chunks"),
    (TINY, {"intermediate_tile": 129}, "must be in 1..128"),
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
