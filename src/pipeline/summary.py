"""The end-of-job summary: one line per stage, then where the outputs and the MLflow run are. The same table is
the job run's MLflow description."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class StageLine:
    name: str
    status: str  # FINISHED | FAILED | KILLED | SKIPPED
    seconds: float
    summary: str


def summary_table(title: str, lines: list[StageLine], footer: list[str]) -> str:
    width = max([len(l.name) for l in lines] + [5])
    rows = [title, f"  {'stage':<{width}}  {'status':<8}  {'time':>7}  result"]
    for line in lines:
        rows.append(f"  {line.name:<{width}}  {line.status:<8}  {line.seconds:>6.1f}s  {line.summary}")
    return "\n".join(rows + [f"  {text}" for text in footer])


def as_description(table: str) -> str:
    """The table as an MLflow run description (rendered as markdown: a code block keeps its columns aligned)."""
    return f"```\n{table}\n```"
