"""Model-level Trainium time estimates of a config, for the latency stage (every number an estimate, not a
measurement).

    settings  the config's `estimate` section and target, in ns
    ops       bytes and FLOPs of the ops outside NKI, per layer type and phase, at per-rank shapes
    graph_ops compiler-built operations per op outside NKI (aten ops of the baseline's torch code)
    tracing   NKI variants traced by the interpreter per bucket and estimated by the cost model, cached
    collectives  ring all-reduce / all-gather latency
    step      one model call (context bucket or decode KV bucket) = layers x per-layer parts + per-call
              parts + collectives + host
    prompts   TTFT, decode steps over the KV buckets NxDI walks, e2e, throughput
    contest   the contest's measured baselines (package data) and when a config is the contest's setup
    job_estimate  a job's kernel set and the all-baseline set, score reference, contest score
    breakdown per phase and op: JSON and a stacked-bar PNG
    calibrate the fixed costs (per compiler-built op, blockwise block, NKI launch, model call, host token)
              fitted to device measurements (calibration/model_points.yaml), with leave-one-out errors

Not modelled: compiler fusion or scheduling across ops (ops run back to back; their fixed costs are fitted
per op), VectorE/ScalarE time of element-wise torch ops beyond that fixed cost, overlap of collectives with
compute, the first layer's input norm having no residual (every norm is costed like the fused add + norm the
compile stage traces), on-device sampling and async mode (the host time is the contest harness's CPU sampling),
and NKI kernels launched outside a slot.
"""
from pipeline.estimate.job_estimate import JobEstimate, estimate_job, nki_kernels, job_tracer
from pipeline.estimate.prompts import PromptEstimate, decode_buckets, estimate_prompt
from pipeline.estimate.settings import EstimateSettings, settings_problems
from pipeline.estimate.step import ModelEstimator, Part, StepEstimate
from pipeline.estimate.tracing import KernelKey, KernelTracer, bucket_shapes

__all__ = [
    "JobEstimate", "estimate_job", "nki_kernels", "job_tracer", "PromptEstimate", "decode_buckets",
    "estimate_prompt", "EstimateSettings", "settings_problems", "ModelEstimator", "Part", "StepEstimate",
    "KernelKey", "KernelTracer", "bucket_shapes",
]
