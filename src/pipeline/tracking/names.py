"""Run names from overrides as typed: what a person recognises in the runs table."""
from __future__ import annotations

NOT_NAMED = ("tracking.", "paths.", "hydra", "force")  # overrides that do not change what a job measures
SHORT_PREFIXES = ("kernel.", "kernel_params.")  # no other top-level key starts with a layer name
MAX_NAME_VALUE = 40


def _short_override(override: str) -> str:
    key, _, value = override.lstrip("+").partition("=")
    for prefix in SHORT_PREFIXES:
        key = key.removeprefix(prefix)
    if len(value) > MAX_NAME_VALUE:
        value = value[: MAX_NAME_VALUE - 3] + "..."
    return f"{key}={value}"


def overrides_label(overrides: list[str]) -> str:
    """The overrides that change what is measured, minus the `kernel.` / `kernel_params.` prefixes (`lm_head=perturbed
    lm_head.relative_noise=0.1`); long values are shortened (the `overrides` tag keeps them whole)."""
    return " ".join(_short_override(o) for o in overrides if not o.lstrip("+~").startswith(NOT_NAMED))
