"""Published kernels run unmodified from a checkout and compared with their torch reference: a fake checkout
(a git repository made here, holding a small kernel and torch references of our own) stands in for the
public repositories, as a working tree and as a bare mirror."""

import json
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from pipeline import calibrate
from pipeline import calibration_sources as cs
from tests.calibration.test_calibration import _points

KERNEL = textwrap.dedent('''
    import nki
    import nki.isa as nisa
    import nki.language as nl


    @nki.jit
    def double(x):
        out = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.shared_hbm)
        tile = nl.ndarray(x.shape, dtype=x.dtype, buffer=nl.sbuf)
        nisa.dma_copy(dst=tile, src=x)
        nisa.tensor_scalar(dst=tile, data=tile, op0=nl.multiply, operand0=2.0)
        nisa.dma_copy(dst=out, src=tile)
        return out
''')

REFERENCE = textwrap.dedent('''
    def double_ref(x):
        return {"out": x * 2}


    def triple_ref(x):
        return {"out": x * 3}
''')


def _tiny(rows: int, cols: int) -> dict:
    return {"x": np.random.default_rng(0).normal(size=(rows, cols)).astype(np.float32)}


def _checks(tmp_path: Path, entries: str) -> Path:
    path = tmp_path / "originals.yaml"
    path.write_text("checks:\n" + textwrap.indent(textwrap.dedent(entries), "  "))
    return path


def _check(name: str, reference: str = "double_ref", function: str = "double", repo: str = "someone/fake-lib") -> str:
    return f'''
        - name: {name}
          repo: {repo}
          rev: HEAD
          kernel: kernels/double.py::{function}
          reference: kernels/double_torch.py::{reference}
          inputs: tiny
          target: trn2
          grid: 1
          tolerance: {{rtol: 0.001, atol: 1.0e-6, mode: max, source: "our own test"}}
          configs:
            - {{rows: 128, cols: 64}}
            - {{label: wide, rows: 128, cols: 512}}
    '''


@pytest.fixture
def sources(tmp_path, monkeypatch):
    """<tmp>/sources/fake-lib: a git working tree with one commit; the builder `tiny` registered."""
    monkeypatch.setitem(cs.BUILDERS, "tiny", _tiny)
    repo = tmp_path / "sources" / "fake-lib"
    (repo / "kernels").mkdir(parents=True)
    (repo / "kernels" / "double.py").write_text(KERNEL)
    (repo / "kernels" / "double_torch.py").write_text(REFERENCE)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "kernel"], check=True)
    return repo.parent


def test_a_working_tree_kernel_runs_unmodified_and_matches_its_reference(tmp_path, sources):
    checks = cs.load_checks(_checks(tmp_path, _check("fake double")))
    records = cs.run_checks(checks, sources, tmp_path / "work", say=lambda _: None)
    assert [r["config"] for r in records] == ["(128,64)", "wide"]
    for record in records:
        assert record["status"].startswith("ran unmodified, matches reference"), record["status"]
        assert record["matched"] is True and record["max_error"] <= record["tolerance"]
        assert record["origin"].startswith("working tree at ")
        assert record["peak_sbuf_bytes"] > 0


def test_a_bare_mirror_is_exported_at_its_revision(tmp_path, sources):
    mirror = tmp_path / "mirrors" / "fake-lib"
    subprocess.run(["git", "clone", "-q", "--bare", str(sources / "fake-lib"), str(mirror)], check=True)
    checks = cs.load_checks(_checks(tmp_path, _check("fake double")))
    records = cs.run_checks(checks, mirror.parent, tmp_path / "work", say=lambda _: None)
    assert all(r["matched"] for r in records)
    assert records[0]["origin"].startswith("git HEAD = ")
    assert (tmp_path / "work").is_dir() and not (mirror / "kernels").exists()


def test_a_disagreeing_reference_a_missing_repo_and_a_broken_kernel_are_reported_not_fatal(tmp_path, sources):
    entries = (_check("wrong reference", reference="triple_ref") + _check("absent", repo="someone/elsewhere")
               + _check("broken", function="no_such_kernel") + _check("fake double"))
    estimates = []
    records = cs.run_checks(cs.load_checks(_checks(tmp_path, entries)), sources, tmp_path / "work",
                            estimate_ns=lambda check, trace: estimates.append(trace) or 1234.0, say=lambda _: None)
    status = {r["check"]: r["status"] for r in records}
    assert status["wrong reference"].startswith("ran unmodified, does NOT match reference")
    assert status["absent"].startswith("not found under SOURCES")
    assert status["broken"] == "failed: AttributeError: kernels/double.py defines no 'no_such_kernel'"
    assert status["fake double"].startswith("ran unmodified, matches reference")
    assert cs.summary(records) == {"originals.configs": 8, "originals.ran": 4, "originals.matched": 2}
    assert len(estimates) == 4 and records[0]["estimated_ns"] == 1234.0
    rows = cs.table(records).splitlines()
    assert "| wrong reference | wide | ran unmodified, does NOT match" in rows[2 + 1]
    assert all(row.replace("\\|", "").count("|") == 6 for row in rows)    # five cells a row, whatever the text


def test_unknown_builders_and_comparison_modes_fail_when_loaded(tmp_path):
    with pytest.raises(ValueError, match="unknown inputs 'tiny'"):
        cs.load_checks(_checks(tmp_path, _check("x")))
    with pytest.raises(ValueError, match="unknown comparison mode 'py'"):
        cs.load_checks(_checks(tmp_path, _check("x").replace("inputs: tiny", "inputs: nkilib_rope")
                               .replace("mode: max", "mode: py")))


def test_max_mode_measures_against_the_largest_reference_value():
    expected = np.array([100.0, 1.0, -2.0])
    actual = expected + np.array([0.0, 1.5, 0.0])
    error, tolerance = cs.max_mode_excess(actual, expected, rtol=0.02, atol=1e-5)
    assert error == pytest.approx(1.5) and tolerance == pytest.approx(2.00001)     # within: 1.5 <= 2% of 100
    excess, atol = cs.elementwise_excess(actual, expected, rtol=0.02, atol=1e-5)
    assert excess == pytest.approx(1.5 - 0.02) and excess > atol                  # per element it is not


def test_moe_tkg_inputs_follow_the_library_builder():
    class Mode:
        def __init__(self, name):
            self.name = name

    kw = cs.nkilib_moe_tkg(tokens=3, hidden=256, intermediate=64, expert=8, top_k=2, act_fn="silu",
                           scale_mode=Mode("POST_SCALE"), all_expert=False, dtype="float16", clamp=True, bias=True)
    assert kw["expert_gate_up_weights"].shape == (8, 256, 2, 64) and kw["expert_down_weights"].shape == (8, 64, 256)
    assert kw["expert_affinities"].dtype == np.float32 and kw["rank_id"] is None
    for row, chosen in zip(kw["expert_affinities"], kw["expert_index"]):     # only the chosen experts (randint
        assert set(np.flatnonzero(row)) == set(chosen.tolist())             # may pick one twice, as there)
    everything = cs.nkilib_moe_tkg(tokens=3, hidden=256, intermediate=64, expert=4, top_k=None, act_fn="silu",
                                   scale_mode=Mode("POST_SCALE"), all_expert=True, dtype="bfloat16", clamp=False,
                                   bias=False)
    assert everything["expert_index"].shape == (3, 4) and everything["rank_id"].dtype == np.uint32
    assert all(sorted(row) == [0, 1, 2, 3] for row in everything["expert_index"].tolist())
    np.testing.assert_allclose(everything["expert_affinities"].astype(np.float32).sum(axis=1), 1.0, rtol=1e-2)


@pytest.mark.slow          # an end-to-end `make calibrate` on one tiny point: fit, plot, MLflow (about 15 s)
def test_the_command_reports_the_originals_in_its_outputs_and_mlflow_run(tmp_path, sources):
    (tmp_path / "points").mkdir()
    points = _points(tmp_path / "points", [3000.0, 6000.0])
    out, uri = tmp_path / "out", f"sqlite:///{tmp_path / 'mlflow.db'}"
    originals = _checks(tmp_path, _check("fake double"))
    assert calibrate.main(["--points", str(points), "--model-points", "", "--sources", str(sources),
                           "--originals", str(originals), "--out", str(out), "--tracking-uri", uri,
                           "--artifact-root", str(tmp_path / "mlruns")]) == 0
    records = json.loads((out / "originals.json").read_text())
    assert [r["matched"] for r in records] == [True, True] and records[0]["estimated_ns"] > 0
    assert "| fake double | wide | ran unmodified, matches reference" in (out / "calibration.md").read_text()
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("calibration").experiment_id])
    assert run.data.metrics["originals.matched"] == 2
    assert "originals.json" in {a.path for a in client.list_artifacts(run.info.run_id)}
