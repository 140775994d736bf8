"""The MLflow record's schema, in one place (README "The record"): which figure goes on which run under which
key, which config values are params and which are tags, and how many digits a value keeps.

- A metric is `<stage>.<key>` on every run, so a figure has one column name whichever run shows it, and nothing
  is logged unprefixed.
- Each figure is logged once: a stage's headline on the job run (what a user compares first), every other
  figure on the stage's own run.
- Machine-specific config (`paths.*`, `tracking.*`) and `force` (how a run was started) are tags, not params:
  they differ between machines or invocations, not between experiments, and as params they show in every
  compare diff.
- Values keep SIGNIFICANT_DIGITS significant digits: CPU timings vary from the second digit on, and a float's
  last nine digits are noise in a table.
Stages name their metrics without the stage prefix and never put a variant name in a key (the variant is the
`kernel.<layer>` param and tag), so two variants share a column.
"""
from __future__ import annotations

import math

SIGNIFICANT_DIGITS = 5
MACHINE_KEYS = ("paths.", "tracking.", "force")


def rounded(value: float) -> float:
    value = float(value)
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}") if math.isfinite(value) else value


def config_record(flat_config: dict[str, object]) -> tuple[dict[str, object], dict[str, object]]:
    """(params, tags) of a job run from its flattened resolved config."""
    params = {k: v for k, v in flat_config.items() if not k.startswith(MACHINE_KEYS)}
    tags = {k: v for k, v in flat_config.items() if k.startswith(MACHINE_KEYS)}
    return params, tags


def stage_record(
    stage: str, metrics: dict[str, float], headline: dict[str, float]
) -> tuple[dict[str, float], dict[str, float]]:
    """(job-run metrics, stage-run metrics) of one stage's result: the headline on the job run, the rest on the
    stage run, each under `<stage>.<key>`."""
    on_job = {f"{stage}.{k}": v for k, v in headline.items()}
    on_stage = {f"{stage}.{k}": v for k, v in metrics.items() if k not in headline}
    return on_job, on_stage
