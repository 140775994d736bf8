"""The contest score of estimates: the formula by hand, the contest CSVs as the reference for the contest
setup, this config's all-baseline estimate otherwise."""
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from pipeline.config import CONF_DIR
from pipeline.config.validate import to_pipeline_conf
from pipeline.estimate import estimate_job
from pipeline.estimate.contest import baseline_rows, contest_prompts
from pipeline.evaluation.contest_score import contest_score
from pipeline.job import Job
from tests.conftest import compose_config

CONTEST = ["model=qwen3_30b_a3b_slice", "parallel.tp_degree=4", "workload=contest"]


def job(overrides, tmp_path: Path) -> Job:
    return Job(to_pipeline_conf(compose_config(overrides, tmp_path)), tmp_path)


def test_score_formula_by_hand():
    # (12000 / 6000) x (100 / 50) x (1 + 0.5) = 6
    assert contest_score(1.0, 12000.0, 6000.0, 100.0, 50.0, 0.5) == pytest.approx(6.0)
    assert contest_score(0.0, 12000.0, 6000.0, 100.0, 50.0, 0.5) == 0.0


def test_contest_data_ships_with_the_package():
    assert [(r.prompt, r.latency_ms, r.throughput_tok_s) for r in baseline_rows("trn2")][0] == (0, 12498.0, 51.86)
    assert [r.latency_ms for r in baseline_rows("trn3")] == [17138.28, 12427.41, 16208.29, 17177.15, 3871.62]
    assert contest_prompts() == list(OmegaConf.load(CONF_DIR / "workload" / "contest.yaml").prompts)


@pytest.mark.parametrize("target", ["trn2", "trn3"])
def test_contest_setup_is_scored_against_the_contest_csv(target, tmp_path):
    estimate = estimate_job(job([*CONTEST, f"platform.target={target}"], tmp_path), nki_ratio=0.25)
    assert estimate.reference.startswith(f"contest prompt_data_{target}.csv")
    assert estimate.settings.layers == 48 and estimate.contest_model
    assert estimate.measured_ms_per_token == {"trn2": 19.2, "trn3": 26.4}[target]
    for prompt, row in zip(estimate.ours.prompts, baseline_rows(target)):
        e2e_ms = prompt.e2e_ns / 1e6
        by_hand = (row.latency_ms / e2e_ms) * ((640 / (e2e_ms / 1e3)) / row.throughput_tok_s) * 1.25
        assert estimate.scores[prompt.index] == pytest.approx(by_hand)
    assert [p.prompt_tokens for p in estimate.ours.prompts] == [20, 192, 54, 14, 512]  # hardware-and-model.md §10.3


def test_other_configs_are_scored_against_their_all_baseline_estimate(tmp_path):
    estimate = estimate_job(job(["workload.max_new_tokens=4"], tmp_path), nki_ratio=0.0)
    assert estimate.reference == "estimate of this config with every kernel baseline"
    assert not estimate.contest_model and estimate.measured_ms_per_token is None
    assert estimate.accuracy_source == "not checked: assumed 1"
    assert estimate.scores == pytest.approx({0: 1.0, 1: 1.0})  # the baseline against itself


def test_the_slice_without_the_full_layer_count_is_not_the_contest_setup(tmp_path):
    estimate = estimate_job(job([*CONTEST, "estimate.layers=2"], tmp_path), nki_ratio=0.0)
    assert not estimate.contest_model and "every kernel baseline" in estimate.reference
