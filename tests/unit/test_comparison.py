"""A sweep's comparison (pipeline.tracking.comparison) over real MLflow runs in a SQLite store: ranking, the
table in three formats, the plot and the summary metrics."""
import csv
import io

from mlflow.entities import RunStatus

from pipeline.tracking.comparison import (comparison_rows, summary_metrics, to_csv, to_html, to_markdown,
                                          write_comparison)
from pipeline.tracking.store import Store


def seeded_runs(tracking):
    store = Store(tracking["uri"], "pipeline", tracking["artifact_root"])
    jobs = {  # name: (kernel.norm param, metrics, status)
        "norm=baseline": ("baseline", {"latency.est.score": 1.0, "accuracy.passed": 1.0, "score.cpu_time": 2.0},
                          "FINISHED"),
        "norm=nki_rmsnorm": ("nki_rmsnorm", {"latency.est.score": 1.2, "accuracy.passed": 1.0, "score.cpu_time": 0.1},
                             "FINISHED"),
        "norm=broken": ("broken", {"latency.est.score": 9.0}, "FAILED"),  # failed runs never rank first
        "norm=slow": ("slow", {"latency.est.score": 0.8, "accuracy.passed": 0.0}, "FINISHED"),
    }
    for name, (variant, metrics, status) in jobs.items():
        run_id = store.start_run(name)
        store.log(run_id, metrics=metrics, params={"kernel.norm": variant, "parallel.tp_degree": 1})
        store.end(run_id, status)
    return store.client.search_runs([store.experiment_id])


def test_rows_rank_finished_runs_by_the_estimate_and_show_what_varied(tracking):
    rows = comparison_rows(seeded_runs(tracking))
    assert [r.name for r in rows] == ["norm=nki_rmsnorm", "norm=baseline", "norm=slow", "norm=broken"]
    assert rows[0].varied == {"kernel.norm": "nki_rmsnorm"}  # tp_degree is the same everywhere: not shown
    assert rows[3].status == RunStatus.to_string(RunStatus.FAILED)


def test_tables_plot_and_summary(tracking, tmp_path):
    rows = comparison_rows(seeded_runs(tracking))
    markdown = to_markdown(rows)
    assert markdown.startswith("**4 job run(s)**, 1 not finished.")
    assert "Best by est. score (latency.est.score, higher is better): `norm=nki_rmsnorm` (1.2), `norm=baseline` (1)" \
        in markdown
    assert "| run | status | kernel.norm | est. score | accuracy passed | CPU-time score |" in markdown
    assert "| norm=slow | FINISHED | slow | 0.8 | 0 | - |" in markdown
    table = list(csv.reader(io.StringIO(to_csv(rows))))
    assert table[0][:3] == ["run", "status", "kernel.norm"] and len(table) == 5
    assert to_html(rows).count("<tr>") == 5
    paths = write_comparison(rows, tmp_path / "out")
    assert sorted(p.name for p in paths) == ["comparison.csv", "comparison.html", "comparison.md", "comparison.png"]
    assert (tmp_path / "out" / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert summary_metrics(rows) == {"sweep.jobs": 4.0, "sweep.failed": 1.0, "sweep.best_latency.est.score": 1.2,
                                     "sweep.best_accuracy.passed": 1.0, "sweep.best_score.cpu_time": 2.0}


def test_no_headline_metric_still_gives_a_table_and_no_plot(tracking, tmp_path):
    store = Store(tracking["uri"], "pipeline", tracking["artifact_root"])
    store.end(store.start_run("only"), "FINISHED")
    rows = comparison_rows(store.client.search_runs([store.experiment_id]))
    assert "Best by" not in to_markdown(rows) and "| only | FINISHED |" in to_markdown(rows)
    assert [p.name for p in write_comparison(rows, tmp_path)] == ["comparison.md", "comparison.html", "comparison.csv"]
