"""Outputs: Chrome/Perfetto trace JSON, timeline and roofline PNGs, summary table, summary dict."""

import json

import pytest

import nki_cpu
from cost_kernels import BF16, four_engines_kernel, random, stream_copy_kernel
from nki_cpu import cost

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def chain_estimate():
    return cost.estimate(nki_cpu.run_kernel(four_engines_kernel, random((128, 512), BF16), True).trace)


@pytest.fixture(scope="module")
def two_core_estimate():
    run = nki_cpu.run_kernel(stream_copy_kernel, random((512, 256), BF16), grid=(2,))
    return cost.estimate(run.trace, lnc=2)


@pytest.mark.parametrize("which, tracks", [("chain_estimate", 4 + 16), ("two_core_estimate", 2 * (4 + 16))])
def test_perfetto_json_is_valid_chrome_trace_with_one_track_per_engine_and_queue(request, tmp_path, which, tracks):
    est = request.getfixturevalue(which)
    path = cost.write_perfetto(est, tmp_path / "trace.json")
    with open(path) as handle:
        body = json.load(handle)
    events = body["traceEvents"]
    names = {e["tid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert len(names) == tracks + 1 and len(set(names.values())) == tracks + 1     # + the critical-path track
    assert set(names.values()) >= set(est.schedule.tracks)
    slices = [e for e in events if e["ph"] == "X"]
    assert slices and all(e["tid"] in names and e["pid"] == 1 and e["dur"] >= 0 and e["ts"] >= 0 for e in slices)
    assert all(isinstance(e["name"], str) and "source" in e["args"] for e in slices)
    process = next(e for e in events if e["ph"] == "M" and e["name"] == "process_name")
    assert "est." in process["args"]["name"]
    per_track = {names[e["tid"]] for e in slices}
    assert {"dma0", "core1.dma0"} & per_track
    end_us = max(e["ts"] + e["dur"] for e in slices)
    assert end_us == pytest.approx(est.time_us, rel=1e-6)


def test_timeline_and_roofline_pngs_are_written(tmp_path, chain_estimate, two_core_estimate):
    timeline = cost.plot_timeline(two_core_estimate, tmp_path / "timeline.png")
    op = cost.roofline_op(flops=1e9, hbm_bytes=1e6, target="trn2", label="torch op")
    roofline = cost.plot_roofline([chain_estimate.roofline_point(), two_core_estimate.roofline_point(), op.point()],
                                  "trn2", tmp_path / "roofline.png")
    for path in (timeline, roofline):
        with open(path, "rb") as handle:
            data = handle.read()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_summary_table_labels_estimates_and_shows_the_critical_path(chain_estimate):
    table = cost.summary_table(chain_estimate)
    assert "ESTIMATE" in table and f"{chain_estimate.time_us:.2f} us" in table
    assert all("est." in line for line in table.splitlines()[1:3])
    assert "cost_kernels.py:" in table and "nc_matmul" in table
    for engine in ("tensor", "vector", "scalar", "gpsimd", "dma"):
        assert f"\n  {engine} " in table


def test_summary_dict_is_json_and_consistent(chain_estimate):
    summary = chain_estimate.summary()
    json.dumps(summary)
    assert summary["est_time_us"] == pytest.approx(chain_estimate.time_us)
    assert summary["critical_path_length"] == 5
    assert set(summary["est_engine_busy_fraction"]) == {"tensor", "vector", "scalar", "gpsimd", "dma"}
    assert 0 < summary["est_engine_busy_fraction"]["tensor"] < 1
