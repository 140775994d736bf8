"""What every stage of one job shares: the resolved config, the tokenised workload, the checkpoint, the
loaded weights (once, whatever kernel sets the stages ask for) and the results of earlier stages."""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from kernels.numerics import CompilerNumerics
from kernels.slots import KernelSet
from kernels.types import Phase
from model.dims import ModelDims
from model.generation import Generation, context_bucket, generate, nxdi_buckets, pick_bucket
from model.parallel import ShardingError, TensorParallel
from model.qwen3_moe import Qwen3Moe
from model.seeded import ensure_seeded_checkpoint
from model.tokenizer import qwen3_tokenizer
from model.weights import checkpoint_bytes
from pipeline.config.schema import PipelineConf
from pipeline.config.validate import ConfigError
from pipeline.platforms import Platform, platform_for
from pipeline.progress import Progress

NXDI_MIN_BUCKET = 128  # NxDI autobucketing starts at 128 tokens


@dataclass(frozen=True)
class Prompt:
    index: int
    text: str
    ids: tuple[int, ...]
    max_new_tokens: int

    @property
    def total_length(self) -> int:
        return len(self.ids) + self.max_new_tokens


class Job:
    def __init__(self, conf: PipelineConf, output_dir: Path, platform: Platform | None = None):
        self.conf = conf
        self.platform = platform or platform_for(conf)  # where the stages run (pipeline.platforms)
        self.output_dir = output_dir
        self.dtype = getattr(torch, conf.model.dtype)
        workload = conf.workload
        self.buckets = sorted(workload.buckets or nxdi_buckets(NXDI_MIN_BUCKET, workload.seq_len))
        self.tokenizer = qwen3_tokenizer()
        self.sampling = workload.sampling
        self.prompts = [self._prompt(i, text) for i, text in enumerate(workload.prompts)]
        try:
            reduce_dtype = conf.parallel.rpl_reduce_dtype
            self.tp = TensorParallel(self.dims, conf.parallel.tp_degree, reduce_dtype and getattr(torch, reduce_dtype))
        except ShardingError as error:
            raise ConfigError(f"parallel.tp_degree={conf.parallel.tp_degree}: {error}") from None
        platform = conf.platform
        self.kernels = KernelSet.from_choices(
            dataclasses.asdict(conf.kernel), dataclasses.asdict(conf.kernel_params), platform.executor, platform.target
        )
        self.baseline_kernels = KernelSet.baseline(platform.executor, platform.target)
        self.results: dict[str, object] = {}
        self.tracers: dict[tuple[str, int], object] = {}  # NKI kernel tracers by (target, LNC), shared by stages
        self.tracking = None  # the MLflow store, set by the runner once the job run is open
        self._model: Qwen3Moe | None = None

    def _prompt(self, index: int, text: str) -> Prompt:
        ids = tuple(self.tokenizer.encode(text))
        seq_len = self.conf.workload.seq_len
        new = self.conf.workload.max_new_tokens
        new = seq_len - len(ids) if new is None else new
        if new < 1 or len(ids) + new > seq_len:
            raise ConfigError(
                f"workload.prompts[{index}] has {len(ids)} tokens; with max_new_tokens={new} it does not fit "
                f"workload.seq_len={seq_len}"
            )
        return Prompt(index, text, ids, new)

    def stage_dir(self, stage: str) -> Path:
        path = self.output_dir / stage
        path.mkdir(parents=True, exist_ok=True)
        return path

    @cached_property
    def checkpoint(self) -> Path:
        model = self.conf.model
        if model.source == "checkpoint":
            if not model.path or not (Path(model.path) / "config.json").exists():
                raise ConfigError(f"model.path={model.path}: not a Hugging Face checkpoint directory (no config.json)")
            return Path(model.path)
        if model.source != "seeded" or model.dims is None:
            raise ConfigError(f"model.source={model.source}: choose seeded (with model.dims) or checkpoint (with model.path)")
        return ensure_seeded_checkpoint(
            ModelDims(**dataclasses.asdict(model.dims)), model.seed, Path(self.conf.paths.cache) / "models", model.name,
            model.head_alignment,
        )

    @cached_property
    def dims(self) -> ModelDims:
        model = self.conf.model
        if model.source == "seeded" and model.dims is not None:
            return ModelDims(**dataclasses.asdict(model.dims))
        return ModelDims.from_checkpoint(self.checkpoint)

    @property
    def kv_buckets(self) -> tuple[int, ...]:
        """The KV buckets token generation walks through for this workload's prompts."""
        used = {pick_bucket(self.buckets, n) for p in self.prompts for n in range(len(p.ids) + 1, p.total_length + 1)}
        return tuple(sorted(used))

    @property
    def context_buckets(self) -> tuple[int, ...]:
        return tuple(sorted({context_bucket(self.buckets, len(p.ids)) for p in self.prompts}))

    def layer_shapes(self):
        return self.tp.layer_shapes(self.conf.workload.batch_size, self.context_buckets, self.kv_buckets, self.dtype)

    def check_memory(self) -> None:
        needed = checkpoint_bytes(self.checkpoint) * (2 if self.dtype == torch.float32 else 1)
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        if needed > 0.8 * available:
            raise ConfigError(
                f"model {self.conf.model.name} needs about {needed / 2**30:.0f} GiB of weights; this machine has "
                f"{available / 2**30:.0f} GiB (use model=qwen3_30b_a3b_slice, or run on Trainium)"
            )

    def numerics(self, mpa: bool | None = None, cuts: frozenset[str] = frozenset()) -> CompilerNumerics:
        """The compiled baseline's numerics for `compiler:` (MPA overridable), with cut points inserted."""
        compiler = self.conf.compiler
        return CompilerNumerics(compiler.mpa if mpa is None else mpa, compiler.auto_cast, cuts, self.dtype)

    def compiled_kernels(self, numerics: CompilerNumerics, baseline: bool = False) -> KernelSet:
        """The job's kernel selection (or every kernel baseline) with the compiler's roundings between
        custom calls (kernels.executors.compiled_executor)."""
        platform = self.conf.platform
        if baseline:
            return KernelSet.baseline(platform.executor, platform.target, numerics)
        return KernelSet.from_choices(dataclasses.asdict(self.conf.kernel), dataclasses.asdict(self.conf.kernel_params),
                                      platform.executor, platform.target, numerics)

    def model(self, kernels: KernelSet | None = None) -> Qwen3Moe:
        """The model behind `kernels` (default: the job's selection); weights load once."""
        if self._model is None:
            self.check_memory()
            self._model = Qwen3Moe.from_checkpoint(
                self.checkpoint, self.kernels, self.tp.degree, self.dtype, self.tp.rpl_reduce_dtype
            )
        return self._model.with_kernels(kernels or self.kernels)

    def generate(
        self, model: Qwen3Moe, prompt_ids: tuple[int, ...], max_new_tokens: int, keep_logits: bool = False,
        progress: Progress | None = None, taps: Callable[[Phase, int, str, torch.Tensor], None] | None = None,
    ) -> Generation:
        """Batch-1 generation as the contest runs it (end-of-sequence suppressed, exactly max_new_tokens)."""
        return generate(
            model, [list(prompt_ids)], max_new_tokens, self.buckets, self.sampling, keep_logits,
            suppress=self.tokenizer.eos_token_ids, on_token=progress.advance if progress else None, taps=taps,
        )
