"""`python -m pipeline [overrides]`: the Hydra entry point."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from pipeline.config import CONF_DIR  # importing registers the schema and resolvers before Hydra composes
from pipeline.config.validate import ConfigError
from pipeline.runner import JobFailed, interrupt_exit_code, interrupt_reason, prepare, run_job, sigterm_as_interrupt

log = logging.getLogger("pipeline")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    single = hydra_cfg.mode == RunMode.RUN
    try:
        with sigterm_as_interrupt():
            job = prepare(cfg, Path(hydra_cfg.runtime.output_dir))
            run_job(cfg, job, list(hydra_cfg.overrides.task))
    except ConfigError as error:
        if single:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        raise
    except JobFailed:
        if single:
            sys.exit(1)
        raise


def cli() -> None:
    """`python -m pipeline`. An interrupt (Ctrl-C, SIGTERM) passes through Hydra (it catches Exception only) and
    ends here in one line, in a single run and a sweep alike; the runs were marked KILLED on the way."""
    try:
        main()
    except KeyboardInterrupt as interrupt:
        print(f"{interrupt_reason(interrupt)}: runs marked KILLED, artifacts so far kept", file=sys.stderr)
        sys.exit(interrupt_exit_code(interrupt))
