"""A job's Trainium estimate: its kernel set and the all-baseline set over the workload's prompts, the score
reference (the contest's measured baseline for the contest setup, else this config's all-baseline estimate),
and the contest score of each prompt."""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kernels.registry import Variant
from kernels.slots import KernelSet
from kernels.types import Phase
from pipeline.estimate.contest import MEASURED_PER_TOKEN, baseline_rows, is_contest_model, is_contest_setup
from pipeline.estimate.prompts import PromptEstimate, estimate_prompt
from pipeline.estimate.settings import EstimateSettings
from pipeline.estimate.step import ModelEstimator
from pipeline.estimate.tracing import KernelKey, KernelTracer, bucket_shapes
from pipeline.evaluation.contest_score import contest_score

if TYPE_CHECKING:  # pipeline.job imports pipeline.config, which imports the stages, which import this package
    from pipeline.job import Job

SCORE_KEYS = ("ttft_ms", "tpot_ms", "e2e_ms", "throughput_tok_s", "floor_tpot_ms")


@dataclass(frozen=True)
class NkiKernel:
    """One NKI kernel of a job at the first bucket of a phase (the shapes the compile stage traces)."""

    layer: str
    phase: Phase
    variant: Variant
    params: Any
    key: KernelKey


def first_bucket(job: Job, phase: Phase) -> int:
    shapes = job.layer_shapes()
    return (shapes.context_lengths if phase is Phase.CONTEXT else shapes.kv_lengths)[0]


def nki_kernels(job: Job) -> list[NkiKernel]:
    """Every (layer, phase) whose selected variant runs NKI."""
    found = []
    for layer, slot in job.kernels.slots.items():
        for phase in Phase:
            variant, params = slot.resolve(phase)
            if variant.nki is not None:
                shapes = bucket_shapes(job.layer_shapes(), phase, first_bucket(job, phase))
                found.append(NkiKernel(layer, phase, variant, params, KernelKey.of(layer, variant, params, phase, shapes)))
    return found


def job_tracer(job: Job, settings: EstimateSettings) -> KernelTracer:
    """The job's tracer for the settings' target and LNC, made once so that the latency and profile stages
    share its traces and estimates; it starts with the traces the compile stage recorded, when it ran."""
    key = (settings.target, settings.lnc)
    if key in job.tracers:
        return job.tracers[key]
    tracer = job.tracers[key] = KernelTracer(settings.target, settings.lnc)
    compiled = job.results.get("compile")
    recorded = compiled.data.get("traces", {}) if compiled else {}
    for kernel in nki_kernels(job):
        if (kernel.layer, kernel.phase.value) in recorded:
            tracer.seed(kernel.key, recorded[(kernel.layer, kernel.phase.value)])
    return tracer


@dataclass
class KernelSetEstimate:
    estimator: ModelEstimator
    prompts: list[PromptEstimate]

    def mean(self, key: str) -> float:
        return statistics.fmean(p.metrics()[key] for p in self.prompts)


def estimate_kernel_set(job: Job, kernels: KernelSet, settings: EstimateSettings,
                        tracer: KernelTracer) -> KernelSetEstimate:
    estimator = ModelEstimator(job.layer_shapes(), job.tp.degree, kernels, settings, tracer)
    sequence_tokens = job.conf.workload.seq_len * job.conf.workload.batch_size
    prompts = [estimate_prompt(estimator, p.index, len(p.ids), p.max_new_tokens, job.buckets, sequence_tokens)
               for p in job.prompts]
    return KernelSetEstimate(estimator, prompts)


@dataclass
class JobEstimate:
    settings: EstimateSettings
    ours: KernelSetEstimate
    baseline: KernelSetEstimate
    reference: str  # what the score compares against
    reference_latency: dict[int, tuple[float, float]]  # prompt -> (e2e ms, throughput tok/s)
    accuracy: dict[int, float]
    accuracy_source: str
    nki_ratio: float
    contest_model: bool  # the real model at the contest's TP and LNC: the contest's measured t_tok applies

    def score(self, prompt: PromptEstimate, reference: tuple[float, float]) -> float:
        return contest_score(self.accuracy.get(prompt.index, 1.0), reference[0], prompt.e2e_ns / 1e6,
                             prompt.throughput_tok_s, reference[1], self.nki_ratio)

    @property
    def scores(self) -> dict[int, float]:
        return {p.index: self.score(p, self.reference_latency[p.index]) for p in self.ours.prompts}

    @property
    def scores_vs_baseline_estimate(self) -> dict[int, float]:
        return {p.index: self.score(p, (b.e2e_ns / 1e6, b.throughput_tok_s))
                for p, b in zip(self.ours.prompts, self.baseline.prompts)}

    @property
    def measured_ms_per_token(self) -> float | None:
        """The contest baseline's measured decode time per token, when this is the contest's model."""
        return MEASURED_PER_TOKEN[self.settings.hardware.name].ms_per_token if self.contest_model else None

    def decode_line(self, kernel_set: KernelSetEstimate) -> str:
        """Mean estimated decode step next to its weight-bytes floor and, for the contest's model, the
        contest's measured baseline."""
        tpot, floor = kernel_set.mean("tpot_ms"), kernel_set.mean("floor_tpot_ms")
        line = f"{tpot:.2f} ms/token (weight-bytes floor {floor:.2f} ms, {tpot / floor:.1f}x)"
        measured = self.measured_ms_per_token
        return line + (f"; baseline measured by the contest: {measured} ms/token" if measured else "")

    @property
    def host_ms(self) -> float:
        """Host time per generated token (the same every step)."""
        return self.settings.host_step_ns / 1e6

    def band(self, quantity: str) -> float:
        """The calibration's leave-one-out band of a quantity (TTFT, TKG, host, e2e); 0 when uncalibrated."""
        return self.settings.band.get(quantity, 0.0)

    def bands(self) -> dict[str, float]:
        """Low and high ends of the headline estimates: TTFT, decode step (its device part carries the TKG
        band, its host part the host band), e2e, and the score (about (reference / e2e)^2, so the e2e band
        enters squared)."""
        ttft, tkg, e2e = self.ours.mean("ttft_ms"), self.ours.mean("tpot_ms") - self.host_ms, self.ours.mean("e2e_ms")
        score = statistics.fmean(self.scores.values())
        b = self.band
        out = {"ttft_ms": (ttft * (1 - b("TTFT")), ttft * (1 + b("TTFT"))),
               "tpot_ms": (tkg * (1 - b("TKG")) + self.host_ms * (1 - b("host")),
                           tkg * (1 + b("TKG")) + self.host_ms * (1 + b("host"))),
               "e2e_ms": (e2e * (1 - b("e2e")), e2e * (1 + b("e2e"))),
               "score": (score / (1 + b("e2e")) ** 2, score / (1 - b("e2e")) ** 2)}
        return {f"{key}_{end}": value for key, ends in out.items() for end, value in zip(("low", "high"), ends)}

    def summary(self) -> str:
        s, scores, b = self.settings, self.scores, self.band
        tkg = self.ours.mean("tpot_ms") - self.host_ms
        return (f"est. {s.target} ({s.layers} layers, LNC={s.lnc}): TTFT {self.ours.mean('ttft_ms'):.1f} ms "
                f"\u00b1{b('TTFT'):.0%}, TKG step {tkg:.2f} ms \u00b1{b('TKG'):.0%} + host {self.host_ms:.2f} ms "
                f"\u00b1{b('host'):.0%} = {self.decode_line(self.ours)}, e2e {self.ours.mean('e2e_ms') / 1e3:.2f} s, "
                f"score {statistics.fmean(scores.values()):.3f} vs {self.reference}; {s.calibration}")


def estimate_job(job: Job, nki_ratio: float) -> JobEstimate:
    conf = job.conf
    settings = EstimateSettings.from_conf(conf, job.dims.num_hidden_layers)
    tracer = job_tracer(job, settings)
    ours = estimate_kernel_set(job, job.kernels, settings, tracer)
    baseline = estimate_kernel_set(job, job.baseline_kernels, settings, tracer)
    target = settings.hardware.name
    if is_contest_setup(conf, job.dims, settings.layers):
        rows = baseline_rows(target)
        reference = f"contest prompt_data_{target}.csv (NxDI baseline measured by the contest)"
        latency = {r.prompt: (r.latency_ms, r.throughput_tok_s) for r in rows}
    else:
        reference = "estimate of this config with every kernel baseline"
        latency = {b.index: (b.e2e_ns / 1e6, b.throughput_tok_s) for b in baseline.prompts}
    checked = job.results.get("accuracy")
    accuracy = {i: float(ok) for i, ok in checked.data["per_prompt"].items()} if checked else {}
    source = f"accuracy stage (vs {conf.accuracy.reference})" if checked else "not checked: assumed 1"
    return JobEstimate(settings, ours, baseline, reference, latency, accuracy, source, nki_ratio,
                       is_contest_model(job.dims, settings.layers, job.tp.degree, settings.lnc))
