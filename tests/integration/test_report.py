"""Comparison reports: `python -m pipeline.report` and the `report` stage over a real store (a 2-job sweep of the
tiny model through the real pipeline), report.html rendered by Debian's headless chromium."""
import re
import shutil
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from pipeline.estimate.contest import baseline_rows, first_place_rows
from pipeline.report.figures import Point, pareto_front
from tests.conftest import PROJECT
from tests.integration.cli import children, job_runs, run_pipeline, runs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SECTIONS = ("Leaderboard", "Pareto front", "Per-op time breakdown", "Accuracy verdicts", "Contest baselines")
IMAGES = ("comparison.png", "pareto.png", "breakdown.png")
# After load, each <img> records what the browser decoded (a copy of the page: the report itself has no script).
MEASURE = ("<script>window.addEventListener('load', () => { for (const i of document.images) "
           "i.setAttribute('data-natural-width', i.naturalWidth); });</script></body>")


def report(tracking, out, *overrides):
    return subprocess.run([sys.executable, "-m", "pipeline.report", f"tracking.uri={tracking['uri']}",
                           f"hydra.run.dir={out}", *overrides], cwd=PROJECT, capture_output=True, text=True,
                          timeout=300)


def test_the_pareto_front_keeps_the_points_nothing_beats():
    points = [Point("slow", 30, 100, "e"), Point("fast", 10, 50, "e"), Point("best", 20, 120, "e"),
              Point("beaten", 25, 110, "e")]
    assert [p.name for p in pareto_front(points)] == ["fast", "best"]


def test_the_first_place_records_are_the_trn3_prompts_in_order():
    first, base = first_place_rows(), baseline_rows("trn3")
    assert len(first) == len(base) == 5
    assert all(f.latency_ms < b.latency_ms and f.throughput_tok_s > b.throughput_tok_s for f, b in zip(first, base))
    assert sum(f.score for f in first) == pytest.approx(168.04, abs=0.01)


@pytest.mark.slow  # ~9 s on the shared machine: the CLI's start-up imports the model
def test_nothing_to_report_is_one_line(tracking, tmp_path):
    result = report(tracking, tmp_path / "report", "tracking.experiment=nowhere")
    assert result.returncode == 2 and result.stderr.strip() == "error: tracking experiment 'nowhere' does not exist"
    assert "Traceback" not in result.stderr and not (tmp_path / "report" / "report.html").exists()


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (`apt-get install chromium`); "
                                             "the report can only be checked in a real browser")
def test_the_report_stage_and_app_write_a_report_chromium_renders(tracking, tmp_path):
    sweep = ["-m", "kernel.lm_head=baseline,perturbed", "stages=[compile,accuracy,latency,score,report]",
             "latency.runs=1", "latency.warmup=0", "workload.max_new_tokens=2"]
    result = run_pipeline(sweep, tracking, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = job_runs(tracking)
    assert len(jobs) == 2
    client = MlflowClient(tracking_uri=tracking["uri"])
    for job in jobs:  # each job's report stage logged its report
        (stage,) = [r for r in children(tracking, job.info.run_id) if r.data.tags.get("stage") == "report"]
        logged = {a.path for a in client.list_artifacts(stage.info.run_id)}
        assert {"report.html", *IMAGES} <= logged and stage.info.status == "FINISHED"

    out = tmp_path / "report"
    result = report(tracking, out)
    assert result.returncode == 0, result.stderr[-3000:]
    page = (out / "report.html").read_text()
    checked = out / "checked.html"
    checked.write_text(page.replace("</body>", MEASURE))
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'p'}",
                          "--allow-file-access-from-files", "--virtual-time-budget=10000", "--dump-dom",
                          checked.as_uri()], capture_output=True, text=True, timeout=180, check=True).stdout
    assert all(section in dom for section in SECTIONS)
    for job in jobs:  # a leaderboard row and an accuracy verdict per job
        name = job.info.run_name
        assert dom.count(f"<td>{name}</td>") == 2, name
    assert "<td>PASS</td>" in dom and "<td>FAIL</td>" in dom  # the baseline passes, the perturbed lm_head fails
    assert "<td>168.04 (sum)</td>" in dom and "<td>17138.28</td>" in dom  # first place and trn3 baseline
    widths = dict(re.findall(r'<img src="([^"]+)"[^>]*data-natural-width="(\d+)"', dom))
    assert set(widths) == set(IMAGES) and all(int(w) > 0 for w in widths.values()), widths
    assert not [r for r in runs(tracking) if r.info.status != "FINISHED"]
