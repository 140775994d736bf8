"""Hydra callback that gives every sweep one MLflow parent run.

It runs in the launching process before any job starts, which also initialises the SQLite store once:
parallel workers migrating a fresh database at the same time race (measured: 3 of 3 joblib trials failed).
The parent id reaches jobs through the environment (inherited by loky and submitit workers) and a file in
the sweep directory. When the sweep ends the parent gets the comparison of its jobs (tracking.comparison): the
table as its description and as artifacts with a plot, and summary metrics.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from mlflow.entities import RunStatus
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE
from omegaconf import DictConfig

import kernels
from pipeline.tracking.comparison import comparison_rows, summary_metrics, to_markdown, write_comparison
from pipeline.tracking.names import overrides_label
from pipeline.tracking.store import PARENT_RUN_ENV, Store

log = logging.getLogger(__name__)


def check_sweep_kernels(overrides: list[str]) -> None:
    """Every kernel variant a sweep names must exist: one line and no jobs, rather than one failure per job."""
    for override in OverridesParser.create().parse_overrides(overrides):
        layer = override.key_or_group.removeprefix("kernel.")
        if layer == override.key_or_group or layer not in kernels.LAYERS:
            continue
        values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [str(override.value())]
        for value in values:
            try:
                kernels.get(layer, value)
            except kernels.UnknownVariantError as error:
                print(f"error: {error}", file=sys.stderr)
                sys.exit(2)


class MlflowSweepCallback(Callback):
    def __init__(self) -> None:
        self.store: Store | None = None
        self.parent_run_id: str | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_sweep_kernels(list(config.hydra.overrides.task))
        HydraConfig.instance().set_config(config)  # the tracking keys interpolate ${hydra:...}
        tracking = config.tracking
        self.store = Store(tracking.uri, tracking.experiment, tracking.artifact_root)
        sweep_dir = Path(config.hydra.sweep.dir)
        overrides = " ".join(config.hydra.overrides.task)
        self.parent_run_id = self.store.start_run(
            f"sweep {overrides_label(list(config.hydra.overrides.task))}".strip(),
            tags={"sweep.dir": str(sweep_dir), "sweep.overrides": overrides, "kind": "sweep"},
        )
        os.environ[PARENT_RUN_ENV] = self.parent_run_id
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / "mlflow_parent_run_id").write_text(self.parent_run_id)
        log.info("MLflow sweep parent run %s", self.parent_run_id)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.store is None or self.parent_run_id is None:
            return
        children = self.store.client.search_runs(
            [self.store.experiment_id], f"tags.mlflow.parentRunId = '{self.parent_run_id}'"
        )
        failed = [r for r in children if r.info.status != RunStatus.to_string(RunStatus.FINISHED)]
        try:  # the parent is closed whatever happens to its comparison
            rows = comparison_rows(children)
            out = Path(config.hydra.sweep.dir) / "comparison"
            write_comparison(rows, out)
            self.store.log_artifacts(self.parent_run_id, out, "comparison")
            self.store.log(self.parent_run_id, metrics=summary_metrics(rows), tags={MLFLOW_RUN_NOTE: to_markdown(rows)})
        finally:
            self.store.end(self.parent_run_id, "FAILED" if failed else "FINISHED")
        log.info(
            "MLflow sweep parent run %s: %d job(s), %d not finished", self.parent_run_id, len(children), len(failed)
        )
