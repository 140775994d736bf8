"""The report's PNGs: the Pareto front of TTFT against throughput, and the per-op (per layer type) time breakdown
of the best runs. On the CPU both are the latency stage's Trainium ESTIMATE; on a device, measurements."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlflow.entities import Run

from pipeline.estimate.breakdown import OPS

MEASURED = ("latency.ttft_ms", "latency.throughput_tok_s")  # the latency stage on a device
ESTIMATED = ("latency.est.ttft_ms", "latency.est.throughput_tok_s")  # its cost-model estimate on the CPU
CPU_PLATFORM = "cpu"


@dataclass(frozen=True)
class Point:
    name: str
    ttft_ms: float
    throughput_tok_s: float
    source: str  # "Trainium estimate" | "measured on <platform>"


def point(run: Run, label: str) -> Point | None:
    """A run's TTFT and throughput: measured on a device, the estimate on the CPU (CPU times say nothing of
    Trainium); None when it has neither."""
    platform = run.data.tags.get("platform", CPU_PLATFORM)
    keys, source = (ESTIMATED, "Trainium estimate") if platform == CPU_PLATFORM else (MEASURED, f"measured on {platform}")
    metrics = run.data.metrics
    if not all(k in metrics for k in keys):
        return None
    return Point(label, metrics[keys[0]], metrics[keys[1]], source)


def pareto_front(points: list[Point]) -> list[Point]:
    """The points no other point beats on both (lower TTFT and higher throughput), by TTFT."""
    front, best = [], float("-inf")
    for p in sorted(points, key=lambda p: (p.ttft_ms, -p.throughput_tok_s)):
        if p.throughput_tok_s > best:
            front.append(p)
            best = p.throughput_tok_s
    return front


def plot_pareto(points: list[Point], path: Path) -> bool:
    """Every run as a point, the front joined and named; False (nothing written) without points."""
    if not points:
        return False
    from nki_cpu.cost.plots import agg_figure  # importing the cost model costs seconds

    figure = agg_figure((8, 5))
    axes = figure.add_subplot(1, 1, 1)
    for i, source in enumerate(sorted({p.source for p in points})):
        mine = [p for p in points if p.source == source]
        axes.scatter([p.ttft_ms for p in mine], [p.throughput_tok_s for p in mine], color=f"C{i}", label=source)
    front = pareto_front(points)
    axes.plot([p.ttft_ms for p in front], [p.throughput_tok_s for p in front], "k--", drawstyle="steps-post",
              label="Pareto front")
    for p in front:
        axes.annotate(p.name, (p.ttft_ms, p.throughput_tok_s), fontsize=7, xytext=(4, 4), textcoords="offset points")
    axes.set_xlabel("TTFT ms (lower is better)")
    axes.set_ylabel("throughput tok/s (higher is better)")
    axes.set_title("TTFT against throughput, mean over the workload's prompts", fontsize=10)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return True


def plot_breakdowns(breakdowns: dict[str, dict], path: Path) -> bool:
    """Per phase, one stacked bar per run: the estimated time of each op per model call (est_breakdown.json);
    False (nothing written) without breakdowns."""
    if not breakdowns:
        return False
    from nki_cpu.cost.plots import agg_figure

    names = list(breakdowns)[::-1]
    phases = list(next(iter(breakdowns.values()))["phases"])
    figure = agg_figure((6 * len(phases), 1.5 + 0.45 * len(names)))
    for column, phase in enumerate(phases):
        axes = figure.add_subplot(1, len(phases), column + 1)
        for y, name in enumerate(names):
            left = 0.0
            for op in breakdowns[name]["phases"][phase]["ops"]:
                axes.barh(y, op["time_ms"], left=left, color=f"C{OPS.index(op['op']) % 10}",
                          label=op["op"] if y == 0 else None)
                left += op["time_ms"]
        axes.set_yticks(range(len(names)), names if column == 0 else [""] * len(names), fontsize=8)
        axes.set_xlabel("est. ms per call")
        axes.set_title(f"est. {phase}", fontsize=10)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    figure.suptitle("Per-op Trainium ESTIMATE (latency stage, est_breakdown.json)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return True
