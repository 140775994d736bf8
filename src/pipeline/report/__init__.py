"""Comparison reports of an experiment's job runs: report.html beside its PNGs (pareto.png, breakdown.png, and
the sweep comparison's comparison.png).

    written = write_report(client, "pipeline", out_dir, run_filter="tags.workload = 'smoke'")

Sections: the leaderboard (tracking.comparison's ranked table, the contest score labelled estimate or
measurement, the all-baseline runs named), the Pareto front of TTFT against throughput, the per-op time breakdown
of the best runs (the latency stage's estimate), the accuracy verdicts, and the contest's baselines beside the
first place's results. `python -m pipeline.report` (report.app) and the `report` stage write it.
"""
from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from pipeline.report.data import BREAKDOWN_RUNS, ReportError, collect
from pipeline.report.figures import plot_breakdowns, plot_pareto, point
from pipeline.report.page import best_against_first_place, contest, image, leaderboard, verdicts, write_page
from pipeline.tracking.comparison import plot as plot_comparison

__all__ = ["ReportError", "write_report"]


MAX_LABEL = 40  # characters of a run name on a figure's axis (the tables keep it whole)


def _labels(data) -> dict[str, str]:
    """Run names as the figures show them: shortened, and with the run id's start when two runs share one."""
    short = {r.run_id: r.name if len(r.name) <= MAX_LABEL else r.name[: MAX_LABEL - 3] + "..." for r in data.rows}
    names = list(short.values())
    return {i: name if names.count(name) == 1 else f"{name} [{i[:7]}]" for i, name in short.items()}


def write_report(client: MlflowClient, experiment: str, out_dir: Path, run_filter: str = "") -> list[Path]:
    """report.html and its PNGs into out_dir; the paths written. ReportError when there is nothing to report."""
    data = collect(client, experiment, run_filter)
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = _labels(data)
    points = [p for p in (point(data.runs[r.run_id], labels[r.run_id]) for r in data.rows) if p is not None]
    drawn = {
        "comparison.png": plot_comparison(data.rows, out_dir / "comparison.png"),
        "pareto.png": plot_pareto(points, out_dir / "pareto.png"),
        "breakdown.png": plot_breakdowns({labels[i]: b for i, b in data.breakdowns.items()}, out_dir / "breakdown.png"),
    }
    where = f"experiment '{experiment}'" + (f", runs matching <code>{run_filter}</code>" if run_filter else "")
    sections = [
        ("Leaderboard", f"<p>{len(data.rows)} job run(s) of {where}.</p>" + leaderboard(data.rows, data.runs)
         + image("comparison.png", drawn["comparison.png"], "no run logged a plotted headline metric")),
        ("Pareto front: TTFT against throughput", image("pareto.png", drawn["pareto.png"],
                                                         "no run logged TTFT and throughput")),
        (f"Per-op time breakdown (best {BREAKDOWN_RUNS} runs)",
         image("breakdown.png", drawn["breakdown.png"], "no run has the latency stage's est_breakdown.json")),
        ("Accuracy verdicts", verdicts(data.rows, data.runs)),
        ("Contest baselines and the first place", best_against_first_place(data.rows) + contest()),
    ]
    html_path = write_page(out_dir / "report.html", f"Comparison report: {experiment}", sections)
    return [html_path, *(out_dir / name for name, done in drawn.items() if done)]
