"""The stage registry; stages run in the order of the config's `stages` list."""
from pipeline.stages import accuracy, compile, latency, profile, score  # noqa: F401
from pipeline.stages.base import STAGES, Stage, StageResult

__all__ = ["STAGES", "Stage", "StageResult"]
