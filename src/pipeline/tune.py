"""`python -m pipeline.tune`: a guided search over kernel tunables (Optuna's TPE), each trial one pipeline job.

    python -m pipeline.tune --trials 12 --objective latency.est.tpot_ms --direction minimize \\
        kernel.experts=grouped_v2 'kernel_params.experts.bufs=choice(1,2,4)' \\
        'kernel_params.experts.k_tiles_per_dma=range(1,5)' 'stages=[compile,latency]'

The search space is written in Hydra's sweep grammar (choice, range, interval; everything else is a fixed
override), the same text `python -m pipeline -m` takes for an exhaustive sweep. Each trial is a job as the CLI
runs it (checks, MLflow run, stages), under one parent run; a trial whose job fails or whose config is rejected
is a failed trial and the search goes on; a trial that repeats a FINISHED job reads that run (de-duplication).
On the CPU the objective is a Trainium estimate (`latency.est.*`), on Trainium (platform=trn2|trn3) the measurement
(`latency.tpot_ms`, `score.contest`); it must be a metric on the job run (README "The record", headline metrics).

Why Optuna itself and not hydra-optuna-sweeper: its last release (1.3.0) pins optuna<3, whose RDB storage fails
with SQLAlchemy 2 (which MLflow 3 needs), so a persistent or shared study is impossible with it; Optuna 4/5 used
directly stores studies in SQLite or the team's PostgreSQL (`--storage`), resumes them by name and needs ~100 lines.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override
from mlflow.tracking import MlflowClient

from pipeline.app import user_error
from pipeline.config.compose import compose_config
from pipeline.config.validate import ConfigError
from pipeline.runner import JobFailed, prepare, run_job
from pipeline.tracking.store import PARENT_RUN_ENV, Store, check_reachable

log = logging.getLogger(__name__)


def search_space(overrides: list[str]) -> tuple[list[str], dict[str, Override]]:
    """(fixed overrides, {key: sweep override}) from Hydra override text."""
    fixed, space = [], {}
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.is_sweep_override():
            space[override.get_key_element()] = override
        else:
            fixed.append(override.input_line)
    return fixed, space


def suggest(trial: optuna.Trial, key: str, override: Override) -> str:
    """One value of a sweep override as Optuna's distribution: an interval is continuous (log-scaled with the
    `log` tag), a choice or range categorical over its values."""
    value = override.value()
    if isinstance(value, IntervalSweep):
        suggested = trial.suggest_float(key, value.start, value.end, log="log" in value.tags)
        return f"{key}={suggested}"
    return f"{key}={trial.suggest_categorical(key, list(override.sweep_string_iterator()))}"


def run_trial(overrides: list[str], output_dir: Path, objective: str) -> float:
    """One job as `python -m pipeline` runs it; the objective metric of its run (or of the run it repeats)."""
    output_dir.mkdir(parents=True, exist_ok=True)  # as Hydra makes a job's run dir
    cfg = compose_config(overrides, output_dir, job_name="pipeline")
    run_id = run_job(cfg, prepare(cfg, output_dir), overrides)
    metrics = MlflowClient(tracking_uri=cfg.tracking.uri).get_run(run_id).data.metrics
    if objective not in metrics:
        raise JobFailed(f"the job run has no metric {objective} (its stages: {', '.join(cfg.stages)})")
    return metrics[objective]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.tune", description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="pipeline overrides; sweep ones (choice/range/interval) are searched")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--objective", default="latency.est.tpot_ms", help="a metric of the job run")
    parser.add_argument("--direction", choices=("minimize", "maximize"), default="minimize")
    parser.add_argument("--storage", help="Optuna storage (sqlite:///tune.db, postgresql://...); default in memory")
    parser.add_argument("--study", default="pipeline-tune", help="study name (resumed from --storage)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("outputs/tune"))
    args = parser.parse_args(argv)
    try:
        fixed, space = search_space(args.overrides)
        if not space:
            raise ValueError("no override to search: give at least one choice(...), range(...) or interval(...)")
        base = compose_config(fixed, args.output)
        check_reachable(base.tracking.uri)
    except Exception as error:
        message = user_error(error) or (str(error) if isinstance(error, ValueError) else None)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    store = Store(base.tracking.uri, base.tracking.experiment, base.tracking.artifact_root)
    parent = store.start_run(f"tune {args.objective} {' '.join(args.overrides)}",
                             tags={"kind": "sweep", "tune.objective": args.objective, "tune.direction": args.direction})
    os.environ[PARENT_RUN_ENV] = parent
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # each trial prints its own line
    study = optuna.create_study(direction=args.direction, sampler=optuna.samplers.TPESampler(seed=args.seed),
                                storage=args.storage, study_name=args.study, load_if_exists=True)

    def objective(trial: optuna.Trial) -> float:
        overrides = [*fixed, *(suggest(trial, key, override) for key, override in space.items())]
        chosen = " ".join(overrides[len(fixed):])
        try:
            value = run_trial(overrides, args.output / f"trial_{trial.number}", args.objective)
        except (JobFailed, ConfigError) as error:  # an infeasible point: a failed trial, the search goes on
            print(f"trial {trial.number}: FAILED ({error})  {chosen}", flush=True)
            return float("nan")  # Optuna records a NaN objective as a failed trial
        print(f"trial {trial.number}: {args.objective}={value:.5g}  {chosen}", flush=True)
        return value

    status = "KILLED"
    try:
        study.optimize(objective, n_trials=args.trials)
        status = "FINISHED"
    finally:
        os.environ.pop(PARENT_RUN_ENV, None)
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if done:
            best = study.best_trial
            store.log(parent, metrics={args.objective: best.value},
                      tags={f"tune.best.{k}": v for k, v in best.params.items()})
        store.end(parent, status)
    failed = len(study.trials) - len(done)
    print(f"\ntune: {len(study.trials)} trial(s), {failed} failed; MLflow parent run {parent}")
    if done:
        print(f"  best {args.objective}={study.best_value:.5g}: "
              + " ".join(f"{k}={v}" for k, v in study.best_params.items()))


if __name__ == "__main__":
    main()
