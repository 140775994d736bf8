"""Concurrent writers never lose a run: worker processes log runs to one SQLite store at once (what a joblib sweep
does), through the pipeline's Store; every run arrives FINISHED with its metric and artifact. The same check
against the PostgreSQL-backed server, at 200 runs, is `make bench-tracking`."""
import importlib.util
import sys

import pytest

from tests.conftest import PROJECT

spec = importlib.util.spec_from_file_location("bench_tracking", PROJECT / "benchmarks" / "bench_tracking.py")
bench_tracking = importlib.util.module_from_spec(spec)
sys.modules["bench_tracking"] = bench_tracking  # its worker function is pickled by module name for the process pool
spec.loader.exec_module(bench_tracking)


@pytest.mark.slow
def test_four_writers_lose_no_run_in_sqlite(tracking):
    result = bench_tracking.log_load(tracking["uri"], tracking["artifact_root"], workers=4, runs=24)
    assert result["errors"] == [] and (result["arrived"], result["lost"]) == (24, 0)
