"""platform=trn2|trn3: the same configs on a Trainium chip through NxDI, measured as the contest measures.

Stages `compile`, `accuracy`, `latency`, `profile` and `score` have device implementations here (their
modules import the Neuron SDK when they run, never before); `export` is platform-neutral. Off the device,
`check` stops the job before any run opens with one line naming what is missing and how to get it."""
from __future__ import annotations

import dataclasses
import importlib

from model.neuron.slots import unwired
from pipeline.config.validate import ConfigError
from pipeline.platforms.base import PlatformUnavailable, StageFn
from pipeline.platforms.neuron.sdk import sdk_problem

# stage name -> module (under this package) whose `run(job)` is the device implementation
DEVICE_STAGES = {"compile": "compile", "accuracy": "accuracy", "latency": "latency", "profile": "profile",
                 "score": "score"}
NEUTRAL_STAGES = ("export",)


class NeuronPlatform:
    def __init__(self, name: str):
        self.name = name
        self._session = None

    def check(self, conf) -> None:
        problem = sdk_problem(self.name)
        if problem:
            raise PlatformUnavailable(problem)
        if conf.platform.neuron is None:
            raise ConfigError(f"platform={self.name} needs its platform.neuron settings "
                              f"(conf/platform/{self.name}.yaml)")
        if conf.platform.target != self.name:
            raise ConfigError(f"platform.target={conf.platform.target} on platform={self.name}: they must agree")
        if conf.accuracy.reference not in ("baseline", "compiled"):
            raise ConfigError(f"accuracy.reference={conf.accuracy.reference}: on platform={self.name} the reference "
                              "is the baseline compiled on the chip (accuracy.reference=baseline or compiled)")
        if conf.estimate.lnc != conf.platform.neuron.logical_nc_config:
            raise ConfigError(f"estimate.lnc={conf.estimate.lnc} but platform.neuron.logical_nc_config="
                              f"{conf.platform.neuron.logical_nc_config}: the estimate beside a measurement must "
                              "assume the chip's LNC")
        missing = unwired(dataclasses.asdict(conf.kernel))
        if missing:
            raise ConfigError(f"platform={self.name}: " + "; ".join(missing))
        other = [s for s in conf.stages if s not in DEVICE_STAGES and s not in NEUTRAL_STAGES]
        if other:
            raise ConfigError(f"stages {', '.join(other)} do not run on platform={self.name}; "
                              f"choose from {', '.join([*DEVICE_STAGES, *NEUTRAL_STAGES])}")

    def session(self, job):
        """The job's device session (lock, builds), opened by the first device stage."""
        if self._session is None:
            from pipeline.platforms.neuron.session import NeuronSession

            self._session = NeuronSession(job)
        return self._session

    def stage(self, name: str) -> StageFn | None:
        if name not in DEVICE_STAGES:
            return None
        return importlib.import_module(f"{__name__}.{DEVICE_STAGES[name]}").run

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
