"""The stage registry; stages run in the order of the config's `stages` list."""
from pipeline.stages import compile, cutpoints, accuracy, latency, profile, score, export, report  # noqa: F401  (registration order)
from pipeline.stages.base import STAGES, Stage, StageResult

__all__ = ["STAGES", "Stage", "StageResult"]
