"""report.html: the sections of a comparison report as plain HTML tables and <img> of the PNGs beside it."""
from __future__ import annotations

import html
import math
from pathlib import Path

from mlflow.entities import Run

from pipeline.estimate.contest import baseline_rows, first_place_rows
from pipeline.tracking.comparison import FINISHED, Row, ranking, to_html

CONTEST_TARGETS = ("trn2", "trn3")


def table(header: list[str], body: list[list[str]], css: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def _fmt(value: float | None, spec: str = ".4g") -> str:
    return "-" if value is None or math.isnan(value) else format(value, spec)


def leaderboard(rows: list[Row], runs: dict[str, Run]) -> str:
    """The sweep comparison's table (tracking.comparison), ranked, with the all-baseline runs named."""
    column = ranking(rows)
    baselines = [r.name for r in rows if runs[r.run_id].data.tags.get("all_baseline") == "true"]
    ranked = (f"Ranked by {html.escape(column.label)} (<code>{column.metric}</code>, "
              f"{'higher' if column.higher_is_better else 'lower'} is better) over FINISHED runs."
              if column else "No FINISHED run logged a ranked metric.")
    return (f"<p>{ranked} The contest score: <code>latency.est.score</code> is the Trainium ESTIMATE on the CPU "
            f"(mean per prompt, 1.0 = the contest's baseline); <code>score.contest</code> is measured on a device. "
            f"All-baseline run(s), the reference: {html.escape(', '.join(baselines) or 'none in this report')}.</p>"
            + to_html(rows).replace('<table border="1">', '<table class="leaderboard">'))


def verdicts(rows: list[Row], runs: dict[str, Run]) -> str:
    """The accuracy stage's gate per run: verdict, smallest top-1 margin, largest margin drift, worst logit error."""
    body = []
    for row in rows:
        m = runs[row.run_id].data.metrics
        passed = m.get("accuracy.passed")
        verdict = "not checked" if passed is None else ("PASS" if passed == 1.0 else "FAIL")
        body.append([row.name, row.status, verdict, _fmt(m.get("accuracy.min_margin")),
                     _fmt(m.get("accuracy.max_margin_drift")), _fmt(m.get("accuracy.max_err_top_all"))])
    return table(["run", "status", "accuracy gate", "min top-1 margin", "max margin drift", "worst logit error"],
                 body, "verdicts")


def contest() -> str:
    """The contest's per-prompt baselines (trn2, trn3) and the first place's Trn3 results, as published."""
    base = {t: baseline_rows(t) for t in CONTEST_TARGETS}
    first = first_place_rows()
    header = ["prompt", *(f"{t} baseline {k}" for t in CONTEST_TARGETS for k in ("p99 ms", "tok/s")),
              "first place trn3 p99 ms", "tok/s", "NKI FLOP ratio", "score"]
    body = [[str(f.prompt), *(_fmt(getattr(base[t][i], k), ".2f") for t in CONTEST_TARGETS
                              for k in ("latency_ms", "throughput_tok_s")),
             _fmt(f.latency_ms, ".1f"), _fmt(f.throughput_tok_s, ".1f"), _fmt(f.nki_flop_ratio, ".4f"),
             _fmt(f.score, ".2f")] for i, f in enumerate(first)]
    total = sum(f.score for f in first)
    body.append(["all", *([""] * 2 * len(CONTEST_TARGETS)), "", "", "", f"{total:.2f} (sum)"])
    return table(header, body, "contest")


def best_against_first_place(rows: list[Row]) -> str:
    """The best estimated or measured score per prompt here against the first place's (both: 1.0 = baseline)."""
    first = first_place_rows()
    mean = sum(f.score for f in first) / len(first)
    lines = []
    for metric, label in (("latency.est.score", "Trainium estimate"), ("score.contest_mean", "measured")):
        scored = [r for r in rows if r.status == FINISHED and metric in r.metrics]
        if scored:
            best = max(scored, key=lambda r: r.metrics[metric])
            lines.append(f"best {label} here: {best.metrics[metric]:.3f} per prompt ({html.escape(best.name)})")
    ours = "; ".join(lines) or "no run here has a contest score"
    return f"<p>{ours}; the first place measured {mean:.2f} per prompt on Trn3 (mean of its {len(first)} prompts).</p>"


def image(name: str, written: bool, missing: str) -> str:
    return f'<img src="{name}" alt="{name}">' if written else f"<p>{html.escape(missing)}</p>"


def render(title: str, sections: list[tuple[str, str]]) -> str:
    body = "".join(f"<h2>{html.escape(h)}</h2>\n{content}\n" for h, content in sections)
    style = ("body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin:.5em 0}"
             "td,th{border:1px solid #999;padding:2px 6px;font-size:13px}img{max-width:100%}")
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>\n{body}</body></html>\n")


def write_page(path: Path, title: str, sections: list[tuple[str, str]]) -> Path:
    path.write_text(render(title, sections))
    return path
