"""The structured schema every composed config is validated against (types and keys).

Kernel choices are plain strings here and are checked against the kernel registry by `config.validate`, so the
dotted form users type (`kernel.experts=grouped_v2`) selects a variant and a typo fails with one line that
lists the registered names. Per-variant knobs live under `kernel_params.<layer>.<knob>`: the schema holds every
knob the registry declares for the layer, the nodes stay open (`schema_node`), and validation checks the names
and types against the selected variant's params dataclass.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, make_dataclass
from typing import Any, Dict, Optional

from omegaconf import MISSING, DictConfig, OmegaConf

import kernels
from model.generation import Sampling


@dataclass
class KernelConf:
    norm: str = "baseline"
    attention: str = "baseline"
    router: str = "baseline"
    experts: str = "baseline"
    lm_head: str = "baseline"


def _layer_params_schema(layer: str) -> type:
    """Every knob any variant of `layer` declares, defaulting to None (= that variant's own default), so
    `--help` lists them and the record shows each one."""
    knobs = sorted({f.name for v in kernels.catalogue()[layer] for f in dataclasses.fields(v.params)})
    return make_dataclass(f"{layer.title().replace('_', '')}Knobs", [(k, Optional[Any], None) for k in knobs])


KernelParamsConf = make_dataclass(
    "KernelParamsConf",
    [(layer, (schema := _layer_params_schema(layer)), field(default_factory=schema)) for layer in kernels.LAYERS],
)


@dataclass
class ParallelConf:
    tp_degree: int = 1
    ep_degree: int = 1
    rpl_reduce_dtype: Optional[str] = None  # o_proj all-reduce: float32 | bfloat16; None: model dtype, as NxDI


@dataclass
class ModelDimsConf:
    """Dimensions of a seeded model (a checkpoint's own config.json wins for `source: checkpoint`)."""

    vocab_size: int = 151936
    hidden_size: int = MISSING
    num_hidden_layers: int = MISSING
    num_attention_heads: int = MISSING
    num_key_value_heads: int = MISSING
    head_dim: int = MISSING
    num_experts: int = MISSING
    num_experts_per_tok: int = MISSING
    moe_intermediate_size: int = MISSING
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    max_position_embeddings: int = 40960


@dataclass
class ModelConf:
    name: str = MISSING
    source: str = "seeded"  # "seeded" (created once, cached) or "checkpoint" (an HF directory at `path`)
    path: Optional[str] = None
    seed: int = 0
    head_alignment: float = 1.0  # seeded only: 1 trained-like margins, smaller -> near-ties (model/seeded.py)
    dtype: str = "bfloat16"  # bfloat16 | float32
    dims: Optional[ModelDimsConf] = None


@dataclass
class WorkloadConf:
    name: str = MISSING
    prompts: list[str] = MISSING
    seq_len: int = MISSING
    max_new_tokens: Optional[int] = None  # None: seq_len - prompt length, as the contest
    batch_size: int = 1
    buckets: Optional[list[int]] = None  # None: NxDI autobucketing over [128, seq_len]
    sampling: Sampling = field(default_factory=Sampling)


@dataclass
class NeuronConf:
    """The device side of platform=trn2|trn3 (src/pipeline/platforms/neuron); sources in conf/platform/trn*.yaml."""

    compiled_root: str = MISSING  # traced models, one directory per compile key
    compile_cache: str = "/var/tmp/neuron-compile-cache"  # neuronx-cc's NEFF cache (NEURON_COMPILE_CACHE_URL)
    lock_file: str = "/tmp/nki-moe-pipeline.neuron.lock"  # one job per chip at a time
    lock_timeout_s: float = 7200.0
    logical_nc_config: int = 2
    compile_retries: int = 1  # after purging a poisoned compile-cache entry
    profile_tool: str = "neuron-profile"


@dataclass
class PlatformConf:
    name: str = "cpu"
    executor: str = "reference"  # how NKI variants run: reference | interp (| nki_sim | neuron on Trainium)
    target: str = "trn2"  # the Trainium generation the interpreter checks and estimates for
    neuron: Optional[NeuronConf] = None  # platform=trn2|trn3 only


@dataclass
class CompilerConf:
    """The neuronx-cc flags that change the compiled baseline's roundings (kernels.numerics); applied to both
    sides of a comparison against `accuracy.reference=compiled`, as the contest recompiles the baseline."""

    mpa: bool = True  # --enable-mixed-precision-accumulation (NxDI's default); false: --disable-...
    auto_cast: str = "none"  # --auto-cast: none (NxDI's) | matmult


@dataclass
class CutpointsConf:
    """The `cutpoints` stage: boundaries inserted into one decoder layer (and the lm_head) of the compiled baseline."""

    tokens: Optional[list[int]] = None  # token counts measured; None: the workload's context buckets and 1 (decode)
    layer: int = 0  # the decoder layer whose blocks are cut
    lm_head_rows: int = 32  # the lm_head block runs on at most this many of the tokens (151,936 columns each)


@dataclass
class AccuracyConf:
    reference: str = "baseline"  # baseline | compiled | transformers
    tol_map: dict[str, list[float]] = field(
        default_factory=lambda: {"all": [1e-5, 0.05], "1000": [1e-5, 0.03], "50": [1e-5, 0.03], "5": [1e-5, 0.03]}
    )
    divergence_difference_tol: float = 0.001
    num_tokens_to_check: Optional[int] = None  # None: every generated token, as the contest
    layer_parity: bool = True  # against baseline/compiled: teacher-forced per-layer mismatch (layer_parity.json)


@dataclass
class LatencyConf:
    warmup: int = 1
    runs: int = 5


@dataclass
class ProfileConf:
    top_ops: int = 25


@dataclass
class EstimateConf:
    """The model-level Trainium time estimate of the latency stage (src/pipeline/estimate); sources in conf/config.yaml."""

    layers: Optional[int] = None  # decoder layers to estimate; None: the model's own (a slice preset sets the full count)
    lnc: int = 2  # logical NeuronCore config: 1 or 2
    torch_op_efficiency: float = 0.7  # fraction of HBM / TensorE peak that ops outside NKI reach
    graph_op_us: Dict[str, float] = field(default_factory=dict)  # per target: fixed cost per compiler-built op
    block_us: float = 0.0  # per block of the blockwise context-encoding MoE
    custom_call_us: float = 0.0  # per NKI kernel launch in the compiled graph
    call_ms: float = 0.0  # per model call: runtime launch and I/O
    allreduce_hop_us: float = 1.5  # per-hop latency of a ring collective
    host_step_ms: float = 1.0  # host time per generated token outside the model call (CPU sampling)
    band: Dict[str, float] = field(default_factory=dict)  # leave-one-out error band per quantity
    band_points: int = 0  # model-level points the band comes from


@dataclass
class ScoreConf:
    baseline: str = "lookup"  # lookup (FINISHED baseline run in MLflow, run it if missing) | run


@dataclass
class TrackingConf:
    uri: str = MISSING
    experiment: str = MISSING
    artifact_root: str = MISSING
    run_name: Optional[str] = None


@dataclass
class PathsConf:
    root: str = MISSING
    cache: str = MISSING
    output_dir: str = MISSING


@dataclass
class PipelineConf:
    model: ModelConf = MISSING
    workload: WorkloadConf = MISSING
    platform: PlatformConf = MISSING
    kernel: KernelConf = field(default_factory=KernelConf)
    kernel_params: KernelParamsConf = field(default_factory=KernelParamsConf)
    parallel: ParallelConf = field(default_factory=ParallelConf)
    stages: list[str] = field(default_factory=lambda: ["compile", "accuracy", "latency", "profile", "score"])
    accuracy: AccuracyConf = field(default_factory=AccuracyConf)
    compiler: CompilerConf = field(default_factory=CompilerConf)
    cutpoints: CutpointsConf = field(default_factory=CutpointsConf)
    latency: LatencyConf = field(default_factory=LatencyConf)
    profile: ProfileConf = field(default_factory=ProfileConf)
    estimate: EstimateConf = field(default_factory=EstimateConf)
    score: ScoreConf = field(default_factory=ScoreConf)
    tracking: TrackingConf = field(default_factory=TrackingConf)
    paths: PathsConf = field(default_factory=PathsConf)
    force: bool = False  # run even if a FINISHED run of the same config, stages and code exists (runner.run_job)


def schema_node() -> DictConfig:
    """The schema as Hydra stores it. `kernel_params.<layer>` nodes are open (not struct), so a misspelt knob,
    typed with or without `+`, composes and validation rejects it in one line naming the selected variant's
    knobs (rather than Hydra's multi-line error suggesting the `+` form, which then slipped through)."""
    node = OmegaConf.structured(PipelineConf)
    for layer in kernels.LAYERS:
        OmegaConf.set_struct(node.kernel_params[layer], False)
    return node
