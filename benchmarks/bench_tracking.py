"""Tracking at scale (`make bench-tracking`): N runs logged by W parallel worker processes (each run: a start,
params, a metric, an artifact, its end, as the pipeline's Store writes them) to SQLite and to the PostgreSQL-backed
team server, then every run counted back: none may be lost; and the wall time of a CPU sweep with the basic
launcher against joblib, as a ratio.

    python benchmarks/bench_tracking.py                        # 200 runs x 4 workers, both stores; 16-job sweep
    python benchmarks/bench_tracking.py --runs 40 --no-sweep   # quicker
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from mlflow.tracking import MlflowClient

from pipeline.tracking.server import Postgres, free_port, start_mlflow_server
from pipeline.tracking.store import Store

EXPERIMENT = "tracking-bench"
PROJECT = Path(__file__).resolve().parents[1]


def _worker(uri: str, artifact_root: str, worker: int, count: int) -> list[str]:
    """Logs `count` runs; returns the error of each run that failed (a lost run must show up here or below)."""
    store = Store(uri, EXPERIMENT, artifact_root)
    note = Path(tempfile.mkdtemp()) / f"worker{worker}.txt"
    note.write_text(f"worker {worker}\n")
    errors = []
    for index in range(count):
        try:
            run_id = store.start_run(f"w{worker}-{index}", tags={"bench.worker": str(worker)})
            store.log(run_id, metrics={"bench.index": index}, params={"worker": worker, "index": index})
            store.log_artifact(run_id, note)
            store.end(run_id, "FINISHED")
        except Exception as error:  # counted, not raised: the figure is how many runs arrive
            errors.append(f"{type(error).__name__}: {error}")
    return errors


def log_load(uri: str, artifact_root: str, workers: int, runs: int) -> dict:
    """`runs` runs from `workers` processes; how many arrived whole (FINISHED, with its metric and artifact)."""
    Store(uri, EXPERIMENT, artifact_root)  # the store migrated and the experiment made once, as the sweep callback does
    shares = [runs // workers + (w < runs % workers) for w in range(workers)]
    start = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        futures = [pool.submit(_worker, uri, artifact_root, w, n) for w, n in enumerate(shares)]
        errors = [e for f in futures for e in f.result()]
    seconds = time.perf_counter() - start
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    found = client.search_runs([experiment.experiment_id], max_results=50000)
    whole = [r for r in found if r.info.status == "FINISHED" and "bench.index" in r.data.metrics
             and client.list_artifacts(r.info.run_id)]
    return {"runs": runs, "workers": workers, "arrived": len(whole), "lost": runs - len(whole), "errors": errors,
            "seconds": seconds, "runs_per_s": runs / seconds}


def sweep_seconds(launcher: list[str], jobs: int, workdir: Path) -> float:
    """Wall time of a `jobs`-job CPU sweep (2 x 2 x jobs/4: lm_head, TP degree, new tokens; compile and accuracy)."""
    tokens = ",".join(str(2 + i) for i in range(jobs // 4))
    command = [sys.executable, "-m", "pipeline", "-m", *launcher, "kernel.lm_head=baseline,perturbed",
               "parallel.tp_degree=1,2", f"workload.max_new_tokens={tokens}", "stages=[compile,accuracy]",
               "force=true", f"tracking.uri=sqlite:///{workdir}/mlflow.db", f"tracking.artifact_root={workdir}/mlruns",
               f"hydra.sweep.dir={workdir}/sweep"]
    start = time.perf_counter()
    subprocess.run(command, cwd=PROJECT, check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def print_load(name: str, result: dict) -> None:
    print(f"  {name:<28} {result['runs']:>4} runs x {result['workers']} workers: {result['arrived']} arrived, "
          f"{result['lost']} lost, {result['seconds']:.1f} s, {result['runs_per_s']:.1f} runs/s", flush=True)
    for error in sorted(set(result["errors"]))[:5]:
        print(f"    error: {error}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--sweep-jobs", type=int, default=16)
    parser.add_argument("--no-server", action="store_true", help="SQLite only (no PostgreSQL on this machine)")
    parser.add_argument("--no-sweep", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    root = Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    root.chmod(0o755)  # the PostgreSQL cluster runs as `postgres` when this runs as root
    print(f"tracking under load (cpus: {os.cpu_count()}; {root})")
    print_load("SQLite", log_load(f"sqlite:///{root}/mlflow.db", str(root / "mlruns"), args.workers, args.runs))
    if not args.no_server:
        cluster = Postgres(root / "postgres", free_port())
        port = free_port()
        server = start_mlflow_server(cluster.start(), root / "artifacts", port, root / "mlflow.log", workers=4)
        try:
            result = log_load(f"http://127.0.0.1:{port}", str(root / "unused"), args.workers, args.runs)
            print_load("mlflow server + PostgreSQL", result)
        finally:
            server.terminate()
            server.wait(timeout=60)
            cluster.stop()
    if not args.no_sweep:
        basic = sweep_seconds([], args.sweep_jobs, root / "basic")
        joblib = sweep_seconds(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], args.sweep_jobs, root / "joblib")
        print(f"  {args.sweep_jobs}-job CPU sweep: basic launcher {basic:.1f} s, joblib 2 workers {joblib:.1f} s: "
              f"joblib takes {joblib / basic:.2f}x the basic launcher's time", flush=True)


if __name__ == "__main__":
    main()
