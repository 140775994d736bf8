"""`python -m pipeline.report [overrides]`: a comparison report of one experiment's job runs, written to
hydra.run.dir (conf/report.yaml: tracking.uri, tracking.experiment, filter)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from pipeline.config import CONF_DIR  # registers the project_root resolver
from pipeline.report import ReportError, write_report
from pipeline.tracking.store import TrackingUnavailable, check_reachable

@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="report")
def main(cfg: DictConfig) -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    out = Path(HydraConfig.get().runtime.output_dir)
    try:  # here, not in cli(): Hydra prints its own banner for an exception leaving main
        check_reachable(cfg.tracking.uri)
        written = write_report(MlflowClient(tracking_uri=cfg.tracking.uri), cfg.tracking.experiment, out, cfg.filter)
    except (ReportError, TrackingUnavailable) as error:
        _exit(error)
    print(f"report: {written[0]} ({len(written) - 1} PNG(s))", flush=True)


def cli() -> None:
    """Bad input (no such experiment, no matching run, a filter MLflow rejects, an unreachable store, a Hydra
    override error) ends in one line and exit status 2."""
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        main()
    except (HydraException, OmegaConfBaseException) as error:  # an override Hydra rejects
        _exit(error)


def _exit(error: Exception) -> None:
    print(f"error: {str(error).strip().splitlines()[0]}", file=sys.stderr)
    sys.exit(2)
