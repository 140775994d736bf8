"""The platform contract: where a job's stages run. Stages are named once (pipeline.stages); a platform
says whether it can run the job at all (`check`, before any MLflow run opens), which stages it implements
itself (`stage`, None = the registered CPU implementation) and what it holds until the job ends (`close`:
a device lock, loaded models)."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from pipeline.config.validate import ConfigError

if TYPE_CHECKING:
    from pipeline.config.schema import PipelineConf
    from pipeline.job import Job

StageFn = Callable[["Job"], Any]  # (job) -> StageResult


class PlatformUnavailable(ConfigError):
    """The platform cannot run on this machine (no Neuron SDK, no device); one line that says how to get it."""


class Platform(Protocol):
    name: str

    def check(self, conf: PipelineConf) -> None:
        """Raise ConfigError (one line) if this machine or config cannot run on the platform."""

    def stage(self, name: str) -> StageFn | None:
        """This platform's implementation of stage `name`, or None for the registered one."""

    def close(self) -> None:
        """Release what the job held (called once, when the job ends however it ends)."""
