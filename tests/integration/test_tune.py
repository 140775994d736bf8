"""`python -m pipeline.tune`: Optuna over a search space in Hydra's sweep grammar, each trial a pipeline job under
one parent run; an infeasible point is a failed trial (one line) and the search goes on; a repeat reads its run."""
import re
import subprocess
import sys

import pytest

from tests.conftest import PROJECT
from tests.integration.cli import children, job_runs, runs


@pytest.mark.slow
def test_a_guided_search_runs_trials_as_jobs_and_records_the_best(tracking, tmp_path):
    command = [sys.executable, "-m", "pipeline.tune", "--trials", "4", "--objective", "latency.est.tpot_ms",
               "--output", str(tmp_path / "out"), "kernel.experts=grouped_v2",
               "kernel_params.experts.cores=choice(1,2,3)", "stages=[compile,latency]", "latency.runs=1",
               "latency.warmup=0", "workload.max_new_tokens=2", f"tracking.uri={tracking['uri']}",
               f"tracking.artifact_root={tracking['artifact_root']}"]
    result = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    trials = re.findall(r"^trial (\d+): (.*?)  kernel_params.experts.cores=(\d)$", result.stdout, re.MULTILINE)
    assert len(trials) == 4
    assert all(("FAILED" in outcome) == (cores == "3") for _, outcome, cores in trials)  # LNC has 1 or 2 cores
    values = {cores: float(outcome.split("=")[1]) for _, outcome, cores in trials if cores != "3"}
    (parent,) = [r for r in runs(tracking) if r.data.tags.get("kind") == "sweep"]
    jobs = job_runs(tracking)
    assert {j.info.run_id for j in jobs} == {j.info.run_id for j in children(tracking, parent.info.run_id)}
    assert {j.data.params["kernel_params.experts.cores"] for j in jobs} == set(values)  # a repeat is not re-run
    for job in jobs:
        assert job.data.metrics["latency.est.tpot_ms"] == values[job.data.params["kernel_params.experts.cores"]]
    if values:
        best = min(values, key=values.get)
        assert parent.data.tags["tune.best.kernel_params.experts.cores"] == best
        assert parent.data.metrics["latency.est.tpot_ms"] == values[best]
