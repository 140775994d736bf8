"""`make calibrate`: the cost model and the model-level estimate against every published device measurement.

    python -m pipeline.calibrate [--sources DIR] [--out DIR] [--tracking-uri URI]

Kernel level: every point of `calibration/points.yaml` runs (our kernel issuing the published kernel's
instruction stream) through the interpreter and the cost model; the few fitted constants are fitted and each
point is also predicted leave-one-out. With `--sources DIR` (git checkouts of the public repositories, e.g.
DIR/nki-autotune) the published kernels themselves run too, unmodified, and are estimated beside ours; so do
the checks of `calibration/originals.yaml` (published kernels against their own torch references,
`pipeline.calibration_sources`), written to `originals.json` and a section of `calibration.md`.
Model level: the estimate of whole decode steps and prompts against the contest's and others' measurements
(`pipeline.estimate.calibrate`). Writes `calibration.json` (one record per point), `calibration.md` and a
log-log scatter into the output folder and logs them as one run of the MLflow experiment `calibration`.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

from nki_cpu.cost import calibration as kc
from pipeline import calibration_sources
from pipeline.config import project_root
from pipeline.estimate.calibrate import model_level_report

EXPERIMENT = "calibration"


def _say(message: str) -> None:
    print(message, flush=True)


def kernel_records(points_file: Path, sources: Path | None, workdir: Path) -> tuple[list[dict], dict]:
    """Trace, fit and predict every kernel point; with `sources`, estimate the originals too."""
    points = kc.load_points(points_file)
    traces = {}
    for i, point in enumerate(points, 1):
        started = time.perf_counter()
        kernel_file, function = kc.own_kernel(point, points_file.parent)
        traces[point.name] = kc.trace_point(point, kernel_file, function)
        _say(f"  [{i}/{len(points)}] traced {point.name} ({time.perf_counter() - started:.1f} s)")
    result = kc.fit(points, traces)
    records = []
    for point in points:
        est, loo = result.estimated[point.name], result.loo_estimated[point.name]
        record = {
            "name": point.name, "level": "kernel", "family": point.family, "target": point.target,
            "lnc": point.lnc, "quantity": point.quantity, "measured_ns": point.measured_ns,
            "estimated_ns": est, "loo_estimated_ns": loo,
            "error_pct": 100 * (est / point.measured_ns - 1), "loo_error_pct": 100 * (loo / point.measured_ns - 1),
            "measured": point.measured, "derived": point.derived, "source": point.source,
        }
        if sources is not None:
            record.update(_original(point, sources, workdir, result.values))
        records.append(record)
    return records, result.values


def _original(point: kc.Point, sources: Path, workdir: Path, values: dict[str, float]) -> dict:
    """The published kernel run unmodified and estimated with the fitted constants."""
    found = kc.original_kernel(point, sources, workdir)
    if found is None:
        return {"original_status": "not found under --sources" if point.original else "no published kernel"}
    try:
        trace = kc.trace_point(point, *found)
    except Exception as error:  # a published kernel the interpreter cannot run: reported, not fatal
        return {"original_status": f"failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}"}
    hw = kc.hardware(point.target)
    est = kc.estimated_ns(point, trace, kc.with_values(hw, values))
    return {"original_status": "ran unmodified", "original_estimated_ns": est}


def original_checks(checks_file: Path, sources: Path, workdir: Path, values: dict[str, float]) -> list[dict]:
    """Every check of `checks_file` run from `sources`, each estimated with the fitted constants when it ran."""
    from nki_cpu.cost.estimate import estimate

    def estimated(check: calibration_sources.Check, trace) -> float:
        hw = kc.with_values(kc.hardware(check.target), values)
        return estimate(trace, check.target, check.grid, hw=hw).time_ns

    checks = calibration_sources.load_checks(checks_file)
    return calibration_sources.run_checks(checks, sources, workdir, estimated, say=_say)


def summarise(records: list[dict]) -> dict[str, float]:
    """Error figures per level, in-sample and leave-one-out, and the matmul family's rank correlation."""
    summary: dict[str, float] = {}
    for level in sorted({r["level"] for r in records}):
        chosen = [r for r in records if r["level"] == level and r.get("fit", True)]
        measured = [r["measured_ns"] for r in chosen]
        for kind, key in (("", "estimated_ns"), ("loo.", "loo_estimated_ns")):
            for name, value in kc.error_summary(measured, [r[key] for r in chosen]).items():
                summary[f"{level}.{kind}{name}"] = value
        summary[f"{level}.points"] = len(chosen)
    matmul = [r for r in records if r.get("family") == "matmul"]
    if matmul:
        summary["kernel.spearman_matmul"] = kc.spearman([r["measured_ns"] for r in matmul],
                                                        [r["estimated_ns"] for r in matmul])
        summary["kernel.loo.spearman_matmul"] = kc.spearman([r["measured_ns"] for r in matmul],
                                                            [r["loo_estimated_ns"] for r in matmul])
    return summary


def table(records: list[dict]) -> str:
    lines = ["| level | point | target | measured | estimated | error | leave-one-out | error (LOO) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in records:
        name = r["name"] if r.get("fit", True) else f"{r['name']} (check, not fitted)"
        lines.append(f"| {r['level']} | {name} | {r['target']} | {_time(r['measured_ns'])} | "
                     f"{_time(r['estimated_ns'])} | {r['error_pct']:+.1f}% | {_time(r['loo_estimated_ns'])} | "
                     f"{r['loo_error_pct']:+.1f}% |")
    originals = [r for r in records if "original_status" in r]
    if originals:
        lines += ["", "| point | published kernel | its estimate | ours |", "|---|---|---|---|"]
        for r in originals:
            theirs = _time(r["original_estimated_ns"]) if "original_estimated_ns" in r else "-"
            lines.append(f"| {r['name']} | {r['original_status']} | {theirs} | {_time(r['estimated_ns'])} |")
    return "\n".join(lines) + "\n"


def _time(ns: float) -> str:
    return f"{ns / 1e6:.2f} ms" if ns >= 1e6 else f"{ns / 1e3:.1f} us" if ns >= 1e3 else f"{ns:.0f} ns"


def scatter(records: list[dict], path: Path) -> None:
    """Estimated against measured on log-log axes, the ±30% band around the diagonal."""
    from nki_cpu.cost.plots import agg_figure

    figure = agg_figure((6.5, 6))
    axes = figure.add_subplot()
    for level, marker in (("kernel", "o"), ("model", "s")):
        chosen = [r for r in records if r["level"] == level]
        if chosen:
            axes.scatter([r["measured_ns"] / 1e3 for r in chosen], [r["estimated_ns"] / 1e3 for r in chosen],
                         marker=marker, label=f"{level} ({len(chosen)})")
            axes.scatter([r["measured_ns"] / 1e3 for r in chosen], [r["loo_estimated_ns"] / 1e3 for r in chosen],
                         marker=marker, facecolors="none", edgecolors="grey", label=f"{level}, leave-one-out")
    low = min(min(r["measured_ns"], r["estimated_ns"]) for r in records) / 1e3 / 1.5
    high = max(max(r["measured_ns"], r["estimated_ns"]) for r in records) / 1e3 * 1.5
    axes.plot([low, high], [low, high], color="black", linewidth=0.8)
    for factor in (0.7, 1.3):
        axes.plot([low, high], [low * factor, high * factor], color="black", linewidth=0.5, linestyle=":")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("measured on device (us)")
    axes.set_ylabel("estimated by the cost model (us, an estimate)")
    axes.set_title("Calibration: estimate vs device measurement (dotted: ±30%)")
    axes.legend(loc="upper left", fontsize=8)
    figure.savefig(path, dpi=110, bbox_inches="tight")


def log_to_mlflow(uri: str, artifact_root: str, out: Path, summary: dict, values: dict) -> str:
    from pipeline.tracking.store import Store

    store = Store(uri, EXPERIMENT, artifact_root)
    run_id = store.start_run(f"calibration {time.strftime('%Y-%m-%d %H:%M')}")
    store.log(run_id, metrics={k: v for k, v in summary.items() if math.isfinite(v)},
              params={f"fitted.{k}": v for k, v in values.items()})
    store.log_artifacts(run_id, out)
    store.end(run_id, "FINISHED")
    return run_id


def main(argv: list[str] | None = None) -> int:
    root = Path(project_root())
    parser = argparse.ArgumentParser(prog="python -m pipeline.calibrate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=Path, default=root / "calibration" / "points.yaml")
    parser.add_argument("--model-points", default=str(root / "calibration" / "model_points.yaml"),
                        help="model-level points (none: --model-points '')")
    parser.add_argument("--sources", type=Path, default=None,
                        help="folder of git checkouts of the public repositories (e.g. DIR/nki-autotune)")
    parser.add_argument("--originals", type=Path, default=root / "calibration" / "originals.yaml",
                        help="published kernels checked against their torch references (with --sources)")
    parser.add_argument("--out", type=Path, default=root / "outputs" / "calibration")
    parser.add_argument("--tracking-uri", default=f"sqlite:///{root / 'mlflow.db'}")
    parser.add_argument("--artifact-root", default=str(root / "mlruns"))
    args = parser.parse_args(argv)
    args.model_points = Path(args.model_points) if args.model_points else None
    if args.sources is not None and not args.sources.is_dir():
        parser.error(f"--sources {args.sources} is not a folder")
    if args.sources is not None and not args.originals.is_file():
        parser.error(f"--originals {args.originals} is not a file")
    args.out.mkdir(parents=True, exist_ok=True)
    _say(f"calibration: kernel points from {args.points}")
    originals: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="nki-calibration-") as workdir:
        records, values = kernel_records(args.points, args.sources, Path(workdir))
        if args.sources is not None:
            _say(f"calibration: published kernels against their references from {args.originals}")
            originals = original_checks(args.originals, args.sources, Path(workdir), values)
    if args.model_points is not None:
        _say(f"calibration: model-level points from {args.model_points}")
        records += model_level_report(args.model_points)
    summary = summarise(records)
    markdown = table(records)
    if args.sources is not None:
        summary.update(calibration_sources.summary(originals))
        (args.out / "originals.json").write_text(json.dumps(originals, indent=2) + "\n")
        markdown += ("\n## Published kernels against their own references (run unmodified from --sources)\n\n"
                     + calibration_sources.table(originals))
    (args.out / "calibration.json").write_text(json.dumps(records, indent=2) + "\n")
    (args.out / "calibration.md").write_text(markdown)
    scatter(records, args.out / "calibration_scatter.png")
    run_id = log_to_mlflow(args.tracking_uri, args.artifact_root, args.out, summary, values)
    _say(markdown)
    _say("fitted: " + ", ".join(f"{k} = {v:g}" for k, v in values.items()))
    _say("summary (estimates, not measurements): " + ", ".join(f"{k} {v:.3f}" for k, v in summary.items()))
    _say(f"outputs: {args.out}\nMLflow: run {run_id} in experiment '{EXPERIMENT}' ({args.tracking_uri})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
