"""The resolved config `python -m pipeline <overrides>` would run, composed in-process (tests, benchmarks)."""
from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from pipeline.config import CONF_DIR


def compose_config(overrides: list[str], output_dir: Path, job_name: str = "pipeline") -> DictConfig:
    """Hydra's composition with its runtime fields set as a launched job sets them (output_dir), resolved."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.name = job_name
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    OmegaConf.resolve(cfg)
    return cfg
