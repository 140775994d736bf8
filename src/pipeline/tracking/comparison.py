"""A comparison of job runs at a glance: MLflow job runs -> table rows (best first) -> a markdown / HTML / CSV
table, a PNG plot, and summary metrics. A sweep's parent run gets it when the sweep ends
(callbacks.MlflowSweepCallback); a report over any set of runs can reuse it.

    rows = comparison_rows(runs)                  # mlflow.entities.Run of job runs (not stage runs)
    paths = write_comparison(rows, out_dir)       # comparison.md / .html / .csv / .png
    metrics = summary_metrics(rows)               # sweep.jobs, sweep.failed, sweep.best_<column>, ...
    text = to_markdown(rows)                      # also the parent run's description

The columns are the record's headline metrics (README "The record"); a run lacking one (e.g. a sweep without
`latency`) shows "-". Runs are ranked by the first column any FINISHED run has, in its better direction.
"""
from __future__ import annotations

import csv
import html
import io
import math
from dataclasses import dataclass
from pathlib import Path

from mlflow.entities import Run, RunStatus


@dataclass(frozen=True)
class Column:
    metric: str  # the job run's metric key
    label: str
    higher_is_better: bool


COLUMNS = (
    Column("latency.est.score", "est. score", True),
    Column("latency.est.ttft_ms", "est. TTFT ms", False),
    Column("latency.est.tkg_step_ms", "est. TKG step ms", False),
    Column("latency.est.host_ms", "est. host ms", False),
    Column("accuracy.passed", "accuracy passed", True),
    Column("accuracy.max_err_top_all", "worst logit error", False),
    Column("accuracy.min_margin", "min top-1 margin", True),
    Column("compile.nki_mac_ratio", "NKI MAC ratio", True),
    Column("score.cpu_time", "CPU-time score", True),
    Column("score.cpu_time_spread", "CPU-time spread", False),
    Column("score.contest_mean", "contest score / prompt (device)", True),  # measured on Trainium (score stage)
)
PLOTTED = ("latency.est.score", "score.cpu_time", "accuracy.max_err_top_all")
FINISHED = RunStatus.to_string(RunStatus.FINISHED)
BEST_SHOWN = 3


@dataclass(frozen=True)
class Row:
    run_id: str
    name: str
    status: str
    varied: dict[str, str]  # the params that differ between the compared runs (what the sweep changed)
    metrics: dict[str, float]  # the headline columns this run logged


def ranking(rows: list[Row]) -> Column | None:
    """The column runs are ranked by: the first one a FINISHED run logged."""
    return next((c for c in COLUMNS if any(r.status == FINISHED and c.metric in r.metrics for r in rows)), None)


def comparison_rows(runs: list[Run]) -> list[Row]:
    """One row per job run, best first (FINISHED runs with the ranking metric, then the rest by name)."""
    params = [r.data.params for r in runs]
    keys = sorted({k for p in params for k in p})
    varied = [k for k in keys if len({p.get(k) for p in params}) > 1]
    rows = [
        Row(r.info.run_id, r.info.run_name or r.info.run_id, r.info.status,
            {k: r.data.params.get(k, "-") for k in varied},
            {c.metric: r.data.metrics[c.metric] for c in COLUMNS if c.metric in r.data.metrics})
        for r in runs
    ]
    column = ranking(rows)

    def order(row: Row) -> tuple:
        value = row.metrics.get(column.metric) if column and row.status == FINISHED else None
        if value is None or math.isnan(value):
            return (1, 0.0, row.name)
        return (0, -value if column.higher_is_better else value, row.name)

    return sorted(rows, key=order)


def _columns(rows: list[Row]) -> list[Column]:
    return [c for c in COLUMNS if any(c.metric in r.metrics for r in rows)]


def _cells(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    columns = _columns(rows)
    varied = list(rows[0].varied) if rows else []
    header = ["run", "status", *varied, *(c.label for c in columns)]
    body = [[r.name, r.status, *(r.varied[k] for k in varied),
             *(f"{r.metrics[c.metric]:.5g}" if c.metric in r.metrics else "-" for c in columns)] for r in rows]
    return header, body


def best_runs(rows: list[Row]) -> list[Row]:
    column = ranking(rows)
    if column is None:
        return []
    return [r for r in rows if r.status == FINISHED and column.metric in r.metrics][:BEST_SHOWN]


def to_markdown(rows: list[Row]) -> str:
    """The table with the best runs named above it (MLflow renders a run description as markdown)."""
    header, body = _cells(rows)
    column = ranking(rows)
    lines = [f"**{len(rows)} job run(s)**, {sum(r.status != FINISHED for r in rows)} not finished."]
    if column:
        best = ", ".join(f"`{r.name}` ({r.metrics[column.metric]:.5g})" for r in best_runs(rows))
        better = "higher" if column.higher_is_better else "lower"
        lines.append(f"Best by {column.label} ({column.metric}, {better} is better): {best}.")
    escape = [[cell.replace("|", "\\|") for cell in row] for row in [header, *body]]
    lines += ["", "| " + " | ".join(escape[0]) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in escape[1:]]
    return "\n".join(lines)


def to_csv(rows: list[Row]) -> str:
    header, body = _cells(rows)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header, *body])
    return out.getvalue()


def to_html(rows: list[Row]) -> str:
    header, body = _cells(rows)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    cells = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body)
    return f"<table border=\"1\"><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>\n"


def plot(rows: list[Row], path: Path) -> bool:
    """One horizontal bar chart per plotted headline metric any run has; False (nothing written) if none."""
    columns = [c for c in _columns(rows) if c.metric in PLOTTED]
    if not columns or not rows:
        return False
    from nki_cpu.cost.plots import agg_figure  # here: importing the cost model costs seconds, the table nothing

    figure = agg_figure((4.5 * len(columns), 0.8 + 0.35 * len(rows)))
    names = [r.name for r in rows][::-1]
    for i, column in enumerate(columns):
        axes = figure.add_subplot(1, len(columns), i + 1)
        values = [r.metrics.get(column.metric, math.nan) for r in rows][::-1]
        axes.barh(range(len(rows)), [0.0 if math.isnan(v) else v for v in values], color="tab:blue")
        axes.set_yticks(range(len(rows)), names if i == 0 else [""] * len(rows), fontsize=8)
        axes.set_title(f"{column.label} ({'higher' if column.higher_is_better else 'lower'} is better)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return True


def write_comparison(rows: list[Row], out_dir: Path) -> list[Path]:
    """comparison.md / .html / .csv, and comparison.png when a plotted metric exists; the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix, render in ((".md", to_markdown), (".html", to_html), (".csv", to_csv)):
        path = out_dir / f"comparison{suffix}"
        path.write_text(render(rows))
        written.append(path)
    if plot(rows, out_dir / "comparison.png"):
        written.append(out_dir / "comparison.png")
    return written


def summary_metrics(rows: list[Row]) -> dict[str, float]:
    """`sweep.jobs`, `sweep.failed` (not FINISHED) and `sweep.best_<metric>` of each column over FINISHED runs."""
    metrics = {"sweep.jobs": float(len(rows)), "sweep.failed": float(sum(r.status != FINISHED for r in rows))}
    finished = [r for r in rows if r.status == FINISHED]
    for column in _columns(finished):
        values = [r.metrics[column.metric] for r in finished if column.metric in r.metrics]
        values = [v for v in values if not math.isnan(v)]
        if values:
            metrics[f"sweep.best_{column.metric}"] = max(values) if column.higher_is_better else min(values)
    return metrics
