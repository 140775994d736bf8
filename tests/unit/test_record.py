"""The record's schema (pipeline.tracking.record): where each figure goes, params vs tags, digits."""
from pipeline.tracking.record import config_record, rounded, stage_record


def test_values_keep_five_significant_digits():
    assert rounded(123.45678912) == 123.46 and rounded(0.000123456789) == 0.00012346
    assert rounded(1.0) == 1.0 and rounded(0) == 0.0 and rounded(850945024) == 850950000
    assert rounded(float("inf")) == float("inf")


def test_machine_specific_config_goes_to_tags():
    params, tags = config_record({"paths.root": "/r", "tracking.uri": "sqlite:///x", "kernel.norm": "baseline",
                                  "workload.seq_len": 64})
    assert params == {"kernel.norm": "baseline", "workload.seq_len": 64}
    assert tags == {"paths.root": "/r", "tracking.uri": "sqlite:///x"}


def test_each_figure_once_under_the_stage_prefix():
    on_job, on_stage = stage_record("latency", {"p0.tpot_ms": 2.0, "tpot_ms": 2.0, "est.p0.score": 1.1},
                                    {"tpot_ms": 2.0, "p0.tpot_ms": 2.0})
    assert on_job == {"latency.tpot_ms": 2.0, "latency.p0.tpot_ms": 2.0}
    assert on_stage == {"latency.est.p0.score": 1.1}
