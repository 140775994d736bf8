"""Hydra multiruns: a 2x2 sweep lands as four FINISHED job runs under one FINISHED parent run; a failing job is
recorded and the sweep goes on; a re-run skips what is done; an unreachable tracking store stops it at once."""
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import PROJECT
from tests.integration.cli import children, job_runs, pipeline_command, run_pipeline, runs
from tests.integration.test_ui import free_port

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


@pytest.mark.slow
def test_a_failing_job_is_recorded_the_sweep_goes_on_and_the_summary_lists_it(tracking, tmp_path):
    """Job 0 crashes inside a stage (its seeded checkpoint cannot be written), tp_degree=3 cannot shard the tiny
    model (a config error only this combination has); the one good job still runs, the exit status is 1."""
    args = ["-m", f"paths.cache=/proc/no_such_dir,{PROJECT / '.cache'}", "parallel.tp_degree=1,3", "force=true",
            "stages=[compile,accuracy]", "workload.max_new_tokens=2"]
    result = run_pipeline(args, tracking, tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    (parent,) = [r for r in runs(tracking) if r.data.tags.get("kind") == "sweep"]
    assert parent.info.status == "FAILED"
    jobs = children(tracking, parent.info.run_id)
    assert sorted(j.info.status for j in jobs) == ["FAILED", "FAILED", "FAILED", "FINISHED"]
    crashed = [j for j in jobs if j.data.tags.get("error", "").startswith("accuracy: FileNotFoundError")]
    assert len(crashed) == 1
    stages = {r.info.run_name: r.info.status for r in children(tracking, crashed[0].info.run_id)}
    assert stages == {"compile": "FINISHED", "accuracy": "FAILED"}
    assert "no_such_dir" in next((tmp_path / "sweep" / "0" / "accuracy").glob("traceback.txt")).read_text()
    logged = [p for p in Path(tracking["artifact_root"]).rglob("traceback.txt")]
    assert len(logged) == 3  # the stage crash and the two config errors, each on its FAILED run
    summary = result.stdout[result.stdout.index("sweep: 4 job(s)"):]
    assert summary.startswith("sweep: 4 job(s): 1 finished, 3 failed, 0 skipped")
    assert summary.count("  FAILED   ") == 3 and "is not divisible by tp_degree=3" in summary
    assert f"sweep parent run {parent.info.run_id} (FAILED)" in summary


COMPILE_SWEEP = [*SWEEP[:3], "stages=[compile]"]  # the same 2x2, only the quick stage (de-duplication is per job)


@pytest.mark.slow
def test_rerunning_a_sweep_skips_finished_jobs_and_force_runs_them_again(tracking, tmp_path):
    assert run_pipeline(COMPILE_SWEEP, tracking, tmp_path).returncode == 0
    first = {j.info.run_id for j in job_runs(tracking)}
    again = run_pipeline(COMPILE_SWEEP, tracking, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {j.info.run_id for j in job_runs(tracking)} == first  # no new job run
    assert len([l for l in again.stdout.splitlines() if l.startswith("skipped: ")]) == 4 and "4 job(s): 0 finished, 0 failed, 4 skipped" in again.stdout
    forced = run_pipeline([*COMPILE_SWEEP, "force=true"], tracking, tmp_path)
    assert forced.returncode == 0, forced.stderr[-3000:]
    jobs = job_runs(tracking)
    assert len(jobs) == 8 and all(j.info.status == "FINISHED" for j in jobs)
    assert len({j.data.tags["run_key"] for j in jobs}) == 4 and "force" not in jobs[0].data.params


@pytest.mark.slow
def test_an_interrupted_sweep_completes_only_what_is_missing(tracking, tmp_path):
    """Half the sweep ran, one of its runs was then KILLED: re-running the whole sweep runs the missing two and the
    killed one."""
    half = [a for a in COMPILE_SWEEP if not a.startswith("kernel.lm_head")] + ["kernel.lm_head=baseline"]
    assert run_pipeline(half, tracking, tmp_path).returncode == 0
    done = job_runs(tracking)
    killed = next(j for j in done if j.data.tags["tp_degree"] == "2")
    MlflowClient(tracking_uri=tracking["uri"]).set_terminated(killed.info.run_id, "KILLED")
    result = run_pipeline(COMPILE_SWEEP, tracking, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 job(s): 3 finished, 0 failed, 1 skipped" in result.stdout
    new = [j for j in job_runs(tracking) if j.info.run_id not in {d.info.run_id for d in done}]
    assert sorted((j.data.tags["kernel.lm_head"], j.data.tags["tp_degree"]) for j in new) == [
        ("baseline", "2"), ("perturbed", "1"), ("perturbed", "2")]


@pytest.mark.parametrize("sweep", [[], ["-m", "parallel.tp_degree=1,2"]], ids=["single", "sweep"])
def test_an_unreachable_tracking_server_fails_fast_in_one_line(tmp_path, sweep):
    port = free_port()  # nothing listens on it
    tracking = {"uri": f"http://127.0.0.1:{port}", "artifact_root": str(tmp_path / "mlruns")}
    start = time.monotonic()
    result = run_pipeline(sweep, tracking, tmp_path, timeout=120)
    assert result.returncode == 2
    assert [l for l in result.stderr.splitlines() if l.strip()] == [
        f"error: tracking.uri=http://127.0.0.1:{port}: [Errno 111] Connection refused; start it (`make server`) or "
        f"choose another tracking.uri"]
    # seconds, not MLflow's own retries (minutes); the bound is loose for a loaded shared machine
    assert time.monotonic() - start < 90 and not (tmp_path / "sweep" / "0").exists()
