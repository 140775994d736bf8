"""platform=trn3 end to end on the fakes of tests/neuron_fakes.py: stage order, compile keys and reuse, the
retry on a poisoned compile cache, the device lock, artifacts and metrics in MLflow."""
from pathlib import Path

import pytest

from pipeline.platforms.neuron.lock import DeviceBusy, DeviceLock
from pipeline.runner import JobFailed, prepare, run_job
from tests import neuron_fakes
from tests.conftest import compose_config, tracking_overrides
from tests.hlo_schema import hlo_module_class
from tests.integration.cli import children, job_runs

pytestmark = pytest.mark.skipif(hlo_module_class() is None, reason="no HLO schema: run `make hlo-schema` once")

STAGES = ["compile", "accuracy", "latency", "score", "export"]


def device_overrides(tmp_path: Path, tracking, *extra: str) -> list[str]:
    return [
        "platform=trn3", f"stages=[{','.join(STAGES)}]", "workload.max_new_tokens=3", "latency.runs=2",
        f"platform.neuron.compiled_root={tmp_path / 'compiled'}", f"platform.neuron.compile_cache={tmp_path / 'ncc'}",
        f"platform.neuron.lock_file={tmp_path / 'device.lock'}", "platform.neuron.lock_timeout_s=1",
        *tracking_overrides(tracking), *extra,
    ]


def run(tmp_path: Path, overrides: list[str], name: str):
    out = tmp_path / name
    out.mkdir()
    cfg = compose_config(overrides, out)
    job = prepare(cfg, out)
    run_job(cfg, job, overrides)
    return job


@pytest.fixture
def fakes(monkeypatch):
    neuron_fakes.install(monkeypatch)
    return neuron_fakes.CALLS


@pytest.mark.slow
@pytest.mark.parametrize("platform", ["trn2", "trn3"])
def test_device_job_runs_every_stage_and_logs_to_mlflow(platform, fakes, tracking, tmp_path):
    overrides = device_overrides(tmp_path, tracking, "kernel.norm=nki_rmsnorm", f"platform={platform}")
    job = run(tmp_path, overrides, "a")
    (record,) = job_runs(tracking)
    assert record.info.status == "FINISHED" and record.data.tags["platform"] == platform
    stages = sorted(children(tracking, record.info.run_id), key=lambda r: r.info.start_time)
    assert [r.info.run_name for r in stages] == STAGES and all(r.info.status == "FINISHED" for r in stages)
    # baseline first, then the job's kernels (the contest's order), each in its own keyed directory
    assert [name for name, _ in fakes["compile"]] == ["NeuronQwen3MoeForCausalLM"] * 2
    built = [Path(path).parent for _, path in fakes["compile"]]
    tags = record.data.tags
    assert [p.name for p in built] == [tags["compile.baseline_key"], tags["compile.candidate_key"]]
    assert all((p / "COMPLETE").exists() and (p / "work" / "context_encoding_model" / "_tp0_bk0").is_dir() for p in built)
    metrics = record.data.metrics
    # the fake HLOs: per sub-model L dots of tokens x H x H, and 2L+1 NKI norms of tokens x H MACs each
    dims = job.dims
    nki = sum((2 * dims.num_hidden_layers + 1) * t * dims.hidden_size for t in (128, 1))
    dots = sum(dims.num_hidden_layers * t * dims.hidden_size ** 2 for t in (128, 1))
    assert metrics["compile.nki_mac_ratio"] == pytest.approx(nki / (nki + dots), rel=1e-4)  # 5 significant digits
    assert metrics["accuracy.passed"] == 1.0
    assert metrics["latency.p0.e2e_p99_ms"] > 0 and metrics["latency.p0.cte_ms"] > 0
    assert metrics["latency.p0.tkg_step_ms"] > 0 and "latency.p0.host_ms" in metrics and "latency.est.e2e_ms" in metrics
    assert metrics["score.contest"] == pytest.approx(len(job.prompts) * metrics["score.contest_mean"], rel=1e-4)
    assert metrics["score.contest"] > 0 and "score.nki_mac_ratio" not in metrics   # the contest's sum; ratio: compile's
    artifacts = {Path(p).name for p in Path(tracking["artifact_root"]).rglob("*") if p.is_file()}
    assert {"compile.log", "neffs.json", "builds.json", "neuron_config.json", "benchmark_report.json",
            "report.json", "score.json", "qwen_with_nki.py"} <= artifacts
    assert any("hlo_module" in name for name in artifacts)
    assert DeviceLock(tmp_path / "device.lock", 0.1).acquire({}) is None  # released when the job ended


@pytest.mark.slow
def test_same_config_reuses_builds_and_baseline_job_shares_the_baseline(fakes, tracking, tmp_path):
    run(tmp_path, device_overrides(tmp_path, tracking, "kernel.norm=nki_rmsnorm"), "a")
    assert len(fakes["compile"]) == 2
    run(tmp_path, device_overrides(tmp_path, tracking, "kernel.norm=nki_rmsnorm", "force=true"), "b")  # not skipped as done
    run(tmp_path, device_overrides(tmp_path, tracking), "c")  # all baseline: the baseline build is the job's
    assert len(fakes["compile"]) == 2  # nothing recompiled
    first, second, baseline = sorted(job_runs(tracking), key=lambda r: r.info.start_time)
    assert second.data.tags["compile.candidate_key"] == first.data.tags["compile.candidate_key"]
    compile_stage = next(r for r in children(tracking, second.info.run_id) if r.info.run_name == "compile")
    assert compile_stage.data.metrics["compile.candidate.cache_hit"] == 1.0
    assert compile_stage.data.metrics["compile.baseline.cache_hit"] == 1.0
    assert baseline.data.tags["compile.candidate_key"] == baseline.data.tags["compile.baseline_key"]
    assert baseline.data.tags["compile.baseline_key"] == first.data.tags["compile.baseline_key"]


def test_poisoned_compile_cache_is_purged_and_retried_once(fakes, tracking, tmp_path):
    entry = tmp_path / "ncc" / "neuronxcc-2.24.5133.0" / "MODULE_123+abc"
    entry.mkdir(parents=True)
    (entry / "model.neff").write_bytes(b"")
    (entry / neuron_fakes.POISON_MARKER).write_text("")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    run(tmp_path, device_overrides(tmp_path, tracking, "stages=[compile]"), "a")
    assert not entry.exists() and outside.exists()
    (record,) = job_runs(tracking)
    metrics = record.data.metrics
    stage = next(r for r in children(tracking, record.info.run_id) if r.info.run_name == "compile")
    assert stage.data.metrics["compile.baseline.attempts"] == 2
    assert stage.data.metrics["compile.baseline.purged_cache_entries"] == 1
    assert metrics["compile.nki_mac_ratio"] == 0.0  # all baseline: no custom call in the HLOs
    log = next(Path(tracking["artifact_root"]).rglob("compile.log")).read_text()
    assert "Got a cached failed neff at" in log and "compiler args:" in log


def test_a_second_poisoning_fails_the_stage_with_the_log(fakes, tracking, tmp_path, monkeypatch):
    monkeypatch.setattr(neuron_fakes, "POISON_MARKER", "model.neff")  # two poisoned entries: the retry meets the second
    for name in ("MODULE_1+a", "MODULE_2+b"):
        entry = tmp_path / "ncc" / "neuronxcc-2.24" / name
        entry.mkdir(parents=True)
        (entry / "model.neff").write_bytes(b"")
    with pytest.raises(JobFailed, match="baseline compile failed"):
        run(tmp_path, device_overrides(tmp_path, tracking, "stages=[compile]"), "a")
    (record,) = job_runs(tracking)
    assert record.info.status == "FAILED"


def test_device_lock_held_by_another_job_fails_after_the_timeout(fakes, tracking, tmp_path):
    other = DeviceLock(tmp_path / "device.lock", 1)
    other.acquire({"config_hash": "other-job"})
    try:
        with pytest.raises(JobFailed, match="DeviceBusy: .*other-job"):
            run(tmp_path, device_overrides(tmp_path, tracking, "stages=[compile]"), "a")
    finally:
        other.release()
    assert not fakes["compile"]


def test_device_lock_excludes_a_second_holder(tmp_path):
    first, second = DeviceLock(tmp_path / "l", 0.2, poll_s=0.05), DeviceLock(tmp_path / "l", 0.2, poll_s=0.05)
    first.acquire({"job": "one"})
    with pytest.raises(DeviceBusy, match='"job": "one"'):
        second.acquire({"job": "two"})
    first.release()
    second.acquire({"job": "two"})
    assert second.held
    second.release()


def test_profile_captures_both_submodels_across_tp_workers(fakes, tracking, tmp_path, monkeypatch):
    neuron_fakes.install_profiler(tmp_path / "bin", monkeypatch)
    overrides = device_overrides(tmp_path, tracking, "stages=[compile,profile]", "parallel.tp_degree=2",
                                 "kernel.norm=nki_rmsnorm")
    job = run(tmp_path, overrides, "a")
    assert job.platform.session(job).builds == {}  # the models were dropped for the capture
    assert len(fakes["compile"]) == 2
    (record,) = job_runs(tracking)
    stage = next(r for r in children(tracking, record.info.run_id) if r.info.run_name == "profile")
    assert stage.info.status == "FINISHED"
    metrics = {**stage.data.metrics, **record.data.metrics}  # the headline (.time_us) is on the job run
    assert metrics["profile.cte.summary.total_time"] == 0.0125
    assert metrics["profile.tkg.summary.tensor_engine_active_time_percent"] == 41.5
    layers = 2 * 4 + 1  # the tiny model's decoder and final norms, one NKI call each per graph
    for phase in ("context", "token"):  # measured per call beside the cost model's estimate of one call
        assert metrics[f"profile.norm.{phase}.time_us"] == 2.5
        assert metrics[f"profile.norm.{phase}.calls"] == layers
        assert metrics[f"profile.est.norm.{phase}.time_us"] > 0
    assert not [k for k in metrics if "nki_other" in k]
    files = {p.relative_to(Path(tracking["artifact_root"])).parts[-2:] for p in Path(tracking["artifact_root"]).rglob("*")
             if p.is_file()}
    for short in ("cte", "tkg"):
        assert {(short, "profile_rank_0.ntff"), (short, "profile_rank_1.ntff"), (short, "summary.json"),
                (short, "profile.json"), (short, "model.neff")} <= files


@pytest.mark.slow
def test_every_wired_variant_compiles_and_exports_on_the_device(fakes, tracking, tmp_path):
    """The device platform accepts every variant that has a slot, builds NxDI's model with all of them
    installed, and exports them into one file."""
    from model.neuron.bundle import bundled_modules
    from model.neuron.slots import DEVICE_KERNELS

    wired = ["kernel.norm=nki_add_rmsnorm", "kernel.router=nki_topk", "kernel.experts=grouped_v2",
             "kernel.attention=nki_decode"]
    job = run(tmp_path, device_overrides(tmp_path, tracking, "stages=[compile,export]", *wired), "a")
    (record,) = job_runs(tracking)
    assert record.info.status == "FINISHED", record.data.tags
    assert [name for name, _ in fakes["compile"]] == ["NeuronQwen3MoeForCausalLM"] * 2
    (exported,) = Path(tracking["artifact_root"]).rglob("qwen_with_nki.py")
    modules = bundled_modules(exported.read_text())
    assert {f"kernels.{DEVICE_KERNELS[pair][0]}" for pair in [("norm", "nki_add_rmsnorm"), ("router", "nki_topk"),
                                                                ("experts", "grouped_v2"),
                                                                ("attention", "nki_decode")]} <= set(modules)
    assert job.kernels.choices()["experts"] == "grouped_v2" and job.kernels.choices()["attention"] == "nki_decode"
