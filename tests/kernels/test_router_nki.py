"""router.nki_topk through the CPU interpreter against NxDI's router numerics (the baseline): decode and
context token counts at tiny and real per-rank shapes, the deterministic tie rule, the contract's dtypes,
both targets, and the shapes it rejects."""
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

import kernels
from kernels.executors import interpret
from kernels.router.baseline import router_reference
from tests.kernels.shapes import REAL_TP4, TINY

VARIANT = kernels.get("router", "nki_topk")


def make_inputs(shapes, tokens: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, shapes.hidden, generator=g).to(shapes.dtype)
    weight = torch.randn(shapes.experts, shapes.hidden, generator=g) * 1.5 * shapes.hidden**-0.5
    return x, weight


def run(x, weight, top_k: int, target: str = "trn2", **knobs):
    return interpret(VARIANT, VARIANT.make_params(knobs), (x, weight, top_k), target)


def bf16_ulps(actual: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """|actual - expected| in units of the last place of each expected bf16 value."""
    exponent = torch.floor(torch.log2(expected.float().abs()))
    return (actual.float() - expected.float()).abs() / 2.0 ** (exponent - 7)


def stable_top_k(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """The kernel's rule: largest logits first, ties broken towards the lower expert id."""
    return torch.sort(logits, dim=1, descending=True, stable=True).indices[:, :top_k]


@pytest.mark.parametrize("shapes,tokens,knobs", [
    (TINY, 1, {}), (TINY, 4, {}), (TINY, 200, {}), (TINY, 200, {"token_tile": 48}),
    (REAL_TP4, 1, {}), (REAL_TP4, 3, {}), (REAL_TP4, 130, {}),
], ids=["tiny-1", "tiny-4", "tiny-200", "tiny-200-tile48", "real-1", "real-3", "real-130"])
def test_matches_the_baseline(shapes, tokens, knobs):
    x, weight = make_inputs(shapes, tokens)
    (affinities, index), traces = run(x, weight, shapes.top_k, **knobs)
    expected_affinities, expected_index = router_reference(x, weight, shapes.top_k)
    assert affinities.dtype == torch.bfloat16 and index.dtype == torch.int64
    assert affinities.shape == index.shape == (tokens, shapes.top_k)
    assert torch.equal(index, expected_index)
    assert bf16_ulps(affinities, expected_affinities).max() <= 2
    assert (affinities != expected_affinities).float().mean() < 0.01  # fp32 vs float64 softmax: rare flips
    assert traces[0].total_macs == tokens * shapes.hidden * shapes.experts


def test_fewer_than_eight_experts_per_token():
    x, weight = make_inputs(TINY, 5)
    (affinities, index), _ = run(x, weight, 4)
    expected_affinities, expected_index = router_reference(x, weight, 4)
    assert torch.equal(index, expected_index) and bf16_ulps(affinities, expected_affinities).max() <= 2


def test_tied_experts_inside_the_top_k_come_lower_id_first():
    x, weight = make_inputs(TINY, 2)
    weight[17] = weight[3] = weight[3] + 0.5 * x[0].float() / x[0].float().norm()  # both among the largest
    (affinities, index), _ = run(x, weight, 8)
    expected_affinities, expected_index = router_reference(x, weight, 8)
    logits = F.linear(x.float(), weight)
    assert torch.equal(index, stable_top_k(logits, 8))
    assert sorted(index[0].tolist()) == sorted(expected_index[0].tolist())
    slots = index[0].tolist()
    assert slots.index(17) == slots.index(3) + 1
    assert affinities[0, slots.index(3)] == affinities[0, slots.index(17)]


def test_a_tie_at_the_cut_keeps_the_lower_id_every_time():
    x, weight = make_inputs(TINY, 1)
    logits = F.linear(x.float(), weight)[0]
    eighth = logits.argsort(descending=True)[7]
    twin = int(logits.argsort(descending=True)[20])
    weight[twin] = weight[eighth]  # experts `eighth` and `twin` now tie for the last place
    winner = min(int(eighth), twin)
    first, _ = run(x, weight, 8)
    again, _ = run(x, weight, 8)
    assert torch.equal(first[1], again[1]) and torch.equal(first[0], again[0])
    assert first[1][0, 7] == winner and max(int(eighth), twin) not in first[1][0].tolist()
    assert torch.equal(first[1], stable_top_k(F.linear(x.float(), weight), 8))


def test_all_logits_equal_picks_experts_zero_to_seven_with_equal_weight():
    x, _ = make_inputs(TINY, 3)
    (affinities, index), _ = run(x, torch.zeros(TINY.experts, TINY.hidden), 8)
    assert torch.equal(index, torch.arange(8).expand(3, 8))
    expected_affinities, _ = router_reference(x, torch.zeros(TINY.experts, TINY.hidden), 8)
    assert torch.equal(affinities, expected_affinities) and torch.all(affinities == 0.125)


def test_trn3_target():
    x, weight = make_inputs(REAL_TP4, 2)
    (affinities, index), traces = run(x, weight, 8, target="trn3")
    assert traces[0].target == "trn3"
    assert torch.equal(index, router_reference(x, weight, 8)[1])


REJECTED = [
    (replace(TINY, experts=4, top_k=2), {}, "the kernel needs 8..512"),
    (replace(TINY, experts=1024), {}, "the kernel needs 8..512"),
    (replace(TINY, top_k=9), {}, "one max8 pass serves top-1..top-8"),
    (replace(TINY, hidden=200), {}, "not a multiple of 128"),
    (TINY, {"token_tile": 129}, "token_tile=129 must be in 1..128"),
]


@pytest.mark.parametrize("shapes,knobs,reason", REJECTED, ids=[r[2] for r in REJECTED])
def test_unservable_shapes_are_rejected_with_a_reason(shapes, knobs, reason):
    assert any(reason in problem for problem in VARIANT.problems(shapes, VARIANT.make_params(knobs)))


@pytest.mark.parametrize("shapes", [replace(base, intermediate=base.intermediate * 4 // tp)
                                    for base in (TINY, REAL_TP4) for tp in (1, 2, 4)])
def test_the_model_shapes_at_tp_1_2_4_are_served(shapes):
    assert VARIANT.problems(shapes, VARIANT.make_params()) == []
