"""The contest's accuracy gate: torch_neuronx's `logit_validation` (torch_neuronx/testing/validation.py),
reimplemented (greedy, teacher-forced, per-position tolerance map, divergence tolerance, shift removal).

For every generated position the actual logits are compared with the expected ones. Generation runs until
the first position whose greedy token differs from the expected one; every position up to and including it
is validated; then the expected tokens up to that position are appended to the input (teacher forcing) and
generation resumes, until all expected positions are validated.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

TolMap = dict[int | None, tuple[float, float]]  # top_k (None: all) -> (atol, rtol)

CONTEST_TOL_MAP: TolMap = {None: (1e-5, 0.05), 1000: (1e-5, 0.03), 50: (1e-5, 0.03), 5: (1e-5, 0.03)}
CONTEST_DIVERGENCE_TOL = 0.001


@dataclass
class PositionResult:
    position: int
    errors: dict[str, float]  # "top_all" / "top_1000" / ... -> error, rounded to rtol's decimals (NaN: a NaN logit)
    passed_tolerances: bool
    diverged: bool
    divergence_gap: float | None  # |actual[actual_argmax] - actual[expected_argmax]| when diverged
    passed: bool
    margin: float = math.inf  # expected top-1 minus top-2 logit: how sure the reference is
    margin_drift: float = 0.0  # how far the actual logits moved that gap; a drift above the margin flips the token


@dataclass
class ValidationResult:
    passed: bool
    positions: list[PositionResult] = field(default_factory=list)
    generate_calls: int = 0

    @property
    def divergences(self) -> list[int]:
        return [p.position for p in self.positions if p.diverged]

    @property
    def min_margin(self) -> float:
        return min((p.margin for p in self.positions), default=math.inf)

    @property
    def max_margin_drift(self) -> float:
        return max((p.margin_drift for p in self.positions), default=0.0)

    @property
    def max_errors(self) -> dict[str, float]:
        keys = self.positions[0].errors if self.positions else {}
        return {k: nan_max(p.errors[k] for p in self.positions) for k in keys}

    def status(self) -> str:
        failed = [p.position for p in self.positions if not p.passed]
        if self.passed:
            return f"passed: {len(self.positions)} positions, {len(self.divergences)} tolerated divergence(s)"
        return f"failed at position(s) {failed[:10]} of {len(self.positions)}"


def nan_max(values: Iterable[float]) -> float:
    """The largest value, NaN if any is NaN (Python's max() would hide a NaN after the first element)."""
    return float(torch.tensor(list(values), dtype=torch.float64).max())


def _decimals(rtol: float) -> int:
    """The decimal places an error is rounded to before it is compared with `rtol`: the digits after the point
    of `str(rtol)` plus the negative exponent of its scientific form (0.05 -> 2, 0.025 -> 3, 0.15 -> 2,
    1e-05 -> 5, 1.5e-05 -> 6). Mirrors torch_neuronx/testing/validation.py `n_digits_past_decimal`, which
    `custom_allclose` applies to rtol."""
    mantissa, _, exponent = str(rtol).partition("e")
    return len(mantissa.partition(".")[2]) + max(0, -int(exponent or 0))


def _remove_shift(actual: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """Fit actual ~ a * expected + shift by least squares and subtract only the shift."""
    e_mean, a_mean = expected.mean(), actual.mean()
    variance = ((expected - e_mean) ** 2).sum()
    slope = ((expected - e_mean) * (actual - a_mean)).sum() / variance if variance > 0 else torch.tensor(1.0)
    return actual - (a_mean - slope * e_mean)


def validate_position(
    expected: torch.Tensor, actual: torch.Tensor, tol_map: TolMap, divergence_tol: float, remove_shift: bool, position: int
) -> PositionResult:
    """One position's vocabulary logits [V] (float64 arithmetic)."""
    # torch_neuronx/testing/validation.py `preprocess_logits`: only entries that are -inf in either tensor (a
    # prohibited token) are dropped. A NaN or +inf stays, turns the shift and the errors into NaN or inf, and
    # fails the position, as there.
    kept = (expected != -math.inf) & (actual != -math.inf)
    e, a = expected[kept].double(), actual[kept].double()
    expected_argmax, actual_argmax = int(e.argmax()), int(a.argmax())
    shifted = _remove_shift(a, e) if remove_shift else a
    errors, tolerated = {}, True
    for top_k, (atol, rtol) in tol_map.items():
        chosen = torch.arange(e.numel()) if top_k is None else torch.topk(e, min(top_k, e.numel())).indices
        scale = e[chosen].abs().max()
        error = float((((shifted[chosen] - e[chosen]).abs() - atol) / scale).max())
        error = round(error, _decimals(rtol))
        errors["top_all" if top_k is None else f"top_{top_k}"] = error
        tolerated &= error <= rtol
    diverged = expected_argmax != actual_argmax
    gap = float((a[actual_argmax] - a[expected_argmax]).abs()) if diverged else None
    divergence_ok = not diverged or gap < divergence_tol
    margin, drift = _margin(e, a)
    return PositionResult(position, errors, tolerated, diverged, gap, tolerated and divergence_ok, margin, drift)


def _margin(expected: torch.Tensor, actual: torch.Tensor) -> tuple[float, float]:
    """Not part of the contest's check: the reference's top-1 minus top-2 logit, and how much the actual logits
    changed that difference. Together they say how close a position came to a token flip, which the gate
    fails at once (divergence tolerance 0.001): a model whose margins are smaller than the drift would flip."""
    if expected.numel() < 2:
        return math.inf, 0.0
    top = torch.topk(expected, 2).indices
    margin = float(expected[top[0]] - expected[top[1]])
    return margin, abs(float(actual[top[0]] - actual[top[1]]) - margin)


def logit_validation(
    input_ids: torch.Tensor,
    generate_fn: Callable[[torch.Tensor], torch.Tensor],
    expected_logits: torch.Tensor,
    tol_map: TolMap | None = None,
    divergence_difference_tol: float = CONTEST_DIVERGENCE_TOL,
    remove_shift: bool = True,
) -> ValidationResult:
    """input_ids [1, S]; expected_logits [steps, 1, V]; generate_fn(ids [1, S']) -> logits [steps', 1, V]."""
    if input_ids.shape[0] != 1:
        raise ValueError("logit validation runs one prompt at a time (batch 1), as the contest does")
    tol_map = CONTEST_TOL_MAP if tol_map is None else tol_map
    expected_tokens = expected_logits.argmax(dim=-1)[:, 0]
    steps = expected_logits.shape[0]
    result = ValidationResult(passed=True)
    validated = 0
    while validated < steps:
        prefix = torch.cat([input_ids[0], expected_tokens[:validated]]).unsqueeze(0)
        actual = generate_fn(prefix)
        result.generate_calls += 1
        available = min(actual.shape[0], steps - validated)
        if available == 0:
            raise ValueError(f"generate_fn returned no logits for position {validated}")
        actual_tokens = actual.argmax(dim=-1)[:available, 0]
        mismatch = torch.nonzero(actual_tokens != expected_tokens[validated : validated + available])
        stop = int(mismatch[0]) + 1 if mismatch.numel() else available
        for offset in range(stop):
            position = validated + offset
            check = validate_position(
                expected_logits[position, 0], actual[offset, 0], tol_map, divergence_difference_tol, remove_shift, position
            )
            result.positions.append(check)
            result.passed &= check.passed
        validated += stop
    return result
