"""The report's pieces that need no pipeline run: which TTFT / throughput a run contributes, and the one-line
errors of a store with nothing to report."""
import pytest
from mlflow.entities import Metric, Run, RunData, RunInfo, RunTag
from mlflow.tracking import MlflowClient

from pipeline.report.data import ReportError, job_runs
from pipeline.report.figures import point

MEASURED = {"latency.ttft_ms": 40.0, "latency.throughput_tok_s": 150.0}
ESTIMATED = {"latency.est.ttft_ms": 25.0, "latency.est.throughput_tok_s": 900.0}


def run(platform: str, metrics: dict[str, float]) -> Run:
    info = RunInfo("r1", "0", "u", "FINISHED", 0, 1, "active", run_name="job")
    data = RunData([Metric(k, v, 0, 0) for k, v in metrics.items()], tags=[RunTag("platform", platform)])
    return Run(info, data)


def test_the_cpu_contributes_the_estimate_and_a_device_its_measurement():
    cpu = point(run("cpu", MEASURED | ESTIMATED), "job")
    assert (cpu.ttft_ms, cpu.throughput_tok_s, cpu.source) == (25.0, 900.0, "Trainium estimate")
    device = point(run("trn3", MEASURED | ESTIMATED), "job")
    assert (device.ttft_ms, device.throughput_tok_s, device.source) == (40.0, 150.0, "measured on trn3")
    assert point(run("cpu", MEASURED), "job") is None  # CPU times are no Trainium figure


def test_an_experiment_without_job_runs_or_a_bad_filter_is_one_line(tracking):
    client = MlflowClient(tracking_uri=tracking["uri"])
    experiment = client.create_experiment("empty", artifact_location=f"file://{tracking['artifact_root']}")
    client.create_run(experiment, tags={"kind": "sweep"})
    with pytest.raises(ReportError, match=r"^no job runs in experiment 'empty'$"):
        job_runs(client, "empty")
    with pytest.raises(ReportError, match=r"^filter 'tags.x ==== 1': ") as error:
        job_runs(client, "empty", "tags.x ==== 1")
    assert "\n" not in str(error.value)
