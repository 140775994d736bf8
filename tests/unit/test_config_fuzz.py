"""Property: whatever a user types as overrides (unknown keys, wrong types, out-of-range numbers for every numeric
key of the schema, unknown variants, stages and group options), the pipeline either accepts the config or
rejects it with one line (exit 2), never a Python traceback.

The check runs what `python -m pipeline` runs before any MLflow run: Hydra's composition (`compose_config`),
then `runner.prepare`, and classifies an error as the CLI does (`app.user_error`: one line, exit 2, or None for
a traceback). A config that passes is not run. Deterministic: Hypothesis derandomised, a fixed number of examples.
"""
from __future__ import annotations

import dataclasses
import math
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kernels
from pipeline.app import user_error
from pipeline.config.schema import PipelineConf
from pipeline.config.validate import BOUNDS
from pipeline.runner import prepare
from tests.conftest import compose_config

GROUPS = ("model", "workload", "platform")


def numeric_keys(cls: type = PipelineConf, prefix: str = "") -> list[str]:
    """Every int / float (or list of them) key of the schema, nested dataclasses included."""
    keys = []
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        kind = hints[field.name]
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        inner = args[0] if typing.get_origin(kind) is typing.Union and len(args) == 1 else kind
        if dataclasses.is_dataclass(inner):
            keys += numeric_keys(inner, f"{prefix}{field.name}.")
        elif inner in (int, float) or typing.get_args(inner) in ((int,), (float,)):
            keys.append(f"{prefix}{field.name}")
    return keys


NUMERIC = numeric_keys()
names = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True)
numbers = st.one_of(
    st.integers(-(10**12), 10**12), st.sampled_from([0, -1, 1, 2**31, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
)
values = st.one_of(numbers.map(lambda v: str(v).lower()), names, st.sampled_from(["true", "null", "[]", "[1,2]", "''"]))

overrides = st.one_of(
    st.tuples(st.sampled_from(NUMERIC), values).map("=".join),  # every numeric key: any number, wrong types
    st.tuples(st.sampled_from(NUMERIC), numbers).map(lambda kv: f"{kv[0]}=[{kv[1]}]"),
    st.tuples(st.sampled_from(["", "+"]), names, values).map(lambda t: f"{t[0]}{t[1]}={t[2]}"),  # unknown keys
    st.tuples(st.sampled_from(["", "+"]), st.sampled_from(kernels.LAYERS), names, values)
    .map(lambda t: f"{t[0]}kernel_params.{t[1]}.{t[2]}={t[3]}"),  # unknown or mistyped knobs
    st.tuples(st.sampled_from(kernels.LAYERS), st.one_of(names, values)).map(lambda t: f"kernel.{t[0]}={t[1]}"),
    st.lists(names, min_size=1, max_size=3).map(lambda s: f"stages=[{','.join(s)}]"),  # unknown stages
    st.tuples(st.sampled_from(GROUPS), names).map("=".join),  # unknown group options
)


def test_every_numeric_key_of_the_schema_is_bounded_or_typed():
    """The generator covers the schema's numeric keys, and each one outside `estimate` (pipeline.estimate.settings
    checks those) has a bound."""
    assert {"workload.seq_len", "latency.runs", "model.dims.hidden_size", "estimate.lnc"} <= set(NUMERIC)
    unbounded = [k for k in NUMERIC if k not in BOUNDS and not k.startswith("estimate.")]
    assert unbounded == [], unbounded


@pytest.mark.slow  # ~10-20 s (40 compositions of the config); the timeout bounds it on a loaded machine
@pytest.mark.timeout(120)
@settings(max_examples=40, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck),
          database=None)
@given(st.lists(overrides, min_size=1, max_size=3))
def test_random_overrides_are_accepted_or_one_line_errors(tmp_path_factory, typed):
    out = tmp_path_factory.mktemp("fuzz")
    try:
        cfg = compose_config([f"tracking.uri=sqlite:///{out}/mlflow.db", *typed], out)
        prepare(cfg, out)
    except Exception as error:
        message = user_error(error)
        if message is None:
            raise  # the CLI would show this traceback to the user
        assert message and "\n" not in message, (typed, message)
