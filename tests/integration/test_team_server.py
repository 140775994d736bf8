"""The team tracking server (`make server`): a real PostgreSQL cluster (Debian's `postgresql`, started here with
initdb / pg_ctl on loopback) behind `mlflow server`; a parallel sweep logs to it over HTTP and every run, metric
and artifact arrives, in PostgreSQL itself."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import sqlalchemy
from mlflow.tracking import MlflowClient

from pipeline.tracking.server import Postgres, ServerError, free_port, postgres_bin, start_mlflow_server
from tests.integration.cli import run_pipeline

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def team_server():
    try:
        postgres_bin("initdb")
    except ServerError as missing:
        pytest.skip(str(missing))
    root = Path(tempfile.mkdtemp(prefix="team-server-"))
    root.chmod(0o755)  # the cluster runs as the `postgres` user when the tests run as root
    cluster = Postgres(root / "postgres", free_port())
    db_uri = cluster.start()
    port = free_port()
    try:
        server = start_mlflow_server(db_uri, root / "artifacts", port, root / "mlflow.log")
    except ServerError:
        cluster.stop()
        raise
    yield {"uri": f"http://127.0.0.1:{port}", "db": db_uri, "artifacts": root / "artifacts"}
    server.terminate()
    server.wait(timeout=60)
    cluster.stop()


def test_a_parallel_sweep_lands_whole_on_the_postgres_backed_server(team_server, tmp_path):
    tracking = {"uri": team_server["uri"], "artifact_root": str(tmp_path / "unused")}
    sweep = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "kernel.lm_head=baseline,perturbed",
             "parallel.tp_degree=1,2", "stages=[compile,accuracy]", "workload.max_new_tokens=2"]
    result = run_pipeline(sweep, tracking, tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(tracking_uri=team_server["uri"])
    experiment = client.get_experiment_by_name("pipeline")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # uploaded through the server
    everything = client.search_runs([experiment.experiment_id], max_results=1000)
    (parent,) = [r for r in everything if r.data.tags.get("kind") == "sweep"]
    jobs = [r for r in everything if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "FINISHED" and len(jobs) == 4
    assert {(j.data.tags["kernel.lm_head"], j.data.tags["tp_degree"]): j.data.metrics["accuracy.passed"]
            for j in jobs} == {("baseline", "1"): 1.0, ("baseline", "2"): 1.0, ("perturbed", "1"): 0.0,
                               ("perturbed", "2"): 0.0}
    for job in jobs:
        assert job.info.status == "FINISHED"
        assert {a.path for a in client.list_artifacts(job.info.run_id)} >= {"resolved_config.yaml", "pipeline.log"}
        stages = {r.info.run_name: r for r in everything if r.data.tags.get("mlflow.parentRunId") == job.info.run_id}
        assert sorted(stages) == ["accuracy", "compile"]
        assert all(s.info.status == "FINISHED" and f"{n}.seconds" in s.data.metrics for n, s in stages.items())
        assert "report.json" in {a.path for a in client.list_artifacts(stages["accuracy"].info.run_id)}
    served = {p.name for p in team_server["artifacts"].rglob("*") if p.is_file()}
    assert {"resolved_config.yaml", "report.json", "plan.json"} <= served
    engine = sqlalchemy.create_engine(team_server["db"])
    with engine.connect() as db:  # the record is in PostgreSQL itself
        stored = db.execute(sqlalchemy.text("select count(*) from runs where experiment_id = :e"),
                            {"e": int(experiment.experiment_id)}).scalar()
    engine.dispose()
    assert stored == len(everything) == 1 + 4 + 4 * 2
