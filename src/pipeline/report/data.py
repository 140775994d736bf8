"""What a report reads from the tracking store: the job runs of one experiment (best first, via the sweep
comparison's ranking) and, for the best of them, the latency stage's per-op estimate (est_breakdown.json)."""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from pipeline.tracking.comparison import Row, comparison_rows

MAX_RUNS = 1000  # job runs read per report
BREAKDOWN_RUNS = 8  # the best runs whose per-op breakdown is downloaded and drawn
BREAKDOWN = "est_breakdown.json"  # written by the latency stage (pipeline.estimate.breakdown)


class ReportError(ValueError):
    """Nothing to report on (no such experiment, no matching job runs, a bad filter); one line for a person."""


@dataclass
class ReportData:
    experiment: str
    run_filter: str
    runs: dict[str, Run]  # by run id
    rows: list[Row]  # best first (tracking.comparison)
    breakdowns: dict[str, dict] = field(default_factory=dict)  # run id -> est_breakdown.json


def job_runs(client: MlflowClient, experiment: str, run_filter: str = "") -> list[Run]:
    """The job runs (tag kind=job: not stages, not sweep parents) of `experiment` that match `run_filter`."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise ReportError(f"tracking experiment '{experiment}' does not exist")
    query = " and ".join(["tags.kind = 'job'", *([run_filter] if run_filter.strip() else [])])
    try:
        runs = client.search_runs([found.experiment_id], query, max_results=MAX_RUNS,
                                  order_by=["attributes.start_time DESC"])
    except Exception as error:  # MlflowException for a filter MLflow cannot parse
        raise ReportError(f"filter '{run_filter}': {str(error).splitlines()[0]}") from None
    if not runs:
        raise ReportError(f"no job runs in experiment '{experiment}'" + (f" match '{run_filter}'" if run_filter else ""))
    return runs


def breakdown_of(client: MlflowClient, run: Run) -> dict | None:
    """The job's latency stage's est_breakdown.json, or None (no latency stage, or it failed before writing it)."""
    stages = client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}' and tags.stage = 'latency'",
        max_results=1,
    )
    if not stages or BREAKDOWN not in {a.path for a in client.list_artifacts(stages[0].info.run_id)}:
        return None
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per run in the job's log
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(stages[0].info.run_id, BREAKDOWN, tmp)
        return json.loads(Path(path).read_text())


def collect(client: MlflowClient, experiment: str, run_filter: str = "") -> ReportData:
    runs = job_runs(client, experiment, run_filter)
    rows = comparison_rows(runs)
    by_id = {r.info.run_id: r for r in runs}
    breakdowns = {}
    for row in rows[:BREAKDOWN_RUNS]:
        body = breakdown_of(client, by_id[row.run_id])
        if body is not None:
            breakdowns[row.run_id] = body
    return ReportData(experiment, run_filter, by_id, rows, breakdowns)
