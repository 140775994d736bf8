"""Fakes of the Neuron SDK for tests without a device: the names, signatures and behaviour the pipeline relies
on, each mirroring a real module (aws-neuron/neuronx-distributed-inference at release 2.29, paths below
`src/neuronx_distributed_inference/`; torch-neuronx's `torch_neuronx/testing/validation.py` and
`torch_neuronx/pyhlo/hlo_pb2.py`). A "device" here is a deterministic function of the token ids, so the
baseline and any build agree; compile writes what NxDI's builder writes where it writes it (HLO protobufs of
real XLA schema, NEFF files), and can hit a poisoned compile-cache entry as neuronx-cc reports it.

`install(monkeypatch)` puts every fake module into sys.modules (and the NKI CPU interpreter as `nki`)."""
from __future__ import annotations

import base64
import json
import os
import sys
import time
import types
from functools import partial
from importlib.machinery import ModuleSpec
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.evaluation.logit_validation import logit_validation as project_logit_validation
from tests.hlo_schema import hlo_module_class

FAKE_VOCAB = 2048  # logits width of the fake device (any token id is a valid input)
CALLS = {"compile": [], "load": []}  # (class name, path) per call, for tests
POISON_MARKER = "FAILED"  # a cache entry directory holding this file is a cached failed compilation


# ---- models/config.py: NeuronConfig / MoENeuronConfig (kwargs become attributes), InferenceConfig
class MoENeuronConfig:
    def __init__(self, **kwargs):
        self.batch_size = 1
        self.max_new_tokens = None
        self.enable_fused_speculation = False
        self.on_device_sampling_config = None
        self.__dict__.update(kwargs)
        self.max_batch_size = kwargs.get("max_batch_size", self.batch_size)
        self.max_context_length = kwargs.get("max_context_length", self.seq_len)


class InferenceConfig:
    def __init__(self, neuron_config, fused_spec_config=None, load_config=None, metadata=None, **kwargs):
        self.neuron_config = neuron_config
        self.fused_spec_config = fused_spec_config
        if load_config is not None:
            load_config(self)
        self.__dict__.update(kwargs)

    def save(self, path):
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "neuron_config.json").write_text(json.dumps(
            {k: v for k, v in vars(self.neuron_config).items() if isinstance(v, (int, float, str, bool))}))


# ---- utils/hf_adapter.py: load_pretrained_config(model_path) -> load_config(self)
def load_pretrained_config(model_path_or_name=None, hf_config=None):
    values = json.loads((Path(model_path_or_name) / "config.json").read_text())

    def load_config(self):
        self.__dict__.update(values)

    return load_config


# ---- modules/custom_calls.py: CustomRMSNorm
class CustomRMSNorm(nn.Module):
    def __init__(self, hidden_size=None, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.hidden_size = hidden_size
        self.variance_epsilon = eps


def _fake_logits(ids: torch.Tensor) -> torch.Tensor:
    """[1, V] from the sequence so far: a smooth deterministic function with a clear argmax."""
    seed = float(ids[0, -1]) + 7.0 * ids.shape[1]
    return torch.sin(torch.arange(FAKE_VOCAB, dtype=torch.float32) * 1e-3 * (seed % 97 + 1) + seed)[None]


class _SubModel(nn.Module):
    """models/model_wrapper.py ModelWrapper: one compiled sub-model; forward hooks time it (benchmark.py)."""

    def forward(self, ids):
        time.sleep(0.0005)
        return _fake_logits(ids)


# ---- models/qwen3_moe/modeling_qwen3_moe.py (+ model_base.py NeuronBaseModel / NeuronBaseForCausalLM)
class _DecoderLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.input_layernorm = CustomRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = CustomRMSNorm(config.hidden_size, eps=config.rms_norm_eps)


class NeuronQwen3MoeModel(nn.Module):
    def __init__(self, config, optimize_inference=True):
        super().__init__()
        self.config = config
        self.setup_attr_for_model(config)
        self.init_model(config)

    def setup_attr_for_model(self, config):
        self.hidden_size = config.hidden_size

    def init_model(self, config):
        self.layers = nn.ModuleList([_DecoderLayer(config) for _ in range(config.num_hidden_layers)])
        self.norm = CustomRMSNorm(self.hidden_size, eps=config.rms_norm_eps)


class Qwen3MoeInferenceConfig(InferenceConfig):
    @classmethod
    def get_neuron_config_cls(cls):
        return MoENeuronConfig


def _nki_norms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if hasattr(m, "variance_epsilon") and not isinstance(m, CustomRMSNorm)]


def _hlo_bytes(model: nn.Module, tag: str) -> bytes:
    """An HloModuleProto for one sub-model: a dot per decoder layer (hidden x hidden), and one
    AwsNeuronCustomNativeKernel custom call per norm module that is not NxDI's (an NKI kernel was traced),
    named custom-call.<id>, its backend config carrying mac_count and the kernel's name ([UNCONFIRMED] field)."""
    proto = hlo_module_class()()
    computation = proto.computations.add()
    hidden, tokens = model.hidden_size, 128 if tag == "context_encoding_model" else 1

    def parameter(i, dims):
        instruction = computation.instructions.add(id=i, opcode="parameter", name=f"p.{i}")
        instruction.shape.dimensions.extend(dims)

    next_id = 0
    for layer in model.layers:
        parameter(next_id, [tokens, hidden])
        parameter(next_id + 1, [hidden, hidden])
        dot = computation.instructions.add(id=next_id + 2, opcode="dot", operand_ids=[next_id, next_id + 1],
                                           name=f"dot.{next_id + 2}")
        dot.dot_dimension_numbers.lhs_contracting_dimensions.append(1)
        dot.dot_dimension_numbers.rhs_contracting_dimensions.append(0)
        next_id += 3
    for norm in _nki_norms(model):
        kernel = getattr(norm.kernel, "func", norm.kernel).__name__
        config = base64.b64encode(json.dumps({"mac_count": tokens * hidden, "kernel_name": kernel}).encode())
        computation.instructions.add(id=next_id, opcode="custom-call", custom_call_target="AwsNeuronCustomNativeKernel",
                                     backend_config=config, name=f"custom-call.{next_id}")
        next_id += 1
    return proto.SerializeToString()


def _neff_bytes(model: nn.Module, tag: str) -> bytes:
    """A stand-in NEFF: the HLO names of its NKI custom calls (the fake profiler replays them)."""
    names = [i.name for c in hlo_module_class().FromString(_hlo_bytes(model, tag)).computations
             for i in c.instructions if i.opcode == "custom-call"]
    return json.dumps({"tag": tag, "nki_calls": names}).encode()


class NeuronQwen3MoeForCausalLM(nn.Module):
    _model_cls = NeuronQwen3MoeModel

    def __init__(self, model_path, config=None, neuron_config=None):
        super().__init__()
        self.model_path, self.config, self.neuron_config = model_path, config, config.neuron_config
        self.on_device_sampling = self.neuron_config.on_device_sampling_config is not None
        self.context_encoding_model = _SubModel()
        self.token_generation_model = _SubModel()
        self.compile_tag = None
        # model_wrapper.py ModelWrapper.__init__ fixes each sub-model's compiler_workdir when it is built
        self.compiler_workdir = Path(os.environ.get("BASE_COMPILE_WORK_DIR", "/tmp/nxd_model/"))

    @classmethod
    def get_config_cls(cls):
        return Qwen3MoeInferenceConfig

    @classmethod
    def get_neuron_config_cls(cls):
        return MoENeuronConfig

    def get_compiler_args(self):
        return ("--enable-saturate-infinity --enable-mixed-precision-accumulation --model-type transformer -O1"
                " --tensorizer-options='--enable-ccop-compute-overlap --cc-pipeline-tiling-factor=2'"
                " --auto-cast=none --internal-enable-dge-levels vector_dynamic_offsets"
                " --internal-hlo2tensorizer-options='--verify-hlo=true'")

    # application_base.py: compile(compiled_model_path, debug=False, pre_shard_weights_hook=None, dry_run=False, ...)
    def compile(self, compiled_model_path, debug=False, pre_shard_weights_hook=None, dry_run=False,
                disable_fail_fast=False):
        CALLS["compile"].append((type(self).__name__, compiled_model_path))
        cache = Path(os.environ.get("NEURON_COMPILE_CACHE_URL", "/var/tmp/neuron-compile-cache"))
        for failed in sorted(cache.glob(f"*/*/{POISON_MARKER}")):
            neff = failed.parent / "model.neff"
            os.write(1, f"INFO ||NCC_WRAPPER||: Got a cached failed neff at {neff}. Will skip compilation, please "
                        f"set --retry_failed_compilation for recompilation.\n".encode())
            raise RuntimeError("neuronx-cc compilation failed")
        work = self.compiler_workdir
        traced = self._model_cls(self.config)
        os.write(1, f"compiler args: {self.get_compiler_args()}\n".encode())
        for tag in ("context_encoding_model", "token_generation_model"):
            for rank in range(self.neuron_config.tp_degree):
                directory = work / tag / f"_tp{rank}_bk0"
                directory.mkdir(parents=True, exist_ok=True)
                (directory / "model.MODULE_1+2.hlo_module.pb").write_bytes(_hlo_bytes(traced, tag))
                (directory / "model.neff").write_bytes(_neff_bytes(traced, tag))
        self.config.save(compiled_model_path)
        Path(compiled_model_path, "model.pt").write_bytes(b"torchscript")

    def load(self, compiled_model_path, start_rank_id=None, local_ranks_size=None, skip_warmup=False):
        CALLS["load"].append((type(self).__name__, compiled_model_path))
        if not Path(compiled_model_path, "model.pt").exists():
            raise FileNotFoundError(compiled_model_path)

    def reset(self):
        pass


# ---- utils/hf_adapter.py: HuggingFaceGenerationAdapter(model).generate (transformers GenerationMixin.generate)
class HuggingFaceGenerationAdapter:
    def __init__(self, model, input_start_offsets=None, capture_draft_logits=False):
        self.neuron_model = model

    def generate(self, input_ids=None, attention_mask=None, max_new_tokens=None, min_new_tokens=None,
                 do_sample=False, return_dict_in_generate=False, output_scores=False, generation_config=None,
                 **kwargs):
        ids, scores = input_ids, []
        for step in range(max_new_tokens):
            sub = self.neuron_model.context_encoding_model if step == 0 else self.neuron_model.token_generation_model
            logits = sub(ids)
            scores.append(logits)
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
        if return_dict_in_generate:
            return types.SimpleNamespace(sequences=ids, scores=tuple(scores))
        return ids


# ---- utils/benchmark.py
class LatencyCollector:
    def __init__(self):
        self.start = None
        self.latency_list = []

    def pre_hook(self, *args):
        self.start = time.time()

    def hook(self, *args):
        self.latency_list.append(time.time() - self.start)


class Benchmark:
    def __init__(self, benchmark_func, input_param, num_runs=20, preprocess_func=None, post_warmup_func=None):
        self.benchmark_func = partial(benchmark_func, **input_param)
        self.num_runs, self.preprocess_func, self.post_warmup_func = num_runs, preprocess_func, post_warmup_func
        self.latency_list = None

    def run(self):
        if self.preprocess_func:
            self.preprocess_func()
        self.benchmark_func()
        if self.post_warmup_func:
            self.post_warmup_func()
        collector = LatencyCollector()
        for _ in range(self.num_runs):
            collector.pre_hook()
            if self.preprocess_func:
                self.preprocess_func()
            self.benchmark_func()
            collector.hook()
        self.latency_list = collector.latency_list


def create_submodule_latency_collectors(model):
    return {"context_encoding_model": LatencyCollector(), "token_generation_model": LatencyCollector()}


def register_latency_collectors(latency_collectors, model):
    for key, collector in latency_collectors.items():
        getattr(model, key).register_forward_pre_hook(collector.pre_hook)
        getattr(model, key).register_forward_hook(collector.hook)


def generate_report(latency_list, max_length, max_batch_size, n_runs=20):
    if not latency_list:
        return None
    latency = np.array(latency_list)
    report = {f"latency_ms_p{p}": np.percentile(latency, p) * 1000 for p in (50, 90, 95, 99, 100)}
    return {**report, "latency_ms_avg": np.average(latency) * 1000,
            "throughput": (n_runs * max_length * max_batch_size) / np.sum(latency)}


# ---- modules/generation/sampling.py
def prepare_sampling_params(batch_size, top_k=[1], top_p=[1.0], temperature=[1.0]):
    return torch.tensor([[top_k[0], top_p[0], temperature[0]]] * batch_size)


# ---- torch_neuronx/testing/validation.py: logit_validation(...) -> (passed, results, status_msg)
def logit_validation(input_ids, generate_fn, expected_logits, tol_map=None, divergence_difference_tol=None,
                     short_circuit=False, remove_shift=True, padding_side="left", pad_token_id=None,
                     return_summary=False):
    result = project_logit_validation(input_ids, generate_fn, expected_logits, tol_map, divergence_difference_tol,
                                      remove_shift)
    return result.passed, result.positions, result.status()


def _module(name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = ModuleSpec(name, None)
    module.__dict__.update(attributes)
    return module


def install(monkeypatch) -> None:
    """Every fake module in sys.modules (undone by monkeypatch), the NKI interpreter as `nki`."""
    import nki_cpu

    nki_cpu.install()
    here = sys.modules[__name__]
    modules = {
        "neuronx_distributed": {}, "neuronxcc": {}, "torch_neuronx": {}, "torch_neuronx.testing": {},
        "torch_neuronx.testing.validation": {"logit_validation": logit_validation},
        "torch_neuronx.pyhlo": {}, "torch_neuronx.pyhlo.hlo_pb2": {"HloModuleProto": hlo_module_class()},
        "neuronx_distributed_inference": {}, "neuronx_distributed_inference.models": {},
        "neuronx_distributed_inference.models.config": {"MoENeuronConfig": MoENeuronConfig,
                                                         "InferenceConfig": InferenceConfig},
        "neuronx_distributed_inference.models.qwen3_moe": {},
        "neuronx_distributed_inference.models.qwen3_moe.modeling_qwen3_moe": {
            "NeuronQwen3MoeModel": NeuronQwen3MoeModel, "NeuronQwen3MoeForCausalLM": NeuronQwen3MoeForCausalLM,
            "Qwen3MoeInferenceConfig": Qwen3MoeInferenceConfig},
        "neuronx_distributed_inference.modules": {}, "neuronx_distributed_inference.modules.generation": {},
        "neuronx_distributed_inference.modules.generation.sampling": {"prepare_sampling_params": prepare_sampling_params},
        "neuronx_distributed_inference.utils": {},
        "neuronx_distributed_inference.utils.hf_adapter": {
            "HuggingFaceGenerationAdapter": HuggingFaceGenerationAdapter, "load_pretrained_config": load_pretrained_config},
        "neuronx_distributed_inference.utils.benchmark": {
            name: getattr(here, name) for name in ("Benchmark", "LatencyCollector", "create_submodule_latency_collectors",
                                                   "register_latency_collectors", "generate_report")},
    }
    monkeypatch.delitem(sys.modules, "model.neuron.qwen3_moe_nki", raising=False)  # re-import against these fakes
    for name, attributes in modules.items():
        monkeypatch.setitem(sys.modules, name, _module(name, **attributes))
    for name in modules:  # parents expose children as attributes, as real packages do
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, sys.modules[name])
    sys.modules["neuronx_distributed_inference.models.qwen3_moe"].modeling_qwen3_moe = \
        sys.modules["neuronx_distributed_inference.models.qwen3_moe.modeling_qwen3_moe"]
    CALLS["compile"].clear()
    CALLS["load"].clear()


# ---- neuron-profile (aws-neuronx-tools CLI; SDK tools/profiler/neuron-profile-user-guide.rst): `capture -n NEFF
# [--collectives-workers-per-node N] -s NTFF` writes the NTFF (profile_rank_<i>.ntff beside it with N workers);
# `view -n NEFF -s NTFF --output-format summary-json` prints the summary, `--output-format json --output-file F`
# writes every event.
PROFILER = '''#!{python}
import json, sys
from pathlib import Path
args = sys.argv[1:]
value = lambda flag: args[args.index(flag) + 1] if flag in args else None
if args[0] == "capture":
    ntff, workers = Path(value("-s")), value("--collectives-workers-per-node")
    names = [f"profile_rank_{{i}}.ntff" for i in range(int(workers))] if workers else [ntff.name]
    for name in names:
        (ntff.parent / name).write_bytes(b"NTFF" + Path(value("-n")).read_bytes())
elif value("--output-format") == "summary-json":
    print(json.dumps({{"summary": [{{"total_time": 0.0125, "nc_idx": 0, "tensor_engine_active_time_percent": 41.5,
                                     "kernel": "{{}}".format(Path(value("-s")).name)}}]}}))
else:  # each NKI call: two instructions, 1.5 us + 0.5 us starting 2 us apart (span 2.5 us); one dot besides
    calls = json.loads(Path(value("-n")).read_text())["nki_calls"]
    events = [{{"timestamp": 1000, "duration": 900, "hlo_name": "%dot.2 = dot(%p.0, %p.1)", "opcode": "MATMUL"}}]
    for i, name in enumerate(calls):
        start = 10000 * (i + 1)
        events += [{{"timestamp": start, "duration": 1500, "hlo_name": f"%{{name}} = custom-call(%add.1)"}},
                   {{"timestamp": start + 2000, "duration": 500, "hlo_name": f"%{{name}} = custom-call(%add.1)"}}]
    Path(value("--output-file")).write_text(json.dumps({{"summary": [], "instruction": events}}))
'''


def install_profiler(directory: Path, monkeypatch) -> Path:
    """A `neuron-profile` executable on PATH."""
    directory.mkdir(parents=True, exist_ok=True)
    tool = directory / "neuron-profile"
    tool.write_text(PROFILER.format(python=sys.executable))
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ['PATH']}")
    return tool
