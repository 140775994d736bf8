"""Benchmark of the Trainium estimates at Qwen3-30B-A3B's real per-rank shapes (TP=4, LNC=2, 48 layers).

    PYTHONPATH=src python benchmarks/bench_cost_model.py

Prints, measured in this run (every kernel or model time it prints is a cost-model ESTIMATE):
1. the time to trace and estimate one whole decode step whose norms (97 calls) and MoE experts (48 calls)
   are NKI kernels (nki_add_rmsnorm and the benchmark decode-experts kernel in benchmarks/kernels), every
   other op by roofline: the pipeline's way (kernels traced once per distinct shape, cached), and every
   layer's kernels traced and estimated separately (target: under 30 s);
2. for the baseline kernel set on the contest workload, trn2 and trn3: the estimated time per decode token,
   the weight-bytes floor and the contest's measured baseline side by side, with TTFT, e2e and score;
3. the estimated TTFT (one context-encoding call) per contest bucket, 128 / 256 / 640, of the experiment preset
   BENCH_EXPERIMENT (default all_nki: every layer on NKI in context encoding) against the all-baseline set,
   trn2 and trn3, and each of the preset's context-encoding NKI kernels against its cost-model floor.
   Set BENCH_EXPERIMENT= (empty) to skip it; it traces every context kernel at real shapes (minutes).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))

import nki_cpu  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from kernels.examples import example_call  # noqa: E402
from kernels.executors import interpret, make_executor  # noqa: E402
from kernels.experts.baseline import experts_reference  # noqa: E402
from kernels.registry import NoParams, Variant, get  # noqa: E402
from kernels.slots import KernelSet, KernelSlot  # noqa: E402
from kernels.types import ExpertWeights, Phase  # noqa: E402
from nki_cpu import cost  # noqa: E402
from pipeline.config import CONF_DIR  # noqa: E402
from pipeline.config.validate import to_pipeline_conf  # noqa: E402
from pipeline.estimate import EstimateSettings, ModelEstimator, StepEstimate, bucket_shapes, estimate_job  # noqa: E402
from pipeline.job import Job  # noqa: E402

EXPERTS_KERNEL = os.path.join(HERE, "kernels", "moe_decode_experts.py")
CONTEST = ["model=qwen3_30b_a3b_slice", "parallel.tp_degree=4", "workload=contest"]
KV_BUCKET = 128
CONTEXT_BUCKETS = (128, 256, 640)  # the contest's context-encoding buckets at seq_len 640
EXPERIMENT = os.environ.get("BENCH_EXPERIMENT", "all_nki")


def contest_job(*overrides: str) -> Job:
    """The pipeline's job for the contest setup (no weights are loaded: estimates need shapes only)."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose("config", overrides=[*CONTEST, *overrides, "paths.output_dir=/tmp", "tracking.experiment=bench"])
    return Job(to_pipeline_conf(cfg), Path("/tmp"))


def _experts_nki(x, affinities, index, weights, params=None, launch=None):
    kernel = nki_cpu.load_kernel(EXPERTS_KERNEL, "moe_decode_experts_kernel")
    return launch(kernel, x, weights.gate_up, weights.down, index.int(), affinities.float())


BENCH_EXPERTS = Variant(layer="experts", name="bench_moe_decode_experts", reference=experts_reference,
                        summary="benchmarks/kernels/moe_decode_experts.py (decode only)", nki=_experts_nki,
                        phases=frozenset({Phase.TOKEN}))


def nki_kernel_set(job: Job) -> KernelSet:
    """The job's kernels (NKI RMSNorm) with the benchmark's decode-experts kernel in the experts slot."""
    slot = KernelSlot(BENCH_EXPERTS, NoParams(), get("experts", "baseline"), make_executor("interp", "trn2"))
    return KernelSet({**job.kernels.slots, "experts": slot})


def experts_args(shapes) -> tuple:
    """Cheap real-shape expert inputs: only the selected experts hold weights (costs do not depend on values)."""
    make = nki_cpu.load_kernel(EXPERTS_KERNEL, "make_moe_inputs")
    x, gate_up, down, index, affinity = make(shapes.experts, shapes.hidden, shapes.intermediate, shapes.top_k)
    return x, affinity.bfloat16(), index.long(), ExpertWeights(gate_up, down)


def traced_ns(kernels: KernelSet, layer_name: str, args: tuple, settings: EstimateSettings) -> float:
    """Trace one slot call through the interpreter and estimate every launch it makes."""
    variant, params = kernels.slots[layer_name].resolve(Phase.TOKEN)
    traces = interpret(variant, params, args, settings.target)[1]
    return sum(cost.estimate(t, settings.target, settings.lnc).time_ns for t in traces)


def every_layer_separately(job: Job, kernels: KernelSet, settings: EstimateSettings) -> tuple[float, int]:
    """(est. ns of every NKI call of the step, calls traced): each layer's two norms and its experts traced and
    estimated anew (inputs are made once: every layer has the same shapes), then the final norm."""
    shapes = bucket_shapes(job.layer_shapes(), Phase.TOKEN, KV_BUCKET)
    norm, experts = example_call("norm", Phase.TOKEN, shapes).args, experts_args(shapes)
    calls = [("norm", norm), ("norm", norm), ("experts", experts)] * settings.layers + [("norm", norm)]
    return sum(traced_ns(kernels, name, args, settings) for name, args in calls), len(calls)


def decode_step_timing(target: str) -> None:
    job = contest_job(f"platform.target={target}", "kernel.norm=nki_add_rmsnorm")
    settings = EstimateSettings.from_conf(job.conf, job.dims.num_hidden_layers)
    kernels = nki_kernel_set(job)
    start = time.perf_counter()
    estimator = ModelEstimator(job.layer_shapes(), job.tp.degree, kernels, settings)
    step = estimator.step(Phase.TOKEN, KV_BUCKET)
    cached_s = time.perf_counter() - start
    nki_ns = step.totals(lambda p: p.source)["nki"]
    start = time.perf_counter()
    separate_ns, traces = every_layer_separately(job, kernels, settings)
    separate_s = time.perf_counter() - start
    experts = next(p for p in step.parts if p.name == "experts")
    print(f"\n[{target}] est. decode step at KV bucket {KV_BUCKET}: {step.total_ns / 1e6:.2f} ms "
          f"(weight-bytes floor {step.weight_floor_ns / 1e6:.2f} ms); NKI calls {nki_ns / 1e6:.2f} ms of it; "
          f"experts kernel est. {experts.time_ns / 1e3:.1f} us per layer")
    print(f"  pipeline path (traced once per shape, cached): {cached_s:.1f} s, {estimator.tracer.traced} traces")
    print(f"  every layer traced and estimated separately:   {separate_s:.1f} s, {traces} traces; "
          f"NKI total {separate_ns / 1e6:.2f} ms ({100 * abs(separate_ns / nki_ns - 1):.2f}% from the cached path)")


def baseline_table() -> None:
    print("\nBaseline kernel set, contest workload (5 prompts), Qwen3-30B-A3B 48 layers, TP=4, LNC=2:")
    print(f"  {'target':<7}{'est. ms/token':>14}{'floor ms':>10}{'est/floor':>10}{'contest-measured ms':>21}"
          f"{'est. TTFT ms':>14}{'est. e2e s':>12}{'est. score':>12}")
    for target in ("trn2", "trn3"):
        estimate = estimate_job(contest_job(f"platform.target={target}"), nki_ratio=0.0)
        ours = estimate.ours
        tpot, floor = ours.mean("tpot_ms"), ours.mean("floor_tpot_ms")
        print(f"  {target:<7}{tpot:>14.2f}{floor:>10.2f}{tpot / floor:>9.1f}x{estimate.measured_ms_per_token:>21.1f}"
              f"{ours.mean('ttft_ms'):>14.1f}{ours.mean('e2e_ms') / 1e3:>12.2f}"
              f"{statistics.fmean(estimate.scores.values()):>12.2f}")
    print("  est. = cost-model estimate; floor = weight (+KV) bytes per token over HBM bandwidth, mean over the "
          "same steps;\n  contest-measured = the NxDI baseline's per-token time measured by the contest (fit to "
          "prompt_data_<target>.csv,\n  hardware-and-model.md §10.3); score = the contest formula against those "
          "CSVs (accuracy assumed 1, NKI ratio 0).")


def context_steps(job: Job, kernels: KernelSet) -> dict[int, StepEstimate]:
    """One context-encoding call per contest bucket for `kernels` at the job's per-rank shapes."""
    estimator = ModelEstimator(job.layer_shapes(), job.tp.degree, kernels, EstimateSettings.from_conf(
        job.conf, job.dims.num_hidden_layers))
    return {bucket: estimator.step(Phase.CONTEXT, bucket) for bucket in CONTEXT_BUCKETS}


def ttft_table(experiment: str) -> None:
    """TTFT per context bucket of `+experiment=<experiment>` against the all-baseline set, and the preset's
    context-encoding NKI kernels against their floors (cost model on the interpreter traces)."""
    print(f"\nEst. TTFT per context bucket, +experiment={experiment} vs every kernel baseline, Qwen3-30B-A3B "
          "48 layers, TP=4, LNC=2 (one context-encoding call incl. runtime and host time per call):")
    print(f"  {'target':<7}{'bucket':>7}{'baseline ms':>13}{experiment + ' ms':>14}{'speedup':>9}"
          f"{'device-only speedup':>21}")
    kernel_rows = []
    for target in ("trn2", "trn3"):
        job = contest_job(f"platform.target={target}", f"+experiment={experiment}")
        ours, base = context_steps(job, job.kernels), context_steps(job, job.baseline_kernels)
        for bucket in CONTEXT_BUCKETS:
            o, b = ours[bucket], base[bucket]
            by_source = o.totals(lambda p: p.source)
            fixed = by_source["host"] + by_source["runtime"]  # the same for both sets: left out of device-only
            print(f"  {target:<7}{bucket:>7}{b.total_ns / 1e6:>13.1f}{o.total_ns / 1e6:>14.1f}"
                  f"{b.total_ns / o.total_ns:>8.1f}x{(b.total_ns - fixed) / (o.total_ns - fixed):>20.1f}x")
            kernel_rows += [(target, bucket, p) for p in o.parts if p.source == "nki"]
    print(f"\n  {experiment}'s context-encoding NKI kernels (per call, launch cost included) against their floor "
          "(the\n  cost model's bytes over HBM bandwidth or FLOPs over peak of the same trace, whichever is larger):")
    print(f"  {'target':<7}{'bucket':>7}  {'op':<10}{'variant':<20}{'est. us':>10}{'floor us':>10}{'est/floor':>10}")
    for target, bucket, p in kernel_rows:
        if p.scope == "layer" or p.name == "lm_head":
            print(f"  {target:<7}{bucket:>7}  {p.name:<10}{p.variant:<20}{p.time_ns / 1e3:>10.1f}"
                  f"{p.floor_ns / 1e3:>10.1f}{p.time_ns / p.floor_ns:>9.1f}x")
    print("  Every figure is a cost-model ESTIMATE: the baseline's context-encoding fixed costs are fitted to the "
          "contest's\n  measured TTFT (calibrate.py); the NKI kernels' prefill times are the cost model on their "
          "traces, not\n  calibrated against any device run of these kernels.")


def main() -> None:
    print("Trainium cost-model ESTIMATES (not measurements) at Qwen3-30B-A3B per-rank shapes: TP=4, LNC=2, 48 layers")
    decode_step_timing("trn2")
    baseline_table()
    if EXPERIMENT:
        ttft_table(EXPERIMENT)


if __name__ == "__main__":
    main()
