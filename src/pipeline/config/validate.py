"""Checks a composed config against what exists (kernel variants, stages, executors) and what the model can
do (sharding, sequence lengths), before any run is opened. Every problem is one readable line."""
from __future__ import annotations

import dataclasses

from omegaconf import DictConfig, OmegaConf

import kernels
from kernels.executors import EXECUTORS
from kernels.numerics import AUTO_CAST
from pipeline.config.schema import PipelineConf


class ConfigError(ValueError):
    """A config that cannot run; the message is one line meant for a person."""


def to_pipeline_conf(cfg: DictConfig) -> PipelineConf:
    return OmegaConf.to_object(cfg)


def validate(conf: PipelineConf) -> None:
    from pipeline.stages import STAGES  # the stage registry imports the model; keep config import light

    for layer in kernels.LAYERS:
        name = getattr(conf.kernel, layer)
        try:
            variant = kernels.get(layer, name)
            variant.make_params(dataclasses.asdict(getattr(conf.kernel_params, layer)))
        except (kernels.UnknownVariantError, ValueError) as error:
            raise ConfigError(str(error)) from None
    unknown = [s for s in conf.stages if s not in STAGES]
    if unknown:
        raise ConfigError(f"stages: unknown stage(s) {', '.join(unknown)}; choose from: {', '.join(STAGES)}")
    if conf.platform.executor not in EXECUTORS:
        raise ConfigError(
            f"platform.executor={conf.platform.executor} is not available on platform {conf.platform.name}; "
            f"choose one of: {', '.join(sorted(EXECUTORS))}"
        )
    if conf.model.dtype not in ("bfloat16", "float32"):
        raise ConfigError(f"model.dtype={conf.model.dtype}: choose bfloat16 or float32")
    if conf.accuracy.reference not in ("baseline", "compiled", "transformers"):
        raise ConfigError(f"accuracy.reference={conf.accuracy.reference}: choose baseline, compiled or transformers")
    if conf.compiler.auto_cast not in AUTO_CAST:
        raise ConfigError(f"compiler.auto_cast={conf.compiler.auto_cast}: choose one of {', '.join(AUTO_CAST)}")
    if conf.parallel.ep_degree != 1:
        raise ConfigError("parallel.ep_degree > 1 is not supported yet (NxDI's default shards experts on TP)")
    if conf.workload.batch_size < 1 or conf.latency.runs < 1:
        raise ConfigError("workload.batch_size and latency.runs must be at least 1")
    from pipeline.estimate.settings import settings_problems

    problems = settings_problems(conf.estimate, conf.platform.target)
    if problems:
        raise ConfigError("; ".join(problems))
