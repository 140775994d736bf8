"""The score stage's headline is the contest's figure: the sum over prompts (nki-moe main.py evaluate_all)."""
import pytest

from pipeline.config.validate import to_pipeline_conf
from pipeline.job import Job
from pipeline.stages import STAGES
from pipeline.stages.base import StageResult
from tests.conftest import compose_config


def test_contest_score_is_the_sum_over_prompts_and_the_mean_is_named_so(tmp_path):
    job = Job(to_pipeline_conf(compose_config([], tmp_path)), tmp_path)  # smoke: two prompts, all baseline
    latency = {p.index: {"e2e_p99_ms": 10.0, "throughput_tok_s": 50.0} for p in job.prompts}
    job.results["latency"] = StageResult(data=latency)  # the baseline against itself: 1.0 per passing prompt
    job.results["accuracy"] = StageResult(data={"per_prompt": {0: True, 1: False}})
    result = STAGES["score"].run(job)
    assert result.data == {0: 1.0, 1: 0.0}
    assert result.headline["contest"] == pytest.approx(1.0) and result.headline["contest_mean"] == pytest.approx(0.5)
    assert set(result.metrics) == {"p0", "p1"} and "contest_total" not in result.headline
