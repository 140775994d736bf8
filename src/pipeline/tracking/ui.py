"""Where `mlflow ui` opens for the pipeline's experiments: the classic runs table ("Model training"), not the
GenAI layout (Traces, Judges, Prompts, stage runs listed as "Evaluations"), sorted by the estimate with the
headline metrics as the first metric columns.

How MLflow 3.17's UI decides (read from mlflow/server/js/build, modules 31080, 7975, 5439 and 3878):
- The layout follows a global "workflow type", `genai` or `machine_learning`: the URL's `workflowType=` query,
  else the browser's localStorage `mlflow.workflowType`, else `genai`. The experiment tag
  `mlflow.experimentKind` is only read when that feature flag is off (it is on in 3.17); we still set it to
  `custom_model_development`, which the experiment's kind selector shows and older UIs follow.
- An experiment tag `mlflow.sharedViewState.<key>` holds a saved runs-table view (search facets and table
  state: sort, filter, selected columns, column order), opened by the URL's `viewStateShareKey=<key>` and listed
  under "Views".
- The charts' first (and parallel-coordinates) metric is the experiment tag `mlflow.experiment.primaryMetric.name`.
So the server cannot change the default layout; `experiment_url` is the link that opens the right one.
"""
from __future__ import annotations

import json
import time

from pipeline.tracking.comparison import COLUMNS

EXPERIMENT_KIND = "mlflow.experimentKind"
PRIMARY_METRIC = "mlflow.experiment.primaryMetric.name"
VIEW_KEY = "headline"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
JOB_FILTER = "tags.kind = 'job'"  # job runs only: no stage runs, no sweep parents


def _column(kind: str, key: str) -> str:
    """The runs table's column id (MLflow's makeCanonicalSortKey)."""
    return f"{kind}.`{key}`"


def headline_view() -> dict:
    """The saved view: job runs, best estimate first, the kernel set then the headline metrics as columns."""
    columns = [_column("tags", "kernels"), *(_column("metrics", c.metric) for c in COLUMNS)]
    primary = next(c for c in COLUMNS if c.metric == "latency.est.score")
    return {"searchFilter": JOB_FILTER, "orderByKey": _column("metrics", primary.metric),
            "orderByAsc": not primary.higher_is_better, "selectedColumns": columns, "columnOrder": columns}


def experiment_tags() -> dict[str, str]:
    """The experiment tags that make the UI open where runs are compared."""
    view = {"name": "headline metrics (job runs)", "createdAt": int(time.time() * 1000),
            "state": json.dumps(headline_view())}
    return {EXPERIMENT_KIND: "custom_model_development", PRIMARY_METRIC: "latency.est.score",
            VIEW_TAG: json.dumps(view)}


def stale_tags(current: dict[str, str]) -> dict[str, str]:
    """The experiment tags to set: missing or different ones (the saved view compared without its date)."""
    wanted = experiment_tags()
    stale = {k: v for k, v in wanted.items() if current.get(k) != v}
    if VIEW_TAG in stale and VIEW_TAG in current:
        try:
            if json.loads(json.loads(current[VIEW_TAG])["state"]) == headline_view():
                del stale[VIEW_TAG]
        except (ValueError, KeyError, TypeError):
            pass  # not our format: replace it
    return stale


def experiment_url(server: str, experiment_id: str) -> str:
    """The runs table in the classic layout with the headline view (the layout choice then sticks in the browser
    once the user toggles it; see the module docstring)."""
    return (f"{server.rstrip('/')}/#/experiments/{experiment_id}/runs"
            f"?workflowType=machine_learning&viewStateShareKey={VIEW_KEY}")


def experiment_links(uri: str, server: str) -> list[str]:
    """`<experiment>: <link>` for every experiment of the store that holds job runs (`make ui` prints them)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    return [f"{e.name}: {experiment_url(server, e.experiment_id)}" for e in client.search_experiments()
            if client.search_runs([e.experiment_id], JOB_FILTER, max_results=1)]


if __name__ == "__main__":  # python -m pipeline.tracking.ui <tracking uri> <server>
    import sys

    print("\n".join(experiment_links(sys.argv[1], sys.argv[2])) or "no pipeline runs yet")
