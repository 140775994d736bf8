"""Shared fixtures: the tiny model's checkpoint (cached like the pipeline caches it), config composition,
and an isolated MLflow store per test (copied from one migrated template, since migrating costs seconds)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from pipeline.config import project_root
from pipeline.config.compose import compose_config  # noqa: F401  (tests import it from here)

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

PROJECT = Path(project_root())
CACHE = PROJECT / ".cache"


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory) -> Path:
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def tracking(tmp_path, mlflow_template) -> dict[str, str]:
    """Overrides pointing the pipeline at a fresh store under tmp_path."""
    db = tmp_path / "mlflow.db"
    shutil.copy(mlflow_template, db)
    return {"uri": f"sqlite:///{db}", "artifact_root": str(tmp_path / "mlruns"), "db": str(db)}


def tracking_overrides(tracking: dict[str, str]) -> list[str]:
    return [f"tracking.uri={tracking['uri']}", f"tracking.artifact_root={tracking['artifact_root']}"]


@pytest.fixture(autouse=True, scope="module")
def _replay_recordings_per_module():
    """Interpreter replay recordings hold their launch's arguments (a test's weights) alive; in a long session
    they added up to gigabytes. Each test module starts and ends with an empty cache."""
    from nki_cpu import replay

    replay.clear()
    yield
    replay.clear()
