"""The CPU home: every stage runs as registered in pipeline.stages (the PyTorch model, the NKI interpreter,
the cost model)."""
from __future__ import annotations

import dataclasses

from model.neuron.slots import unwired
from pipeline.config.validate import ConfigError
from pipeline.platforms.base import StageFn


class CpuPlatform:
    name = "cpu"

    def __init__(self, name: str = "cpu"):
        self.name = name

    def check(self, conf) -> None:
        if conf.platform.neuron is not None:
            raise ConfigError("platform.neuron settings apply to platform=trn2|trn3 only")
        if "export" in conf.stages and unwired(dataclasses.asdict(conf.kernel)):
            raise ConfigError("stage export: " + "; ".join(unwired(dataclasses.asdict(conf.kernel))))

    def stage(self, name: str) -> StageFn | None:
        return None

    def close(self) -> None:
        pass
