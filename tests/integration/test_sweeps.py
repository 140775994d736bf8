"""Hydra multiruns: a 2x2 sweep lands as four FINISHED job runs under one FINISHED parent run."""
import signal
import subprocess

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import PROJECT
from tests.integration.cli import children, job_runs, pipeline_command, run_pipeline, runs

SWEEP = ["-m", "kernel.lm_head=baseline,perturbed", "parallel.tp_degree=1,2", "stages=[compile,accuracy]",
         "workload.max_new_tokens=4"]


@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]],
                         ids=["basic", "joblib"])
def test_two_by_two_sweep(tracking, tmp_path, launcher):
    result = run_pipeline([*SWEEP, *launcher], tracking, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (parent,) = [r for r in runs(tracking) if r.data.tags.get("kind") == "sweep"]
    assert parent.info.status == "FINISHED"
    assert parent.info.run_name == ("sweep lm_head=baseline,perturbed parallel.tp_degree=1,2 stages=[compile,accuracy] "
                                    "workload.max_new_tokens=4")  # named as jobs are: no tracking/hydra overrides
    jobs = children(tracking, parent.info.run_id)
    assert len(jobs) == 4 and len(job_runs(tracking)) == 4
    assert all(j.info.status == "FINISHED" for j in jobs)
    combos = {(j.data.tags["kernel.lm_head"], j.data.tags["tp_degree"]): j.data.metrics["accuracy.passed"] for j in jobs}
    assert combos == {("baseline", "1"): 1.0, ("baseline", "2"): 1.0, ("perturbed", "1"): 0.0, ("perturbed", "2"): 0.0}
    assert_comparison(tracking, parent)


def assert_comparison(tracking, parent) -> None:
    """The parent holds the sweep's comparison: summary metrics, the table as description, files and a plot."""
    jobs = [j.data.metrics for j in children(tracking, parent.info.run_id)]
    assert parent.data.metrics == {
        "sweep.jobs": 4.0, "sweep.failed": 0.0, "sweep.best_accuracy.passed": 1.0,
        "sweep.best_accuracy.max_err_top_all": min(m["accuracy.max_err_top_all"] for m in jobs),
        "sweep.best_accuracy.min_margin": max(m["accuracy.min_margin"] for m in jobs),
        "sweep.best_compile.nki_mac_ratio": 0.0,
    }
    description = parent.data.tags["mlflow.note.content"]
    assert description.startswith("**4 job run(s)**, 0 not finished.\nBest by accuracy passed")
    assert "| run | status | kernel.lm_head | parallel.tp_degree |" in description
    client = MlflowClient(tracking_uri=tracking["uri"])
    files = {f.path for f in client.list_artifacts(parent.info.run_id, "comparison")}
    assert files == {f"comparison/comparison.{s}" for s in ("md", "html", "csv", "png")}


def test_sweep_with_an_unknown_variant_fails_once_before_any_job(tracking, tmp_path):
    result = run_pipeline(["-m", "kernel.experts=baseline,no_such_variant", "parallel.tp_degree=1,2"], tracking,
                          tmp_path)
    assert result.returncode == 2
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert lines == [f"error: kernel.experts=no_such_variant is not a registered variant; choose one of: "
                     f"{', '.join(__import__('kernels').names('experts'))}"]
    assert runs(tracking) == []


@pytest.mark.slow
def test_sigterm_during_a_sweep_kills_the_job_and_the_parent_in_one_line(tracking, tmp_path):
    args = ["-m", "kernel.lm_head=baseline,perturbed", "stages=[compile,accuracy,latency]", "latency.runs=200",
            "latency.warmup=0", "workload.max_new_tokens=4"]
    process = subprocess.Popen(pipeline_command(args, tracking, tmp_path), cwd=PROJECT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:
        if "stage latency: started" in line:
            break
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 143, output[-2000:]
    assert "Traceback" not in output and output.rstrip().endswith(
        "terminated (SIGTERM): runs marked KILLED, artifacts so far kept")
    (parent,) = [r for r in runs(tracking) if r.data.tags.get("kind") == "sweep"]
    (job,) = children(tracking, parent.info.run_id)
    assert (parent.info.status, job.info.status) == ("KILLED", "KILLED")
    stages = {r.info.run_name: r.info.status for r in children(tracking, job.info.run_id)}
    assert stages == {"compile": "FINISHED", "accuracy": "FINISHED", "latency": "KILLED"}
