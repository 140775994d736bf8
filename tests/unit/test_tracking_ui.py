"""tracking.ui: the experiment tags that make `mlflow ui` open on the runs table with the headline view, set
once on a real SQLite store and read back as the UI reads them."""
import json

from pipeline.tracking.comparison import COLUMNS
from pipeline.tracking.store import Store
from pipeline.tracking.ui import VIEW_TAG, experiment_links, experiment_url, headline_view, stale_tags


def test_a_new_experiment_gets_the_layout_primary_metric_and_headline_view(tracking):
    store = Store(tracking["uri"], "pipeline", tracking["artifact_root"])
    tags = store.client.get_experiment(store.experiment_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert tags["mlflow.experiment.primaryMetric.name"] == "latency.est.score"
    envelope = json.loads(tags[VIEW_TAG])  # the UI's saved-view envelope: name, createdAt (ms), state (a string)
    assert isinstance(envelope["name"], str) and isinstance(envelope["createdAt"], int)
    state = json.loads(envelope["state"])
    assert state["orderByKey"] == "metrics.`latency.est.score`" and state["orderByAsc"] is False
    assert state["selectedColumns"][1:] == [f"metrics.`{c.metric}`" for c in COLUMNS]
    assert state["searchFilter"] == "tags.kind = 'job'"
    assert stale_tags(tags) == {}  # a second job sets nothing


def test_a_changed_or_foreign_view_is_replaced():
    assert VIEW_TAG in stale_tags({VIEW_TAG: "not json"})
    old = json.dumps({"name": "x", "createdAt": 1, "state": json.dumps({**headline_view(), "orderByAsc": True})})
    assert VIEW_TAG in stale_tags({VIEW_TAG: old})


def test_the_link_opens_the_classic_layout_with_the_view():
    assert experiment_url("http://127.0.0.1:5000/", "7") == (
        "http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning&viewStateShareKey=headline")


def test_make_ui_links_the_experiments_that_hold_job_runs(tracking):
    store = Store(tracking["uri"], "pipeline", tracking["artifact_root"])
    assert experiment_links(tracking["uri"], "http://s") == []  # no job run yet
    store.end(store.start_run("default", tags={"kind": "job"}), "FINISHED")
    link = experiment_url("http://s", store.experiment_id)
    assert experiment_links(tracking["uri"], "http://s") == [f"pipeline: {link}"]
