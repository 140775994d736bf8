"""Config: the structured schema, the resolvers the YAML tree uses, and validation against the registries."""
from __future__ import annotations

from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from pipeline.config.schema import schema_node

CONF_DIR = Path(__file__).resolve().parents[3] / "conf"


def project_root() -> str:
    """The repository root (where conf/ and pyproject.toml live), so outputs and mlflow.db land there
    whatever the working directory."""
    root = CONF_DIR.parent
    return str(root if (root / "pyproject.toml").exists() else Path.cwd())


def register() -> None:
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", project_root)
    from pipeline.config.help import help_config

    store = ConfigStore.instance()
    store.store(name="pipeline_schema", node=schema_node())
    store.store(group="hydra/help", name="pipeline_help", node=help_config())


register()
