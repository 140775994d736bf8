"""`mlflow server` (what `make ui` starts) on loopback serves the pipeline's runs over its REST API."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.integration.cli import run_pipeline


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_mlflow_server_serves_runs(tracking, tmp_path):
    assert run_pipeline(["stages=[compile,accuracy]", "workload.max_new_tokens=2"], tracking, tmp_path).returncode == 0
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
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "mlflow server did not come up within 60 s"
                time.sleep(0.5)
        experiment = get(f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=pipeline")["experiment"]
        found = get(f"{base}/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment["experiment_id"]]})
        names = {r["info"]["run_name"] for r in found["runs"]}
        assert {"compile", "accuracy"} <= names
        job = next(r for r in found["runs"] if r["info"]["run_name"] not in ("compile", "accuracy"))
        metrics = {m["key"]: m["value"] for m in job["data"]["metrics"]}
        assert job["info"]["status"] == "FINISHED" and metrics["accuracy.passed"] == 1.0
        assert urllib.request.urlopen(f"{base}/", timeout=10).status == 200  # the UI itself
    finally:
        server.terminate()
        server.wait(timeout=30)
