"""Running `python -m pipeline` as users do, against an isolated MLflow store."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from tests.conftest import PROJECT

FAST = ["latency.runs=1", "latency.warmup=0", "workload.max_new_tokens=4"]


def pipeline_command(args: list[str], tracking: dict[str, str], tmp_path: Path) -> list[str]:
    return [
        sys.executable, "-m", "pipeline", *args,
        f"tracking.uri={tracking['uri']}", f"tracking.artifact_root={tracking['artifact_root']}",
        f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]


def run_pipeline(args: list[str], tracking: dict[str, str], tmp_path: Path, timeout: float = 600):
    return subprocess.run(
        pipeline_command(args, tracking, tmp_path), cwd=PROJECT, capture_output=True, text=True, timeout=timeout
    )


def runs(tracking: dict[str, str]):
    client = MlflowClient(tracking_uri=tracking["uri"])
    experiment = client.get_experiment_by_name("pipeline")
    return [] if experiment is None else client.search_runs([experiment.experiment_id], max_results=1000)


def job_runs(tracking: dict[str, str]):
    """Runs that are jobs (not stages, not sweep parents)."""
    return [r for r in runs(tracking) if "stage" not in r.data.tags and r.data.tags.get("kind") != "sweep"]


def children(tracking: dict[str, str], parent_id: str):
    return [r for r in runs(tracking) if r.data.tags.get("mlflow.parentRunId") == parent_id]
