"""`python -m pipeline [overrides]`: the Hydra entry point."""
from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline.config import CONF_DIR  # importing registers the schema and resolvers before Hydra composes
from pipeline.config.validate import ConfigError
from pipeline.runner import (JobFailed, interrupt_exit_code, interrupt_reason, prepare, record_failed_job, run_job,
                             sigterm_as_interrupt)
from pipeline.tracking.callbacks import end_open_sweep
from pipeline.tracking.store import TrackingUnavailable

log = logging.getLogger("pipeline")

INPUT_ERRORS = (ConfigError, TrackingUnavailable, HydraException, OmegaConfBaseException)
NULL_NODE = "an override sets a key under a node that is null in this config (platform.neuron.* needs platform=trn2 " \
            "or trn3, model.dims.* a seeded model)"


def user_error(error: BaseException) -> str | None:
    """The one line the CLI prints when `error` comes from what the user typed (a config the schema, the
    registries or the model reject, a tracking store that does not answer, Hydra's composition or override
    syntax); None for anything else, a bug, which keeps its traceback."""
    if isinstance(error, INPUT_ERRORS):
        parts = [str(e).strip().splitlines()[0].rstrip(".") for e in (error, error.__cause__) if e and str(e).strip()]
        return ": ".join(parts) or type(error).__name__
    frames = traceback.extract_tb(error.__traceback__)
    if isinstance(error, AssertionError) and frames and f"{os.sep}omegaconf{os.sep}" in frames[-1].filename:
        return f"{NULL_NODE}: {error}"  # OmegaConf asserts instead of raising when an override reaches into None
    return None


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> None:
    """One job. A single run ends here with its exit status; a sweep job's failure is recorded (a FAILED run)
    and the sweep goes on: its callback (tracking.callbacks) lists the failures and sets the exit status."""
    hydra_cfg = HydraConfig.get()
    single = hydra_cfg.mode == RunMode.RUN
    overrides = OmegaConf.to_container(hydra_cfg.overrides.task)  # as typed: `${...}` in a value stays text
    output_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        with sigterm_as_interrupt():
            job = prepare(cfg, output_dir)
            run_job(cfg, job, overrides)
    except JobFailed:  # the stage's run, summary and log say why
        if single:
            sys.exit(1)
    except Exception as error:
        message = user_error(error)
        if single and message is None:
            raise
        if message is None:  # outside the stages (they record their own crash): a bug, kept whole in the record
            log.exception("job %s failed outside its stages", " ".join(overrides))
        else:
            print(f"error: {message}", file=sys.stderr)
        if single:
            sys.exit(2)
        if not isinstance(error, TrackingUnavailable):
            record_failed_job(cfg, overrides, output_dir, error)


def cli() -> None:
    """`python -m pipeline`. An interrupt (Ctrl-C, SIGTERM) passes through Hydra (it catches Exception only) and
    ends here in one line, in a single run and a sweep alike; the runs were marked KILLED on the way. Hydra's
    own composition errors (a wrong type, a key the schema lacks, an unknown group option, bad override syntax)
    reach here too (HYDRA_FULL_ERROR stops Hydra printing them with its hint) and end in one line, exit 2."""
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        main()
    except KeyboardInterrupt as interrupt:
        print(f"{interrupt_reason(interrupt)}: runs marked KILLED, artifacts so far kept", file=sys.stderr)
        sys.exit(interrupt_exit_code(interrupt))
    except Exception as error:
        message = user_error(error)
        if message is None:
            raise
        end_open_sweep("FAILED")  # a sweep combination Hydra rejected after the sweep's parent run opened
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
