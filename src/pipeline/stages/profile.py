"""CPU profile of one generation (the first prompt): the torch profiler's top operators, a Chrome trace
(open in ui.perfetto.dev or chrome://tracing), and the time spent in each kernel slot as a table and a
bar chart. These are CPU times of the PyTorch model, not Trainium times.

Trainium side, ESTIMATED by the cost model (nki_cpu.cost) on the interpreter traces of every NKI kernel of the
run at the workload's per-rank shapes (the first bucket of each phase, as the compile stage traces): per
kernel a Perfetto trace (one track per engine and DMA queue), a timeline PNG and a summary table, one
roofline PNG of all of them, and `est.<layer>.<phase>.*` metrics (time, floor, ratio, busy fractions)."""
from __future__ import annotations

import csv
import os
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from nki_cpu import cost  # noqa: E402
from pipeline.estimate import EstimateSettings, job_tracer, nki_kernels  # noqa: E402
from pipeline.job import Job  # noqa: E402
from pipeline.stages.base import StageResult, register_stage  # noqa: E402

KERNEL_PREFIX = "kernel."
# Kineto (torch's profiler library) prints "USDT: ... profiler_start/stop" to stderr at its USDT level 5, above
# ERROR (4), unless KINETO_LOG_LEVEL is higher; it reads the variable once, on the first profiler use
# (libkineto/src/init.cpp libkineto_init, Logger.h USDT_LOGGER_EMIT_MESSAGE). A level a user sets wins.
KINETO_QUIET_LEVEL = "6"


def kernel_times(events) -> dict[str, float]:
    """Total CPU milliseconds per kernel slot entry (`kernel.<layer>.<variant>`)."""
    totals: dict[str, float] = defaultdict(float)
    for event in events:
        if event.key.startswith(KERNEL_PREFIX):
            totals[event.key[len(KERNEL_PREFIX):]] += event.cpu_time_total / 1000
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def per_layer(times: dict[str, float]) -> dict[str, float]:
    """`cpu_ms.<layer>` over the layer's variants (a decode-only variant and its context-encoding fallback): the
    variant is the run's `kernel.<layer>` param, never part of a key, so every variant shares the column."""
    totals: dict[str, float] = defaultdict(float)
    for slot, ms in times.items():
        totals[f"cpu_ms.{slot.split('.')[0]}"] += ms
    return dict(totals)


def cpu_profiler() -> profile:
    """The torch profiler of CPU activity, without kineto's USDT marker lines on the console."""
    os.environ.setdefault("KINETO_LOG_LEVEL", KINETO_QUIET_LEVEL)
    return profile(activities=[ProfilerActivity.CPU])


def plot(times: dict[str, float], path) -> None:
    fig, ax = plt.subplots(figsize=(7, 0.5 + 0.4 * max(len(times), 1)))
    ax.barh(list(times)[::-1], list(times.values())[::-1], color="#4a7ab7")
    ax.set_xlabel("CPU time (ms), one generation")
    ax.set_title("Time per kernel slot (CPU, not Trainium)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def kernel_metrics(name: str, estimates: list[cost.KernelEstimate]) -> dict[str, float]:
    """Estimated time and floor of one kernel call (all its launches), their ratio and the busy fraction per
    engine kind (time-weighted over launches)."""
    time_us, floor_us = sum(e.time_us for e in estimates), sum(e.floor_us for e in estimates)
    metrics = {f"est.{name}.time_us": time_us, f"est.{name}.floor_us": floor_us,
               f"est.{name}.vs_floor": time_us / floor_us if floor_us else 0.0}
    for kind in estimates[0].engine_busy_fraction:
        busy = sum(e.engine_busy_fraction[kind] * e.time_us for e in estimates)
        metrics[f"est.{name}.busy.{kind}"] = busy / time_us if time_us else 0.0
    return metrics


def trainium_profile(job: Job, out) -> tuple[dict[str, float], str]:
    """Write the cost model's outputs for every NKI kernel of the job; (metrics, one-line summary)."""
    settings = EstimateSettings.from_conf(job.conf, job.dims.num_hidden_layers)
    tracer = job_tracer(job, settings)
    metrics, tables, points, lines = {}, [], [], []
    for kernel in nki_kernels(job):
        name = f"{kernel.layer}.{kernel.phase.value}"
        estimates = tracer.estimates(kernel.key, kernel.variant, kernel.params)
        for i, est in enumerate(estimates):
            stem = out / f"est_{kernel.layer}_{kernel.phase.value}_{i}"
            cost.write_perfetto(est, f"{stem}.perfetto.json")
            cost.plot_timeline(est, f"{stem}_timeline.png")
            tables.append(f"== kernel.{kernel.layer}={kernel.variant.name}, {kernel.phase.value}, launch {i}\n"
                          f"{cost.summary_table(est)}")
            points.append(est.roofline_point(name if len(estimates) == 1 else f"{name}[{i}]"))
        metrics |= kernel_metrics(name, estimates)
        lines.append(f"{name} {metrics[f'est.{name}.time_us']:.1f} us ({metrics[f'est.{name}.vs_floor']:.1f}x floor)")
    if not points:
        return {}, "no NKI kernel to estimate"
    (out / "est_summary.txt").write_text("\n\n".join(tables) + "\n")
    cost.plot_roofline(points, settings.target, out / "est_roofline.png", lnc=settings.lnc)
    return metrics, f"est. {settings.target} LNC={settings.lnc}: " + ", ".join(lines)


@register_stage("profile")
class ProfileStage:
    def run(self, job: Job) -> StageResult:
        out = job.stage_dir(self.name)
        prompt = job.prompts[0]
        model = job.model()
        job.generate(model, prompt.ids, prompt.max_new_tokens)  # warm-up outside the profile
        with cpu_profiler() as prof:
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
        est_metrics, est_summary = trainium_profile(job, out)
        return StageResult(
            metrics=per_layer(times) | {"e2e_ms": generation.e2e_s * 1000} | est_metrics,
            headline={k: v for k, v in est_metrics.items() if k.endswith((".time_us", ".vs_floor"))},
            summary=(f"CPU profile of prompt 0: top kernel {top} ({100 * times.get(top, 0) / total:.0f}% of kernel "
                     f"time) | {est_summary}"),
            data=times,
        )
