"""The Trainium estimates in an in-process pipeline run: est.* metrics on the job run (latency stage) and the
cost model's Perfetto / PNG artifacts of the NKI kernels (profile stage)."""
import json
import shutil
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import compose_config
from tests.integration.cli import children, job_runs

# The NKI RMSNorm traced for the estimates; `reference` runs its torch reference on the CPU (fast generation).
OVERRIDES = ["latency.runs=1", "latency.warmup=0", "workload.max_new_tokens=2", "workload.prompts=[Hello there]",
             "stages=[compile,latency,profile]", "kernel.norm=nki_add_rmsnorm", "platform.executor=reference"]


@pytest.fixture(scope="module")
def run(tmp_path_factory, mlflow_template):
    from pipeline.runner import prepare, run_job

    root = tmp_path_factory.mktemp("estimates")
    shutil.copy(mlflow_template, root / "mlflow.db")
    tracking = {"uri": f"sqlite:///{root / 'mlflow.db'}", "artifact_root": str(root / "mlruns")}
    overrides = [*OVERRIDES, f"tracking.uri={tracking['uri']}", f"tracking.artifact_root={tracking['artifact_root']}"]
    out = root / "out"
    out.mkdir()
    cfg = compose_config(overrides, out)
    run_job(cfg, prepare(cfg, out), overrides)
    (job,) = job_runs(tracking)
    return tracking, job


def test_est_metrics_land_on_the_job_run(run):
    tracking, job = run
    metrics, tags = job.data.metrics, job.data.tags
    for key in ("tpot_ms", "ttft_ms", "e2e_ms", "score", "floor_tpot_ms", "baseline.tpot_ms"):
        assert metrics[f"latency.est.{key}"] > 0
    assert metrics["latency.est.tpot_ms"] >= metrics["latency.est.floor_tpot_ms"]
    for key in ("ttft_ms", "tpot_ms", "e2e_ms", "score"):  # the calibration's leave-one-out band around each
        assert metrics[f"latency.est.{key}_low"] < metrics[f"latency.est.{key}"] < metrics[f"latency.est.{key}_high"]
    assert metrics["latency.est.tkg_step_ms"] + metrics["latency.est.host_ms"] == pytest.approx(
        metrics["latency.est.tpot_ms"], rel=1e-4)  # logged values keep 5 significant digits (tracking.record)
    assert tags["est.calibration"].startswith("calibrated on 20 device points")
    assert tags["est.score_reference"] == "estimate of this config with every kernel baseline"
    assert tags["est.accuracy"] == "not checked: assumed 1" and tags["est.target"] == "trn2"
    (latency,) = [r for r in children(tracking, job.info.run_id) if r.info.run_name == "latency"]
    assert {f"latency.est.p0.{k}" for k in ("ttft_ms", "tpot_ms", "e2e_ms", "score")} <= set(latency.data.metrics)
    assert not set(latency.data.metrics) & set(metrics)  # each figure once: the headline on the job run only
    files = {p.name: p for p in (Path(tracking["artifact_root"]) / "pipeline").rglob("*") if p.is_file()}
    body = json.loads(files["est_breakdown.json"].read_text())
    token = body["phases"]["token"]
    assert {op["op"] for op in token["ops"]} >= {"norm", "attention", "router", "experts", "lm_head", "runtime", "host"}
    assert sum(op["share"] for op in token["ops"]) == pytest.approx(1.0)
    assert "est_breakdown.png" in files


def test_profile_writes_the_cost_model_artifacts_of_the_nki_kernels(run):
    tracking, job = run
    (profile,) = [r for r in children(tracking, job.info.run_id) if r.info.run_name == "profile"]
    artifacts = Path(MlflowClient(tracking_uri=tracking["uri"]).get_run(profile.info.run_id).info.artifact_uri
                     .removeprefix("file://"))
    names = {p.name for p in artifacts.iterdir()}
    for phase in ("context", "token"):
        assert {f"est_norm_{phase}_0.perfetto.json", f"est_norm_{phase}_0_timeline.png"} <= names
        trace = json.loads((artifacts / f"est_norm_{phase}_0.perfetto.json").read_text())
        tracks = {e["args"]["name"] for e in trace["traceEvents"] if e.get("name") == "thread_name"}
        assert {"vector", "scalar", "dma0"} <= tracks
        floor = profile.data.metrics[f"profile.est.norm.{phase}.floor_us"]  # detail: the stage run
        assert job.data.metrics[f"profile.est.norm.{phase}.time_us"] >= floor > 0  # headline: the job run
    assert {"est_roofline.png", "est_summary.txt", "trace.json", "top_ops.txt"} <= names
    assert "ESTIMATE" in (artifacts / "est_summary.txt").read_text()
    assert job.data.metrics["profile.est.norm.token.time_us"] > 0
