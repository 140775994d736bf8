"""Hydra callback that gives every sweep one MLflow parent run.

It runs in the launching process before any job starts, which also initialises the SQLite store once:
parallel workers migrating a fresh database at the same time race (measured: 3 of 3 joblib trials failed).
The parent id reaches jobs through the environment (inherited by loky and submitit workers) and a file in
the sweep directory. An unreachable tracking store stops the sweep before any job, in one line. When the sweep
ends the parent gets the comparison of its jobs (tracking.comparison): the table as its description and as
artifacts with a plot, and summary metrics; and the sweep's summary is printed from the record (so it holds for
jobs in other processes and machines): every job that failed with its error, and those skipped as already done;
a failure makes the exit status 1.
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
from pipeline.tracking.store import PARENT_RUN_ENV, Store, TrackingUnavailable, check_reachable

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


_open_sweep: list[tuple[Store, str]] = []  # the parent run this process opened and has not closed


def end_open_sweep(status: str) -> None:
    """Close the sweep's parent run when the sweep stops before its end (Hydra rejecting a combination)."""
    while _open_sweep:
        store, run_id = _open_sweep.pop()
        store.end(run_id, status)


class MlflowSweepCallback(Callback):
    def __init__(self) -> None:
        self.store: Store | None = None
        self.parent_run_id: str | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_sweep_kernels(list(config.hydra.overrides.task))
        HydraConfig.instance().set_config(config)  # the tracking keys interpolate ${hydra:...}
        tracking = config.tracking
        try:
            check_reachable(tracking.uri)
        except TrackingUnavailable as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        self.store = Store(tracking.uri, tracking.experiment, tracking.artifact_root)
        sweep_dir = Path(config.hydra.sweep.dir)
        overrides = " ".join(config.hydra.overrides.task)
        self.parent_run_id = self.store.start_run(
            f"sweep {overrides_label(list(config.hydra.overrides.task))}".strip(),
            tags={"sweep.dir": str(sweep_dir), "sweep.overrides": overrides, "kind": "sweep"},
        )
        os.environ[PARENT_RUN_ENV] = self.parent_run_id
        _open_sweep.append((self.store, self.parent_run_id))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / "mlflow_parent_run_id").write_text(self.parent_run_id)
        log.info("MLflow sweep parent run %s", self.parent_run_id)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.store is None or self.parent_run_id is None:
            return
        from pipeline.runner import ERROR_TAG, SKIPPED_TAG  # the runner imports the model; keep Hydra's import light

        children = self.store.client.search_runs(
            [self.store.experiment_id], f"tags.mlflow.parentRunId = '{self.parent_run_id}'", max_results=50000
        )
        failed = [r for r in children if r.info.status != RunStatus.to_string(RunStatus.FINISHED)]
        status = "FAILED" if failed else "FINISHED"
        _open_sweep.clear()
        try:  # the parent is closed whatever happens to its comparison
            rows = comparison_rows(children)
            out = Path(config.hydra.sweep.dir) / "comparison"
            write_comparison(rows, out)
            self.store.log_artifacts(self.parent_run_id, out, "comparison")
            self.store.log(self.parent_run_id, metrics=summary_metrics(rows), tags={MLFLOW_RUN_NOTE: to_markdown(rows)})
        finally:
            self.store.end(self.parent_run_id, status)
        parent_tags = self.store.client.get_run(self.parent_run_id).data.tags
        skipped = sorted(v for k, v in parent_tags.items() if k.startswith(SKIPPED_TAG))
        lines = [f"sweep: {len(children) + len(skipped)} job(s): {len(children) - len(failed)} finished, "
                 f"{len(failed)} failed, {len(skipped)} skipped (already FINISHED; force=true runs them again)"]
        lines += [f"  {r.info.status:<8} {r.info.run_name}: {r.data.tags.get(ERROR_TAG, '')}" for r in failed]
        lines += [f"  SKIPPED  {text}" for text in skipped]
        lines.append(f"  MLflow: sweep parent run {self.parent_run_id} ({status}) in experiment "
                     f"'{config.tracking.experiment}'")
        print("\n" + "\n".join(lines), flush=True)
        if failed:
            sys.exit(1)
