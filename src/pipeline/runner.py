"""Runs one job: validate, open the MLflow job run, run the stages in order (each a nested run whose files
are logged even when it fails), close the run FINISHED / FAILED / KILLED, print the summary."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE
from omegaconf import DictConfig, OmegaConf

from pipeline.config.validate import to_pipeline_conf, validate
from pipeline.identity import all_baseline, config_hash, digest, kernel_set_label, run_key, workload_key
from pipeline.job import Job
from pipeline.platforms import platform_for
from pipeline.summary import StageLine, as_description, summary_table
from pipeline.stages.base import run_stage
from pipeline.stages.compile import check_shapes
from pipeline.tracking.names import overrides_label
from pipeline.tracking.record import config_record, stage_record
from pipeline.tracking.store import PARENT_RUN_ENV, Store, check_reachable
from pipeline.tracking.ui import experiment_url

log = logging.getLogger(__name__)


class JobFailed(RuntimeError):
    """A stage failed; details are in the summary, the log and the MLflow run."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (`timeout`, `kill`) raised as an interrupt, so it takes Ctrl-C's path: runs KILLED, artifacts
    written so far logged."""

    signum = signal.SIGTERM


def interrupt_reason(interrupt: KeyboardInterrupt) -> str:
    return str(interrupt) or "interrupted (Ctrl-C)"


def interrupt_exit_code(interrupt: KeyboardInterrupt) -> int:
    """The shell's convention, 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM)."""
    return 128 + getattr(interrupt, "signum", signal.SIGINT)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the job runs, SIGTERM raises `Terminated` in the main thread (where Python delivers signals; a
    job in a worker thread keeps the default)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise Terminated("terminated (SIGTERM)")

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


CODE_PATHS = ("src", "conf")  # what a job runs: an uncommitted edit elsewhere (README, tests) changes no result


def git_commit(root: str) -> str:
    """The code version: HEAD, plus `-dirty.<digest of the uncommitted diff of CODE_PATHS>` so two different
    uncommitted states of the code never share a version (de-duplication keys on it)."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True, timeout=10)

    try:
        commit, status = git("rev-parse", "HEAD"), git("status", "--porcelain")
        code = git("status", "--porcelain", "--", *CODE_PATHS).stdout
        diff = git("diff", "HEAD", "--", *CODE_PATHS).stdout if code.strip() else ""
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if commit.returncode:
        return "unknown"
    return commit.stdout.strip() + (f"-dirty.{digest([code, diff])[:8]}" if status.stdout.strip() else "")


def flatten(values: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif name == "workload.prompts":
            flat["workload.num_prompts"] = len(value)
        else:
            flat[name] = value
    return flat


UI_SERVER = "http://127.0.0.1:5000"  # `make ui`


def run_name(conf, overrides: list[str]) -> str:
    """The overrides as typed, minus the `kernel.` / `kernel_params.` prefixes (`lm_head=perturbed
    lm_head.relative_noise=0.1`); long values are shortened (the `overrides` tag keeps them whole)."""
    return conf.tracking.run_name or overrides_label(overrides) or "default"


def prepare(cfg: DictConfig, output_dir: Path) -> Job:
    """Everything that can reject a config or find the tracking store down, before any MLflow run exists."""
    conf = to_pipeline_conf(cfg)
    check_reachable(conf.tracking.uri)
    platform = platform_for(conf)
    platform.check(conf)
    validate(conf)
    job = Job(conf, output_dir, platform)
    check_shapes(job)
    return job


def run_job(cfg: DictConfig, job: Job, overrides: list[str]) -> str:
    """Runs the job's stages under one MLflow run and returns its id; when a FINISHED run of the same config, stages
    and code exists (and not `force`), runs nothing and returns that run's id."""
    conf = job.conf
    store = Store(conf.tracking.uri, conf.tracking.experiment, conf.tracking.artifact_root)
    job.tracking = store
    code = git_commit(conf.paths.root)
    key = run_key(conf, code)
    parent = os.environ.get(PARENT_RUN_ENV)
    done = None if conf.force else store.finished_run("run_key", key)
    if done is not None:
        job.platform.close()
        _skip(store, parent, run_name(conf, overrides), done)
        return done
    tags = {
        "kind": "job",  # the UI's headline view lists these (tracking.ui)
        "run_key": key,
        "config_hash": config_hash(conf),
        "workload_key": workload_key(conf),
        "all_baseline": str(all_baseline(conf)).lower(),
        "kernels": kernel_set_label(conf),
        "platform": conf.platform.name,
        "executor": conf.platform.executor,
        "model": conf.model.name,
        "workload": conf.workload.name,
        "tp_degree": str(conf.parallel.tp_degree),
        "git_commit": code,
        "overrides": " ".join(overrides),
        **{f"kernel.{k}": v for k, v in job.kernels.choices().items()},
    }
    run_id = store.start_run(run_name(conf, overrides), parent_run_id=parent, tags=tags)
    lines, status, interrupt = [], "FINISHED", None
    try:
        params, machine_tags = config_record(flatten(OmegaConf.to_container(cfg, resolve=True)))
        store.log(run_id, params=params, tags=machine_tags)
        (job.output_dir / "resolved_config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        store.log_artifact(run_id, job.output_dir / "resolved_config.yaml")
        log.info("MLflow run %s in experiment '%s' (%s)", run_id, conf.tracking.experiment, conf.tracking.uri)
        for name in conf.stages:
            stage_status = _run_stage(store, run_id, job, name, lines)
            if stage_status != "FINISHED":
                status = stage_status
                break
    except KeyboardInterrupt as error:
        status, interrupt = "KILLED", error
    finally:
        for name in conf.stages[len(lines):]:
            lines.append(StageLine(name, "SKIPPED", 0.0, ""))
        store.log_artifacts(run_id, job.output_dir / ".hydra", "hydra")
        store.log_artifact(run_id, job.output_dir / "pipeline.log")
        job.platform.close()
        failed = next((f"{l.name}: {l.summary}" for l in lines if l.status == "FAILED"), None)
        if failed:
            store.log(run_id, tags={ERROR_TAG: failed})
        footer = [
            f"outputs: {job.output_dir}",
            f"MLflow:  run {run_id} ({status}) in experiment '{conf.tracking.experiment}'; "
            f"browse with `make ui` (mlflow server --backend-store-uri {conf.tracking.uri}), then open",
            f"         {experiment_url(UI_SERVER, store.experiment_id)}",
        ]
        table = summary_table(f"pipeline job: {run_name(conf, overrides)}", lines, footer)
        store.log(run_id, tags={MLFLOW_RUN_NOTE: as_description(table)})
        store.end(run_id, status)
        if status == "KILLED" and parent:
            store.end(parent, "KILLED")
        print("\n" + table, flush=True)
    if interrupt is not None:
        raise interrupt
    if status == "FAILED":
        raise JobFailed(failed)
    return run_id


ERROR_TAG = "error"  # on a FAILED job run: the failing stage and its one-line error (the sweep summary lists it)
SKIPPED_TAG = "skipped."  # on a sweep's parent run, per job skipped as done: `skipped.<run name>` = the done run


def _skip(store: Store, parent: str | None, name: str, done: str) -> None:
    print(f"skipped: {name}: already FINISHED as MLflow run {done} (force=true runs it again)", flush=True)
    log.info("job %s not run: FINISHED run %s has the same config, stages and code", name, done)
    if parent:
        store.log(parent, tags={f"{SKIPPED_TAG}{digest(name)[:8]}": f"{name} -> {done}"})


def record_failed_job(cfg: DictConfig, overrides: list[str], output_dir: Path, error: BaseException) -> None:
    """A sweep job that failed before its run existed (a config its combination makes invalid, a crash outside
    the stages): a FAILED job run under the sweep's parent, with the error as a tag and the traceback as an
    artifact, so the sweep's summary and the record list it."""
    tracking = cfg.tracking
    store = Store(tracking.uri, tracking.experiment, tracking.artifact_root)
    summary = f"{type(error).__name__}: {error}"
    run_id = store.start_run(run_name(cfg, overrides), parent_run_id=os.environ.get(PARENT_RUN_ENV),
                             tags={"kind": "job", ERROR_TAG: summary, "overrides": " ".join(overrides)})
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "traceback.txt").write_text("".join(traceback.format_exception(error)))
    store.log_artifact(run_id, output_dir / "traceback.txt")
    store.end(run_id, "FAILED")


def _run_stage(store: Store, job_run_id: str, job: Job, name: str, lines: list[StageLine]) -> str:
    stage_run = store.start_run(name, parent_run_id=job_run_id, tags={"stage": name})
    start = time.perf_counter()
    status, summary = "FINISHED", ""
    try:  # from right after the run exists: an interrupt at any point below still closes it
        log.info("stage %s: started", name)
        result = run_stage(name, job)
        job.results[name] = result
        on_job, on_stage = stage_record(name, result.metrics, result.headline)
        store.log(stage_run, metrics=on_stage)
        store.log(job_run_id, metrics=on_job, tags=result.tags)
        summary = result.summary
    except KeyboardInterrupt as interrupt:
        status, summary = "KILLED", interrupt_reason(interrupt)
        raise
    except Exception as error:  # a stage crash ends the job, never the tracking
        status, summary = "FAILED", f"{type(error).__name__}: {error}"
        (job.stage_dir(name) / "traceback.txt").write_text(traceback.format_exc())
        log.error("stage %s failed: %s", name, summary)
    finally:
        seconds = time.perf_counter() - start
        store.log(stage_run, metrics={f"{name}.seconds": seconds})
        store.log_artifacts(stage_run, job.output_dir / name)
        store.end(stage_run, status)
        lines.append(StageLine(name, status, seconds, summary))
        log.info("stage %s: %s in %.1f s", name, status, seconds)
    return status
