"""The score stage: the contest's figure is the sum over prompts (nki-moe main.py evaluate_all); on the CPU it is
named a CPU-time score, with its spread over the timed repeats and a warning when it cannot mean anything."""
import pytest

from pipeline.config.validate import to_pipeline_conf
from pipeline.job import Job
from pipeline.stages import STAGES
from pipeline.stages.base import StageResult
from pipeline.stages.latency import RUNS_KEY
from pipeline.stages.score import noise_warning
from tests.conftest import compose_config


def cpu_job(tmp_path, runs: list[float], overrides=()) -> Job:
    """A job whose latency stage timed each prompt `runs` (ms per e2e run); e2e p99 10 ms, 50 tok/s."""
    job = Job(to_pipeline_conf(compose_config(list(overrides), tmp_path)), tmp_path)  # smoke: two prompts
    latency = {p.index: {"e2e_p99_ms": 10.0, "throughput_tok_s": 50.0, RUNS_KEY: runs} for p in job.prompts}
    job.results["latency"] = StageResult(headline={"est.score": 1.25}, data=latency)
    return job


def test_cpu_score_is_the_sum_over_prompts_named_as_cpu_time(tmp_path):
    job = cpu_job(tmp_path, [10.0, 10.0])  # all baseline: scored against itself
    job.results["accuracy"] = StageResult(data={"per_prompt": {0: True, 1: False}})
    result = STAGES["score"].run(job)
    assert result.data == {0: 1.0, 1: 0.0}
    assert result.headline["cpu_time"] == pytest.approx(1.0) and result.headline["cpu_time_mean"] == pytest.approx(0.5)
    assert "contest" not in result.headline and set(result.metrics) == {"p0", "p1", "cpu_time_repeats"}
    assert result.summary.startswith("est. score 1.250 (Trainium estimate, higher is better) | CPU-time score")


def test_spread_over_repeats_and_the_noise_warning(tmp_path):
    p0 = cpu_job(tmp_path, [8.0])
    length = p0.prompts[0].total_length, p0.prompts[1].total_length
    # a repeat of e2e t ms scores (10 / t) x (length / t x 1000 / 50) per prompt
    expected = sorted(sum(10 / t * (n / t * 1000) / 50 for n in length) for t in (8.0, 10.0, 12.5))
    job = cpu_job(tmp_path, [10.0, 8.0, 12.5])
    result = STAGES["score"].run(job)
    assert result.headline["cpu_time_min"] == pytest.approx(expected[0])
    assert result.headline["cpu_time_median"] == pytest.approx(expected[1])
    assert result.headline["cpu_time_spread"] == pytest.approx((expected[2] - expected[0]) / expected[1])
    assert result.metrics["cpu_time_repeats"] == 3
    assert "varies by" in result.tags["score.warning"] and "WARNING: the CPU-time score varies" in result.summary
    steady = STAGES["score"].run(cpu_job(tmp_path, [10.0, 10.1, 9.9]))
    assert steady.headline["cpu_time_spread"] < 0.2 and "score.warning" not in steady.tags


def test_nki_on_the_interpreter_is_flagged_whatever_the_spread(tmp_path):
    job = Job(to_pipeline_conf(compose_config(["kernel.norm=nki_rmsnorm"], tmp_path)), tmp_path)
    assert "norm run on the CPU interpreter" in noise_warning(job, 0.0)
    reference = Job(to_pipeline_conf(compose_config(["kernel.norm=nki_rmsnorm", "platform.executor=reference"],
                                                    tmp_path)), tmp_path)
    assert noise_warning(reference, 0.0) == ""
