"""The calibration suite's mechanics: points file, fit with leave-one-out, rank correlation, the command's
outputs and MLflow run. (The calibration itself, every published point, runs in `make calibrate`.)"""

import json
import textwrap
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from nki_cpu.cost import calibration as kc
from pipeline import calibrate

ROOT = Path(__file__).resolve().parents[2]

# Rows of a wider HBM matrix: 1 KiB runs, so the DMA descriptor cost moves the estimate.
KERNEL = textwrap.dedent('''
    import nki
    import nki.isa as nisa
    import nki.language as nl


    @nki.jit
    def rows(a):
        out = nl.ndarray((128, 512), dtype=a.dtype, buffer=nl.shared_hbm)
        tile = nl.ndarray((128, 512), dtype=a.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=tile, src=a[0:128, 0:512])
        nisa.dma_copy(dst=out, src=tile)
        return out
''')


def _points(tmp_path: Path, measured: list[float], quantity: str = "kernel_time") -> Path:
    (tmp_path / "kernel.py").write_text(KERNEL)
    entries = "".join(textwrap.dedent(f'''
          - name: rows{i}
            family: dma
            target: trn2
            lnc: 1
            kernel: kernel.py::rows
            inputs: [[128, 2048, bfloat16]]
            measured_ns: {ns}
            quantity: {quantity}
            measured: "synthetic"
            derived: "the model's own estimate at a known descriptor cost"
            source: "this test"
        ''') for i, ns in enumerate(measured))
    path = tmp_path / "points.yaml"
    path.write_text("points:" + textwrap.indent(entries, "  "))
    return path


def _traced(path: Path):
    points = kc.load_points(path)
    return points, {p.name: kc.trace_point(p, *kc.own_kernel(p, path.parent)) for p in points}


def _model_at(point, trace, descriptor_ns: float) -> float:
    return kc.estimated_ns(point, trace, kc.with_values(kc.hardware("trn2"), {"dma_descriptor_ns": descriptor_ns}))


def test_fit_recovers_the_descriptor_cost_that_produced_the_measurements(tmp_path):
    points, traces = _traced(_points(tmp_path, [1.0, 1.0]))
    truth = 32.0
    measured = [_model_at(p, traces[p.name], truth) for p in points]
    points = [kc.Point(**{**p.__dict__, "measured_ns": m}) for p, m in zip(points, measured)]
    result = kc.fit(points, traces)
    assert result.values == {"dma_descriptor_ns": truth}
    assert all(result.loo_values[p.name] == {"dma_descriptor_ns": truth} for p in points)
    assert result.estimated == pytest.approx({p.name: m for p, m in zip(points, measured)})


def test_leave_one_out_predicts_a_point_from_the_others_only(tmp_path):
    points, traces = _traced(_points(tmp_path, [1.0, 1.0, 1.0]))
    low, high = (_model_at(points[0], traces["rows0"], v) for v in (8.0, 48.0))
    points = [kc.Point(**{**p.__dict__, "measured_ns": m}) for p, m in zip(points, (low, low, high))]
    result = kc.fit(points, traces)
    assert result.loo_values["rows2"] == {"dma_descriptor_ns": 8.0}       # fitted on the two low points
    assert result.loo_estimated["rows2"] == pytest.approx(low)
    assert 8.0 < result.values["dma_descriptor_ns"] < 48.0                # in sample: a compromise of all three


def test_points_with_an_unknown_quantity_or_target_fail_when_loaded(tmp_path):
    with pytest.raises(ValueError, match="unknown quantity 'wall_clock'"):
        kc.load_points(_points(tmp_path, [1.0], quantity="wall_clock"))
    bad = tmp_path / "target.yaml"
    bad.write_text(_points(tmp_path, [1.0]).read_text().replace("target: trn2", "target: trn9"))
    with pytest.raises(ValueError):
        kc.load_points(bad)


def test_spearman_and_error_summary():
    assert kc.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kc.spearman([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(-1.0)
    assert kc.spearman([1, 2, 3], [5, 5, 6]) == pytest.approx(0.8660254)
    summary = kc.error_summary([100.0, 100.0, 100.0], [110.0, 80.0, 140.0])
    assert summary["max_abs_rel"] == pytest.approx(0.4)
    assert summary["within_30pct"] == pytest.approx(2 / 3)


def test_the_repository_points_name_existing_kernels():
    points_file = ROOT / "calibration" / "points.yaml"
    points = kc.load_points(points_file)
    assert len([p for p in points if p.family == "matmul"]) == 9
    for point in points:
        kernel_file, function = kc.own_kernel(point, points_file.parent)
        assert kernel_file.is_file(), point.name
        assert f"def {function}(" in kernel_file.read_text(), point.name


def test_the_command_writes_its_records_plot_and_mlflow_run(tmp_path):
    points_file = _points(tmp_path, [3000.0, 6000.0])
    out, uri = tmp_path / "out", f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert calibrate.main(["--points", str(points_file), "--model-points", "", "--out", str(out), "--tracking-uri", uri,
                           "--artifact-root", str(tmp_path / "mlruns")]) == 0
    records = json.loads((out / "calibration.json").read_text())
    assert [r["name"] for r in records] == ["rows0", "rows1"]
    assert {"name", "target", "measured_ns", "estimated_ns", "loo_estimated_ns"} <= set(records[0])
    assert (out / "calibration_scatter.png").stat().st_size > 10_000
    assert "| kernel | rows0 | trn2 |" in (out / "calibration.md").read_text()
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("calibration").experiment_id])
    assert run.info.status == "FINISHED"
    assert "kernel.median_abs_log" in run.data.metrics
    assert "fitted.dma_descriptor_ns" in run.data.params
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"calibration.json", "calibration.md"}
