"""Platforms beside stages: `cpu` (the CPU home) and `trn2`/`trn3` (NxDI on a Trainium chip), chosen by
`platform=`. Neuron imports live only in pipeline.platforms.neuron's stage modules and src/model/neuron, and
happen only when a device stage runs."""
from __future__ import annotations

from collections.abc import Callable

from pipeline.config.validate import ConfigError
from pipeline.platforms.base import Platform, PlatformUnavailable
from pipeline.platforms.cpu import CpuPlatform
from pipeline.platforms.neuron import NeuronPlatform

PLATFORMS: dict[str, Callable[[str], Platform]] = {"cpu": CpuPlatform, "trn2": NeuronPlatform, "trn3": NeuronPlatform}


def platform_for(conf) -> Platform:
    name = conf.platform.name
    try:
        return PLATFORMS[name](name)
    except KeyError:
        raise ConfigError(f"platform={name} is not a platform; choose one of: {', '.join(PLATFORMS)}") from None


__all__ = ["PLATFORMS", "Platform", "PlatformUnavailable", "platform_for"]
