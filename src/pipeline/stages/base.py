"""The stage contract: `run(job) -> StageResult`, registered by name (as NeMo's launcher maps stage names
to classes). A stage writes its files into `job.stage_dir(name)`; the runner logs them to MLflow, also when
the stage fails part-way."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pipeline.job import Job


@dataclass
class StageResult:
    metrics: dict[str, float] = field(default_factory=dict)  # logged on the stage's nested run
    headline: dict[str, float] = field(default_factory=dict)  # also on the job run, as "<stage>.<key>"
    tags: dict[str, str] = field(default_factory=dict)  # on the job run
    summary: str = ""  # one line for the end-of-job table
    data: Any = None  # for later stages (job.results[name])


class Stage(Protocol):
    name: str
    requires: tuple[str, ...]  # stages that must run earlier in the same job (checked before any run)

    def run(self, job: Job) -> StageResult: ...


STAGES: dict[str, Stage] = {}


def run_stage(name: str, job: Job) -> StageResult:
    """Run stage `name` where the job's platform says: its own implementation, else the registered one."""
    own = job.platform.stage(name)
    return own(job) if own is not None else STAGES[name].run(job)


def register_stage(name: str) -> Callable[[type], type]:
    def add(cls: type) -> type:
        instance = cls()
        instance.name = name
        instance.requires = getattr(cls, "requires", ())
        STAGES[name] = instance
        return cls

    return add
