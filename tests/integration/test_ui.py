"""`mlflow server` (what `make ui` starts) on loopback: its REST API serves the pipeline's runs, and the UI itself,
rendered by Debian's headless chromium, shows what a user compares first (a job's description, a sweep parent's
comparison, the headline metrics in the runs table's classic layout)."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pipeline.tracking.ui import experiment_url
from tests.integration.cli import FAST, children, job_runs, run_pipeline, runs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@contextmanager
def mlflow_server(tracking: dict[str, str]) -> Iterator[str]:
    """`make ui`'s server on a free loopback port over the test's store; yields its base URL."""
    port = free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    server = subprocess.Popen(
        [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", tracking["uri"]],
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "mlflow server did not come up within 120 s"
                time.sleep(0.5)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_mlflow_server_serves_runs(tracking, tmp_path):
    assert run_pipeline(["stages=[compile,accuracy]", "workload.max_new_tokens=2"], tracking, tmp_path).returncode == 0
    with mlflow_server(tracking) as base:
        experiment = get(f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=pipeline")["experiment"]
        found = get(f"{base}/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment["experiment_id"]]})
        names = {r["info"]["run_name"] for r in found["runs"]}
        assert {"compile", "accuracy"} <= names
        job = next(r for r in found["runs"] if r["info"]["run_name"] not in ("compile", "accuracy"))
        metrics = {m["key"]: m["value"] for m in job["data"]["metrics"]}
        assert job["info"]["status"] == "FINISHED" and metrics["accuracy.passed"] == 1.0
        assert urllib.request.urlopen(f"{base}/", timeout=10).status == 200  # the UI itself


def browse(url: str, profile: Path, screenshot: Path) -> str:
    """The page's DOM after its scripts ran (chromium --dump-dom), and a screenshot of it; a fresh profile, so
    no localStorage choice of layout carries over."""
    common = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
              "--virtual-time-budget=30000", "--window-size=1600,1000"]
    subprocess.run([*common, f"--screenshot={screenshot}", url], capture_output=True, timeout=180, check=True)
    return subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=180,
                          check=True).stdout


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (`apt-get install chromium`); "
                                             "the UI can only be checked in a real browser")
def test_the_ui_shows_the_description_the_comparison_and_the_headline_metrics(tracking, tmp_path):
    sweep = ["-m", "kernel.lm_head=baseline,perturbed", "stages=[compile,accuracy,latency,score]", *FAST]
    result = run_pipeline(sweep, tracking, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_ui_shows_the_sweep(tracking, tmp_path)


def assert_ui_shows_the_sweep(tracking: dict[str, str], tmp_path: Path) -> None:
    (parent,) = [r for r in runs(tracking) if r.data.tags.get("kind") == "sweep"]
    jobs = children(tracking, parent.info.run_id)
    assert len(jobs) == 2 and len(job_runs(tracking)) == 2
    experiment, job = parent.info.experiment_id, jobs[0]
    shots = tmp_path / "screenshots"
    shots.mkdir(exist_ok=True)
    with mlflow_server(tracking) as base:
        table = browse(experiment_url(base, experiment), tmp_path / "profile-table", shots / "runs.png")
        # the classic layout (no GenAI sections), the headline view sorted by the estimate, the job runs only;
        # the grid renders the columns in view: the kernel set and the first headline metrics
        assert "Evaluation runs" not in table and "Judges" not in table
        assert "Sort: latency.est.score" in table.replace("\xa0", " ")
        for column in ("kernels", "latency.est.score", "latency.est.ttft_ms", "latency.est.tkg_step_ms"):
            assert column in table, column
        assert all(j.info.run_name in table for j in jobs) and parent.info.run_name not in table
        link = f"{base}/#/experiments/{experiment}/runs/{{}}?workflowType=machine_learning"
        page = browse(link.format(job.info.run_id), tmp_path / "profile-job", shots / "job.png")
        assert "Description" in page and f"pipeline job: {job.info.run_name}" in page  # the summary table,
        assert f"MLflow:  run {job.info.run_id} (FINISHED)" in page  # down to its footer
        page = browse(link.format(parent.info.run_id), tmp_path / "profile-parent", shots / "parent.png")
        assert "2 job run(s)" in page and "Best by est. score" in page  # the comparison as description
        artifacts = link.format(parent.info.run_id).replace("?", "/artifacts/comparison/comparison.md?")
        page = browse(artifacts, tmp_path / "profile-artifacts", shots / "artifacts.png")
        assert all(f"comparison.{s}" in page for s in ("md", "html", "csv", "png"))
