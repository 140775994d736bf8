"""The score stage's baseline lookup in a real MLflow store: the newest FINISHED all-baseline job run of the
same workload key that has the latencies the score needs."""
import time

from pipeline.config.validate import to_pipeline_conf
from pipeline.identity import workload_key
from pipeline.job import Job
from pipeline.stages.score import _lookup_baseline
from pipeline.tracking.store import Store
from tests.conftest import compose_config, tracking_overrides


def _job(tracking, tmp_path, overrides=()) -> Job:
    job = Job(to_pipeline_conf(compose_config([*overrides, *tracking_overrides(tracking)], tmp_path)), tmp_path)
    conf = job.conf
    job.tracking = Store(conf.tracking.uri, conf.tracking.experiment, conf.tracking.artifact_root)
    return job


def _baseline_run(job: Job, metrics: dict[str, float], status: str = "FINISHED", key: str | None = None) -> str:
    tags = {"workload_key": key or workload_key(job.conf), "all_baseline": "true"}
    run_id = job.tracking.start_run("baseline", tags=tags)
    job.tracking.log(run_id, metrics=metrics)
    job.tracking.end(run_id, status)
    time.sleep(0.01)  # distinct start times
    return run_id


def _latency(job: Job, e2e: float) -> dict[str, float]:
    return {f"latency.p{p.index}.{k}": v for p in job.prompts
            for k, v in (("e2e_p99_ms", e2e), ("throughput_tok_s", 1000 / e2e))}


def test_a_newer_baseline_without_latency_does_not_hide_an_older_complete_one(tracking, tmp_path):
    job = _job(tracking, tmp_path)
    complete = _baseline_run(job, _latency(job, 50.0))
    _baseline_run(job, {"compile.nki_mac_ratio": 0.0})  # e.g. stages=[compile]
    _baseline_run(job, {"latency.p0.e2e_p99_ms": 7.0, "latency.p0.throughput_tok_s": 9.0})  # prompt 1 missing
    _baseline_run(job, _latency(job, 20.0), status="FAILED")
    _baseline_run(job, _latency(job, 30.0), key="another workload")
    per_prompt, source = _lookup_baseline(job)
    assert source == f"run {complete}"
    assert per_prompt == {p.index: {"e2e_p99_ms": 50.0, "throughput_tok_s": 20.0} for p in job.prompts}


def test_the_newest_complete_baseline_wins_and_none_is_none(tracking, tmp_path):
    job = _job(tracking, tmp_path)
    assert _lookup_baseline(job) is None
    _baseline_run(job, _latency(job, 50.0))
    newest = _baseline_run(job, _latency(job, 40.0))
    assert _lookup_baseline(job)[1] == f"run {newest}"
