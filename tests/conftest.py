"""Shared fixtures: the tiny model's checkpoint (cached like the pipeline caches it), config composition,
and an isolated MLflow store per test (copied from one migrated template, since migrating costs seconds)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from pipeline.config import CONF_DIR, project_root

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

PROJECT = Path(project_root())
CACHE = PROJECT / ".cache"


def compose_config(overrides: list[str], output_dir: Path):
    """The resolved config `python -m pipeline <overrides>` would run, writing into output_dir."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.name = "pipeline"
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    OmegaConf.resolve(cfg)
    return cfg


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
