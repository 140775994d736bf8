"""Building blocks: collectives, experts touched, the roofline's efficiency, settings from the config."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nki_cpu import cost
from pipeline.config.validate import ConfigError, to_pipeline_conf, validate
from pipeline.estimate import EstimateSettings
from pipeline.estimate.collectives import ring_all_gather_ns, ring_all_reduce_ns
from pipeline.estimate.ops import experts_touched
from tests.conftest import compose_config


def test_ring_all_reduce_hops_and_bytes():
    # 4 ranks: 6 hops; each rank sends 2 x 3/4 of a 4 KB message at 725 B/ns
    assert ring_all_reduce_ns(4096, 4, 1500.0, 725.0) == pytest.approx(6 * 1500 + 6144 / 725)
    assert ring_all_gather_ns(4096, 4, 1500.0, 725.0) == pytest.approx(3 * 1500 + 3072 / 725)
    assert ring_all_reduce_ns(4096, 1, 1500.0, 725.0) == ring_all_gather_ns(4096, 1, 1500.0, 725.0) == 0.0
    # hardware-and-model.md §4: 96 all-reduces per token at 1-2 us per hop are 0.6-1.2 ms
    assert 0.57 < 96 * ring_all_reduce_ns(4096, 4, 1000.0, 725.0) / 1e6 < 0.6


def test_experts_touched_matches_the_reference_table():
    # hardware-and-model.md §10.2: 92.9 experts at S=20 (92.79 to two decimals), 125.9 at S=64, ~128 from S=128
    assert experts_touched(20, 8, 128) == pytest.approx(92.79, abs=0.005)
    assert experts_touched(64, 8, 128) == pytest.approx(125.9, abs=0.05)
    assert experts_touched(128, 8, 128) == pytest.approx(128, abs=0.05)


def test_roofline_efficiency_scales_the_floor_not_the_overhead():
    full = cost.roofline_op(0, 7.25e6, "trn2", 2, overhead_ns=100.0)
    half = cost.roofline_op(0, 7.25e6, "trn2", 2, overhead_ns=100.0, efficiency=0.5)
    assert (full.time_ns, half.time_ns) == (pytest.approx(10_100), pytest.approx(20_100))
    with pytest.raises(ValueError):
        cost.roofline_op(0, 1, efficiency=0)


def conf(overrides, tmp_path: Path):
    return to_pipeline_conf(compose_config(overrides, tmp_path))


def test_settings_from_presets(tmp_path):
    tiny = EstimateSettings.from_conf(conf([], tmp_path), model_layers=4)
    assert (tiny.layers, tiny.lnc, tiny.target) == (4, 2, "trn2")
    assert (tiny.host_step_ns, tiny.allreduce_hop_ns) == (pytest.approx(10.43e6), pytest.approx(1121))
    assert tiny.calibration.startswith("calibrated on 20 device points: TTFT ±3%")
    sliced = EstimateSettings.from_conf(conf(["model=qwen3_30b_a3b_slice", "platform.target=trn3"], tmp_path), 2)
    assert (sliced.layers, sliced.target) == (48, "trn3")
    assert (tiny.graph_op_ns, sliced.graph_op_ns) == (pytest.approx(322.1), pytest.approx(1018))
    assert sliced.hbm_bytes_per_ns == pytest.approx(4900 * 2 / 8)


@pytest.mark.parametrize("override, message", [
    ("estimate.lnc=3", "estimate.lnc=3"), ("estimate.torch_op_efficiency=1.5", "torch_op_efficiency"),
    ("platform.target=trn1", "platform.target=trn1"), ("estimate.layers=0", "estimate.layers=0"),
    ("estimate.block_us=-1", "block_us"), ("estimate.band.TKG=-0.1", "band"),
])
def test_bad_estimate_settings_fail_validation(override, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        validate(conf([override], tmp_path))


def test_the_package_imports_first_in_a_fresh_interpreter():
    """pipeline.config imports the stages, and the latency stage imports this package: no cycle from here."""
    src = Path(__file__).resolve().parents[2] / "src"
    result = subprocess.run([sys.executable, "-c", "import pipeline.estimate.breakdown"], capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(src)}, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
