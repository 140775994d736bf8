"""The device side of one job: the device lock and the two builds (the NxDI baseline and the job's kernels),
each compiled once into its keyed directory (cache.py) and loaded once, whichever device stage asks first.

`prepare_inference` follows aws-neuron/nki-moe main.py `prepare_inference`: the neuron config from the
harness's defaults with `blockwise_matmul_config={'use_torch_block_wise': True}`, the inference config from
`load_pretrained_config(model_path)`, `compile(compiled_model_path)` (skipped when the keyed directory is
complete), `load(compiled_model_path)`, and the generation config updated with the harness's sampling
defaults. Prompts are the job's token ids (the real Qwen3 vocabulary, as the harness's tokenizer gives them
for batch 1 without padding), so a checkpoint needs no tokenizer files."""
from __future__ import annotations

import dataclasses
import gc
import logging
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernels.slots import KernelSet
from pipeline.identity import config_hash
from pipeline.platforms.neuron.cache import (BuildDirs, captured_output, compile_key, environment, poisoned_entries,
                                             purge)
from pipeline.platforms.neuron.lock import DeviceLock

log = logging.getLogger(__name__)

BASELINE, CANDIDATE = "baseline", "candidate"
# CONTEST:main.py parse_args defaults that reach the generation config (prepare_inference).
CONTEST_GENERATION = {"do_sample": True, "top_k": 20, "top_p": 0.95, "temperature": 0.6, "pad_token_id": 2,
                      "dynamic": False}


class CompileFailed(RuntimeError):
    """neuronx-cc failed (after the retry a poisoned cache entry earns); the log is in the stage's artifacts."""


@dataclass
class Build:
    role: str
    choices: dict[str, str]
    params: dict[str, dict]
    key: str
    dirs: BuildDirs
    model: Any = None
    generation_config: Any = None
    compile_s: float = 0.0
    cache_hit: bool = False
    attempts: int = 0
    purged: list[str] = field(default_factory=list)


def neuron_config_kwargs(job) -> dict:
    """CONTEST:main.py's neuron config for this job (its parse_args defaults where the job has no say)."""
    conf, neuron = job.conf, job.conf.platform.neuron
    kwargs = {
        "tp_degree": conf.parallel.tp_degree, "batch_size": conf.workload.batch_size, "seq_len": conf.workload.seq_len,
        "max_length": conf.workload.seq_len, "torch_dtype": job.dtype, "enable_bucketing": True,
        "moe_tp_degree": 1, "moe_ep_degree": 1, "cc_pipeline_tiling_factor": 2,
        "logical_nc_config": neuron.logical_nc_config, "blockwise_matmul_config": {"use_torch_block_wise": True},
        **CONTEST_GENERATION,
    }
    if conf.workload.buckets:
        kwargs["context_encoding_buckets"] = kwargs["token_generation_buckets"] = list(job.buckets)
    return kwargs


class NeuronSession:
    def __init__(self, job):
        self.job = job
        neuron = job.conf.platform.neuron
        self.lock = DeviceLock(neuron.lock_file, neuron.lock_timeout_s)
        self.builds: dict[str, Build] = {}

    def plan(self) -> dict[str, Build]:
        """The builds this job needs, baseline first (as the contest compiles them on trn3, so the job's own
        HLOs are the last written); one build when the job's kernels are all baseline."""
        job = self.job
        root = Path(job.conf.platform.neuron.compiled_root)
        wanted = {BASELINE: KernelSet.baseline(), CANDIDATE: job.kernels}
        plan = {}
        for role, kernels in wanted.items():
            choices = kernels.choices()
            params = {l: dataclasses.asdict(s.params) for l, s in kernels.slots.items() if s.variant.name != "baseline"}
            key = compile_key(job.conf, choices, params, list(job.buckets))
            plan[role] = Build(role, choices, params, key, BuildDirs(root / key))
        return plan

    def build(self, role: str) -> Build:
        """The loaded build for `role` (compiling it if its directory is not complete)."""
        if role not in self.builds:
            self.lock.acquire({"host": socket.gethostname(), "config_hash": config_hash(self.job.conf),
                               "output_dir": str(self.job.output_dir)})
            wanted = self.plan()[role]
            twin = next((b for b in self.builds.values() if b.key == wanted.key), None)
            self.builds[role] = twin or self._prepare(wanted)
        return self.builds[role]

    def all_builds(self) -> list[Build]:
        """Baseline, then the job's kernels (deduplicated)."""
        builds = [self.build(BASELINE), self.build(CANDIDATE)]
        return builds[:1] if builds[0] is builds[1] else builds

    def _model_class(self, build: Build) -> type:
        from model.neuron.qwen3_moe_nki import model_class
        from pipeline.stages.export import compiler_settings

        return model_class(build.choices, compiler_settings(self.job.conf), build.params)

    def _environment(self, build: Build):
        """NxDI reads BASE_COMPILE_WORK_DIR when it builds a model's sub-model wrappers (models/model_wrapper.py
        ModelWrapper.__init__) and its builder (application_base.py get_builder); neuronx-cc reads its cache
        location from NEURON_COMPILE_CACHE_URL."""
        return environment({"BASE_COMPILE_WORK_DIR": f"{build.dirs.work}/",
                            "NEURON_COMPILE_CACHE_URL": self.job.conf.platform.neuron.compile_cache})

    def _prepare(self, build: Build) -> Build:
        from neuronx_distributed_inference.utils.hf_adapter import load_pretrained_config
        from transformers import GenerationConfig

        job = self.job
        model_path = str(job.checkpoint)
        model_cls = self._model_class(build)
        build.dirs.root.mkdir(parents=True, exist_ok=True)
        build.cache_hit = build.dirs.complete
        with self._environment(build):
            neuron_config = model_cls.get_neuron_config_cls()(**neuron_config_kwargs(job))
            config = model_cls.get_config_cls()(neuron_config, load_config=load_pretrained_config(model_path))
            model = model_cls(model_path, config)
            if not build.cache_hit:
                self._compile(model, build)
            model.load(build.dirs.traced_path())
        generation_config = (GenerationConfig.from_pretrained(model_path)
                             if (Path(model_path) / "generation_config.json").exists() else GenerationConfig())
        generation_config.update(**CONTEST_GENERATION)
        build.model, build.generation_config = model, generation_config
        return build

    def _compile(self, model, build: Build) -> None:
        neuron = self.job.conf.platform.neuron
        start = time.monotonic()
        for attempt in range(1, neuron.compile_retries + 2):
            build.attempts = attempt
            log.info("compile %s (key %s), attempt %d: log in %s", build.role, build.key, attempt, build.dirs.log)
            error = None
            with captured_output(build.dirs.log):
                try:
                    model.compile(build.dirs.traced_path())
                except Exception as exc:  # the compiler's failure is reported below, with its log
                    error = exc
            if error is None:
                build.compile_s = time.monotonic() - start
                build.dirs.mark_complete()
                return
            poisoned = poisoned_entries(build.dirs.log.read_text(errors="replace"), Path(neuron.compile_cache))
            if not poisoned or attempt > neuron.compile_retries:
                raise CompileFailed(f"{build.role} compile failed ({type(error).__name__}: {error}); "
                                    f"see {build.dirs.log}") from error
            log.warning("poisoned compile cache: purging %s and retrying", ", ".join(map(str, poisoned)))
            purge(poisoned)
            build.purged += [str(p) for p in poisoned]

    def unload(self) -> None:
        """Drop the loaded models so another process (neuron-profile capture) can have the NeuronCores; a later
        stage that needs a build loads it again from its complete directory. [UNCONFIRMED on a device] that
        dropping the last reference releases the cores."""
        self.builds.clear()
        gc.collect()

    def close(self) -> None:
        self.lock.release()
