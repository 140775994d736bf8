"""The reimplemented contest gate on synthetic logits, where every outcome is known."""
import math

import pytest
import torch

from pipeline.evaluation.logit_validation import CONTEST_TOL_MAP, logit_validation, validate_position

V = 1000


def logits(steps: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(steps, 1, V, generator=torch.Generator().manual_seed(seed)) * 3


def replay(actual: torch.Tensor, prompt_len: int, calls: list):
    """A generate_fn returning the positions of `actual` after the given prefix."""

    def generate_fn(ids: torch.Tensor) -> torch.Tensor:
        calls.append(ids.shape[1])
        return actual[ids.shape[1] - prompt_len :]

    return generate_fn


def test_identical_logits_pass_in_one_call():
    expected, calls = logits(6), []
    result = logit_validation(torch.zeros(1, 3, dtype=torch.long), replay(expected.clone(), 3, calls), expected)
    assert result.passed and len(result.positions) == 6 and calls == [3]
    assert result.max_errors == {"top_all": 0.0, "top_1000": 0.0, "top_50": 0.0, "top_5": 0.0}


def test_constant_shift_is_removed():
    expected = logits(4)
    result = logit_validation(torch.zeros(1, 2, dtype=torch.long), replay(expected + 7.5, 2, []), expected)
    assert result.passed and result.max_errors["top_all"] == 0.0


def test_large_error_fails():
    expected = logits(4)
    noisy = expected * (1 + 0.2 * torch.randn(expected.shape, generator=torch.Generator().manual_seed(1)))
    result = logit_validation(torch.zeros(1, 2, dtype=torch.long), replay(noisy, 2, []), expected)
    assert not result.passed
    assert result.max_errors["top_all"] > CONTEST_TOL_MAP[None][1]


def test_divergence_is_teacher_forced_and_judged_by_the_gap():
    expected = logits(5)
    top = expected[2, 0].topk(2).indices
    expected[2, 0, top[1]] = expected[2, 0, top[0]] - 0.0002  # a near tie in the reference
    flipped = expected.clone()
    flipped[2, 0, top[1]] = expected[2, 0, top[0]] + 0.0002  # the candidate breaks it the other way
    calls = []
    result = logit_validation(torch.zeros(1, 4, dtype=torch.long), replay(flipped, 4, calls), expected)
    assert result.passed and result.divergences == [2]
    assert calls == [4, 7]  # regenerated from the prompt plus the expected tokens 0..2
    wide = expected.clone()
    wide[2, 0, top[1]] = expected[2, 0, top[0]] + 0.01  # a flip by more than the divergence tolerance
    assert not logit_validation(torch.zeros(1, 4, dtype=torch.long), replay(wide, 4, []), expected).passed


def test_minus_inf_entries_are_dropped():
    expected = logits(1)[0, 0]
    actual = expected.clone()
    expected[5], actual[5] = -float("inf"), 123.0
    assert validate_position(expected, actual, CONTEST_TOL_MAP, 0.001, True, 0).passed


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("where", ["actual", "expected"])
def test_nan_and_plus_inf_fail_as_in_torch_neuronx(value, where):
    """torch_neuronx's preprocess_logits drops only -inf entries: one NaN or +inf logit fails the position."""
    expected = logits(1)[0, 0]
    actual = expected.clone()
    (actual if where == "actual" else expected)[5] = value
    for remove_shift in (True, False):
        assert not validate_position(expected, actual, CONTEST_TOL_MAP, 0.001, remove_shift, 0).passed


def test_one_nan_logit_fails_the_gate_and_shows_in_the_max_errors():
    expected = logits(3)
    actual = expected.clone()
    actual[1, 0, 7] = float("nan")  # one vocabulary entry of one position
    result = logit_validation(torch.zeros(1, 2, dtype=torch.long), replay(actual, 2, []), expected)
    assert not result.passed and [p.passed for p in result.positions] == [True, False, True]
    assert math.isnan(result.max_errors["top_all"])


def _one_error(expected: torch.Tensor, error: float) -> torch.Tensor:
    """`expected` with one low logit moved by `error` x max|expected| (shift removal off: the error is exact)."""
    actual = expected.clone()
    low = int(expected.argmin())
    actual[low] += error * float(expected.abs().max())
    return actual


@pytest.mark.parametrize(
    "rtol,error,passes",
    [
        (0.05, 0.0549, True),  # rounded to 2 places: 0.05
        (0.05, 0.0551, False),
        (0.025, 0.0254, True),  # 3 places (0.025); rounding to 2 places (0.03) failed it
        (0.025, 0.0256, False),
        (0.15, 0.1540, True),  # 2 places (0.15); rounding to 1 place (0.2) failed it
        (0.12, 0.1300, False),  # 2 places (0.13); rounding to 1 place (0.1) passed it
        (1e-05, 0.0000104, True),  # 5 places
        (1.5e-05, 0.0000154, True),  # 6 places: 0.000015
        (1.5e-05, 0.0000156, False),
    ],
)
def test_errors_are_rounded_to_the_decimals_torch_neuronx_uses(rtol, error, passes):
    expected = logits(1, seed=3)[0, 0].double()
    tol_map = {None: (0.0, rtol)}
    check = validate_position(expected, _one_error(expected, error), tol_map, 0.001, False, 0)
    assert check.passed is passes


def test_margin_and_its_drift_measure_how_close_a_flip_came():
    expected = torch.zeros(V)
    expected[[10, 20, 30]] = torch.tensor([5.0, 4.0, 1.0])  # top-1 margin 1.0
    actual = expected.clone()
    actual[20] += 0.25  # the runner-up closes a quarter of the gap: no flip yet
    check = validate_position(expected, actual, CONTEST_TOL_MAP, 0.001, remove_shift=False, position=0)
    assert check.margin == 1.0 and check.margin_drift == pytest.approx(0.25) and not check.diverged
    actual[20] += 1.0  # drift 1.25 > margin 1.0: the token flips
    flipped = validate_position(expected, actual, CONTEST_TOL_MAP, 0.001, remove_shift=False, position=1)
    assert flipped.diverged and flipped.margin_drift > flipped.margin
