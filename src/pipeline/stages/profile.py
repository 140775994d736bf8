"""CPU profile of one generation (the first prompt): the torch profiler's top operators, a Chrome trace
(open in ui.perfetto.dev or chrome://tracing), and the time spent in each kernel slot as a table and a
bar chart. These are CPU times of the PyTorch model, not Trainium times."""
from __future__ import annotations

import csv
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from pipeline.job import Job  # noqa: E402
from pipeline.stages.base import StageResult, register_stage  # noqa: E402

KERNEL_PREFIX = "kernel."


def kernel_times(events) -> dict[str, float]:
    """Total CPU milliseconds per kernel slot entry (`kernel.<layer>.<variant>`)."""
    totals: dict[str, float] = defaultdict(float)
    for event in events:
        if event.key.startswith(KERNEL_PREFIX):
            totals[event.key[len(KERNEL_PREFIX):]] += event.cpu_time_total / 1000
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def plot(times: dict[str, float], path) -> None:
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.4 * max(len(times), 1)))
    ax.barh(list(times)[::-1], list(times.values())[::-1], color="#4a7ab7")
    ax.set_xlabel("CPU time (ms), one generation")
    ax.set_title("Time per kernel slot (CPU, not Trainium)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@register_stage("profile")
class ProfileStage:
    def run(self, job: Job) -> StageResult:
        out = job.stage_dir(self.name)
        prompt = job.prompts[0]
        model = job.model()
        job.generate(model, prompt.ids, prompt.max_new_tokens)  # warm-up outside the profile
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            generation = job.generate(model, prompt.ids, prompt.max_new_tokens)
        prof.export_chrome_trace(str(out / "trace.json"))
        averages = prof.key_averages()
        (out / "top_ops.txt").write_text(
            averages.table(sort_by="self_cpu_time_total", row_limit=job.conf.profile.top_ops)
        )
        times = kernel_times(averages)
        with (out / "kernel_times.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["kernel", "cpu_ms"])
            writer.writerows((k, f"{v:.3f}") for k, v in times.items())
        plot(times, out / "kernel_times.png")
        total = sum(times.values()) or 1.0
        top = next(iter(times), "none")
        return StageResult(
            metrics={f"cpu_ms.{k}": v for k, v in times.items()} | {"e2e_ms": generation.e2e_s * 1000},
            summary=f"CPU profile of prompt 0: top kernel {top} ({100 * times.get(top, 0) / total:.0f}% of kernel time)",
            data=times,
        )
