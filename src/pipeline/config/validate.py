"""Checks a composed config against the schema (no unknown keys), what exists (kernel variants and their knobs,
stages, executors) and what the model can do (numeric ranges, sharding, sequence lengths), before any run is
opened. Every problem is one readable line."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

import kernels
from kernels.executors import EXECUTORS
from kernels.numerics import AUTO_CAST
from pipeline.config.schema import ModelDimsConf, PipelineConf


class ConfigError(ValueError):
    """A config that cannot run; the message is one line meant for a person."""


@dataclass(frozen=True)
class Bound:
    """The valid range of a numeric key: [low, high], or (low, high] when `open_low`."""

    low: float
    high: float = math.inf
    open_low: bool = False
    why: str = ""

    def admits(self, value: float) -> bool:
        return (value > self.low if self.open_low else value >= self.low) and value <= self.high

    def __str__(self) -> str:
        if self.low == self.high:
            text = f"{self.low:g}"
        else:
            text = f"greater than {self.low:g}" if self.open_low else f"at least {self.low:g}"
            text += "" if self.high == math.inf else f" and at most {self.high:g}"
        return f"{text} ({self.why})" if self.why else text


AT_LEAST_1, AT_LEAST_0, POSITIVE = Bound(1), Bound(0), Bound(0, open_low=True)
SEED = Bound(0, 2**32 - 1, why="a 32-bit seed")  # seeded.py multiplies model.seed by 1_000_003 into torch's 64 bits

# Every numeric key outside `estimate` (pipeline.estimate.settings checks those): a value out of range would
# otherwise fail deep inside the model (a math domain error, an empty generation, a tensor of size 0).
# None passes where the schema allows it (workload.max_new_tokens: null fills seq_len, as the contest).
BOUNDS: dict[str, Bound] = {
    "workload.seq_len": AT_LEAST_1,
    "workload.max_new_tokens": AT_LEAST_1,
    "workload.batch_size": AT_LEAST_1,
    "workload.buckets": AT_LEAST_1,  # each bucket
    "workload.sampling.temperature": POSITIVE,
    "workload.sampling.top_k": AT_LEAST_0,
    "workload.sampling.top_p": Bound(0, 1, open_low=True),
    "workload.sampling.seed": SEED,
    "parallel.tp_degree": AT_LEAST_1,
    "parallel.ep_degree": Bound(1, 1, why="expert parallelism is not supported yet; NxDI's default shards experts on TP"),
    "model.seed": SEED,
    "model.head_alignment": Bound(0, 1, why="the share of the embedding in the seeded lm_head rows"),
    **{f"model.dims.{f.name}": AT_LEAST_1 for f in dataclasses.fields(ModelDimsConf) if f.type in (int, "int")},
    "model.dims.rms_norm_eps": POSITIVE,
    "model.dims.rope_theta": POSITIVE,
    "latency.warmup": AT_LEAST_0,
    "latency.runs": AT_LEAST_1,
    "profile.top_ops": AT_LEAST_1,
    "accuracy.divergence_difference_tol": AT_LEAST_0,
    "accuracy.num_tokens_to_check": AT_LEAST_1,
    "cutpoints.tokens": AT_LEAST_1,  # each token count
    "cutpoints.layer": AT_LEAST_0,  # and below the model's layer count (_length_problems)
    "cutpoints.lm_head_rows": AT_LEAST_1,
    "platform.neuron.lock_timeout_s": AT_LEAST_0,
    "platform.neuron.logical_nc_config": Bound(1, 2, why="LNC 1 or 2"),
    "platform.neuron.compile_retries": AT_LEAST_0,
}

CHOICES: dict[str, tuple[str, ...]] = {
    "model.dtype": ("bfloat16", "float32"),
    "accuracy.reference": ("baseline", "compiled", "transformers"),
    "compiler.auto_cast": AUTO_CAST,
    "parallel.rpl_reduce_dtype": (None, "bfloat16", "float32"),  # None: the model dtype, as NxDI leaves it unset
}


def to_pipeline_conf(cfg: DictConfig) -> PipelineConf:
    """The typed config; a key the schema does not know (added with `+`, or a misspelt kernel knob) is an error."""
    _check_keys(cfg)
    return OmegaConf.to_object(cfg)


def _check_keys(cfg: DictConfig) -> None:
    for layer in kernels.LAYERS:  # knobs are open keys (schema.schema_node): names and types checked here
        knobs = OmegaConf.to_container(cfg.kernel_params[layer], resolve=True)
        try:
            kernels.get(layer, cfg.kernel[layer]).make_params(knobs)
        except (kernels.UnknownVariantError, ValueError) as error:
            raise ConfigError(str(error)) from None
    unknown = _unknown_keys(cfg, "")
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(unknown)}; `python -m pipeline --help` shows the config"
        )


def _unknown_keys(node: DictConfig, prefix: str) -> list[str]:
    schema = OmegaConf.get_type(node)
    known = {f.name for f in dataclasses.fields(schema)} if dataclasses.is_dataclass(schema) else None
    found = []
    for key, child in node.items_ex(resolve=False):
        path = f"{prefix}{key}"
        if known is not None and key not in known:
            found.append(path)
        elif path.startswith("kernel_params."):
            continue
        elif isinstance(child, DictConfig) and OmegaConf.to_container(child) is not None:  # model.dims may be null
            found.extend(_unknown_keys(child, f"{path}."))
    return found


def _lookup(conf: PipelineConf, path: str) -> object:
    value = conf
    for part in path.split("."):
        value = getattr(value, part, None)
    return value


def _range_problems(conf: PipelineConf) -> list[str]:
    problems = []
    for path, bound in BOUNDS.items():
        value = _lookup(conf, path)
        values = value if isinstance(value, list) else [] if value is None else [value]
        if not all(bound.admits(v) for v in values):
            problems.append(f"{path}={value}: must be {bound}")
    for path, choices in CHOICES.items():
        if _lookup(conf, path) not in choices:
            names = ("null" if c is None else c for c in choices)
            problems.append(f"{path}={_lookup(conf, path)}: choose {' or '.join(names)}")
    return problems


def _length_problems(conf: PipelineConf) -> list[str]:
    workload, dims = conf.workload, conf.model.dims
    problems = []
    if workload.buckets and workload.seq_len > max(workload.buckets):
        problems.append(f"workload.buckets={workload.buckets}: the largest must hold workload.seq_len={workload.seq_len}")
    if dims is not None and workload.seq_len > dims.max_position_embeddings:
        problems.append(f"workload.seq_len={workload.seq_len}: above model.dims.max_position_embeddings="
                        f"{dims.max_position_embeddings}")
    if dims is not None and conf.cutpoints.layer >= dims.num_hidden_layers:
        problems.append(f"cutpoints.layer={conf.cutpoints.layer}: the model has {dims.num_hidden_layers} layers")
    return problems


def stage_problems(stages: list[str]) -> list[str]:
    """Stages run in the registry's order (compile, cutpoints, accuracy, latency, profile, score, export,
    report), each at most once, and after the stages they need (`Stage.requires`)."""
    from pipeline.stages import STAGES  # the stage registry imports the model; keep config import light

    listed = f"stages=[{','.join(stages)}]"
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        return [f"{listed}: unknown stage(s) {', '.join(unknown)}; choose from: {', '.join(STAGES)}"]
    problems = [f"{listed}: {s} needs {need} earlier in stages"
                for i, s in enumerate(stages) for need in STAGES[s].requires if need not in stages[:i]]
    order = list(STAGES)
    if not problems and [order.index(s) for s in stages] != sorted({order.index(s) for s in stages}):
        problems.append(f"{listed}: list each stage once, in the order {', '.join(order)}")
    return problems


def validate(conf: PipelineConf) -> None:
    """Everything but the keys and kernel choices, which `to_pipeline_conf` checked on the composed config."""
    from pipeline.estimate.settings import settings_problems

    if conf.platform.executor not in EXECUTORS:
        raise ConfigError(
            f"platform.executor={conf.platform.executor} is not available on platform {conf.platform.name}; "
            f"choose one of: {', '.join(sorted(EXECUTORS))}"
        )
    problems = (stage_problems(conf.stages) + _range_problems(conf) + _length_problems(conf)
                + settings_problems(conf.estimate, conf.platform.target))
    if problems:
        raise ConfigError("; ".join(problems))
