"""Fakes of the Neuron SDK for tests without a device: the names, signatures and behaviour the pipeline relies
on, each mirroring a real module (aws-neuron/neuronx-distributed-inference at release 2.29, paths below
`src/neuronx_distributed_inference/`; torch-neuronx's `torch_neuronx/testing/validation.py` and
`torch_neuronx/pyhlo/hlo_pb2.py`). A "device" here is a deterministic function of the token ids, so the
baseline and any build agree; compile writes what NxDI's builder writes where it writes it (HLO protobufs of
real XLA schema, NEFF files), and can hit a poisoned compile-cache entry as neuronx-cc reports it.

NxDI's attention and KV-cache manager: tests/nxdi_attention_fake.py.

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
import torch.nn.functional as F
from torch import nn

from pipeline.evaluation.logit_validation import logit_validation as project_logit_validation
from tests import nxdi_attention_fake as attention
from tests.hlo_schema import hlo_module_class
from tests.nxdi_attention_fake import CustomRMSNorm, NeuronQwen3MoEAttention

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
        self.torch_dtype = torch.bfloat16
        self.is_prefill_stage = None  # set per sub-model by NxDI's model wrappers
        self.qkv_kernel_enabled = False
        self.sequence_parallel_enabled = False
        self.normalize_top_k_affinities = True  # Qwen3MoeInferenceConfig.__init__ sets it
        self.fused_qkv = False
        self.attn_block_tkg_nki_kernel_enabled = False
        self.k_cache_transposed = False
        self.flash_decoding_enabled = False
        self.is_prefix_caching = False
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


# ---- models/layer_boundary_marker.py: ModuleMarkerStartWrapper / ModuleMarkerEndWrapper (compiler hints; identity
# on the values)
class ModuleMarkerStartWrapper(nn.Module):
    def forward(self, *args):
        return args[0] if len(args) == 1 else args


class ModuleMarkerEndWrapper(ModuleMarkerStartWrapper):
    pass


# ---- neuronx_distributed modules/moe: RouterTopK (routing.py), Experts (experts.py), ExpertMLPsV2
# (expert_mlps_v2.py), MoE (model.py), built as modules/moe_v2.py initialize_moe_module builds them for Qwen3-MoE
# (fp32 router, softmax, normalize_top_k_affinities), for one rank without sequence or expert parallelism.
class RouterTopK(nn.Module):
    def __init__(self, num_experts, top_k, hidden_size, dtype=torch.float32):
        super().__init__()
        self.num_experts, self.top_k = num_experts, top_k
        self.linear_router = nn.Linear(hidden_size, num_experts, dtype=dtype, bias=False)

    def forward(self, hidden_states):
        router_logits = self.linear_router(hidden_states.to(self.linear_router.weight.dtype)).view(-1, self.num_experts)
        expert_affinities = torch.softmax(router_logits, dim=1, dtype=torch.float64)  # RouterBase.apply_activation_fn
        _, expert_index = torch.topk(router_logits, self.top_k)
        return router_logits, expert_affinities.to(dtype=hidden_states.dtype), expert_index.detach().to(torch.long)


class _ExpertWeight(nn.Module):
    """ExpertFusedColumnParallelLinear / ExpertFusedRowParallelLinear (moe_parallel_layers.py): one rank's
    [E, in, out] weight."""

    def __init__(self, shape, dtype):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(shape, dtype=dtype), requires_grad=False)


class Experts(nn.Module):
    """experts.py Experts (glu_mlp, SiLU): forward(hidden_states [E', C, H], expert_indices) -> [E', C, H]."""

    def __init__(self, num_experts, hidden_size, intermediate_per_rank, dtype):
        super().__init__()
        self.num_experts = num_experts
        self.gate_up_proj = _ExpertWeight((num_experts, hidden_size, 2 * intermediate_per_rank), dtype)
        self.down_proj = _ExpertWeight((num_experts, intermediate_per_rank, hidden_size), dtype)

    def forward(self, hidden_states, expert_indices=None):
        chosen = slice(None) if expert_indices is None else expert_indices
        intermediate = torch.matmul(hidden_states, self.gate_up_proj.weight[chosen])
        gate, up = torch.chunk(intermediate, chunks=2, dim=-1)
        return torch.matmul(F.silu(gate) * up, self.down_proj.weight[chosen])


class _ProcessGroup:
    def size(self):
        return 1


class ExpertMLPsV2(nn.Module):
    """expert_mlps_v2.py ExpertMLPsV2 in inference: token generation (seq_len == 1) below the selective-loading
    threshold runs forward_selective_loading, everything else forward_all_experts (NxD's context encoding picks
    blockwise for large token counts; the fake keeps the all-experts formula, the same module contract)."""

    def __init__(self, config, dtype):
        super().__init__()
        neuron_config = config.neuron_config
        self.routed_experts_mlp_config = types.SimpleNamespace(
            num_experts=config.num_experts, top_k=config.num_experts_per_tok,
            normalize_top_k_affinities=neuron_config.normalize_top_k_affinities,
            early_expert_affinity_modulation=False)
        self.moe_expert_model_parallel_group = _ProcessGroup()
        self.mlp_op = Experts(config.num_experts, config.hidden_size,
                              config.moe_intermediate_size // neuron_config.tp_degree, dtype)

    def get_mlp_op(self):
        return self.mlp_op

    def forward_selective_loading(self, hidden_states, expert_affinities, expert_index):
        tokens = hidden_states.shape[0]
        chosen = expert_affinities[torch.arange(tokens).unsqueeze(1), expert_index]
        if self.routed_experts_mlp_config.normalize_top_k_affinities:
            chosen = F.normalize(chosen, p=1.0, dim=1)
        rows = [torch.sum(self.mlp_op(hidden_states[t].unsqueeze(0).unsqueeze(1), expert_indices=expert_index[t])
                          .squeeze(1) * chosen[t].unsqueeze(1), dim=0) for t in range(tokens)]
        return torch.stack(rows, dim=0)

    def forward_all_experts(self, hidden_states, expert_affinities, expert_index):
        expert_mask = torch.zeros_like(expert_affinities).scatter(1, expert_index, 1)  # get_expert_mask
        masked = expert_affinities.masked_fill(torch.eq(expert_mask, 0), 0)  # get_expert_affinities_masked
        if self.routed_experts_mlp_config.normalize_top_k_affinities:
            masked = F.normalize(masked, p=1.0, dim=1)
        mlp_output = self.mlp_op(hidden_states.unsqueeze(0))
        output = torch.zeros(hidden_states.shape, dtype=hidden_states.dtype)
        for e in range(self.routed_experts_mlp_config.num_experts):
            output += mlp_output[e] * masked[:, e].unsqueeze(1)
        return output

    def forward(self, hidden_states, expert_affinities, expert_index, seq_len, padding_mask=None,
                expert_affinities_masked_full=None):
        config = self.routed_experts_mlp_config
        if seq_len == 1 and hidden_states.shape[0] * config.top_k / config.num_experts < 1.0:
            return self.forward_selective_loading(hidden_states, expert_affinities, expert_index)
        return self.forward_all_experts(hidden_states, expert_affinities, expert_index)


class MoE(nn.Module):
    """model.py MoE: forward -> _forward_compute_bound (router on the full hidden states, expert MLPs on [T, H],
    then the delayed all-reduce, the identity on one rank); moe_fused_tkg only with init_tkg_module."""

    def __init__(self, config, init_tkg_module=False):
        super().__init__()
        dtype = config.neuron_config.torch_dtype
        self.router = RouterTopK(config.num_experts, config.num_experts_per_tok, config.hidden_size)
        self.expert_mlps = ExpertMLPsV2(config, dtype)
        self.moe_fused_tkg = nn.Module() if init_tkg_module else None  # moe_fused_tkg.py MoEFusedTKG (not run here)
        self.return_router_logits = False
        self.sequence_dimension = 1

    def forward(self, hidden_states, padding_mask=None, is_speculative_decoding=False, residual=None):
        seq_len = hidden_states.shape[self.sequence_dimension]
        _, expert_affinities, expert_index = self.router(hidden_states)
        output = self.expert_mlps(hidden_states.reshape(-1, hidden_states.shape[-1]), expert_affinities,
                                  expert_index, seq_len=seq_len, padding_mask=padding_mask)
        return (output.view(hidden_states.shape),)


def tiny_config(hidden=256, layers=2, experts=32, top_k=8, intermediate=256, tp_degree=1):
    """An InferenceConfig as Qwen3MoeInferenceConfig.__init__ leaves it (num_experts_per_tok, moe_intermediate_size,
    normalize_top_k_affinities), at the tiny model's per-rank shapes (tests/kernels/shapes.py TINY)."""
    neuron_config = MoENeuronConfig(tp_degree=tp_degree, seq_len=64)
    return types.SimpleNamespace(neuron_config=neuron_config, hidden_size=hidden, num_hidden_layers=layers,
                                 rms_norm_eps=1e-6, num_experts=experts, num_experts_per_tok=top_k,
                                 moe_intermediate_size=intermediate, num_attention_heads=8, num_key_value_heads=4,
                                 head_dim=32, rope_theta=1e6, max_position_embeddings=4096)


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
class NeuronQwen3MoeDecoderLayer(nn.Module):
    def __init__(self, config, layer_idx=0):
        super().__init__()
        self.self_attn = NeuronQwen3MoEAttention(config=config)
        self.moe_fused_nki_kernel_enabled = getattr(config, "moe_fused_nki_kernel_enabled", False)
        self.input_layernorm = CustomRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = CustomRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.mlp = MoE(config, init_tkg_module=self.moe_fused_nki_kernel_enabled).eval()  # initialize_moe_module
        self.qkv_kernel_enabled = config.neuron_config.qkv_kernel_enabled
        self.qkv_kernel_fused_rmsnorm = not config.neuron_config.sequence_parallel_enabled
        self.config = config

    def forward(self, hidden_states, attention_mask=None, position_ids=None, past_key_value=None,
                padding_mask=None, **kwargs):
        residual = hidden_states
        qkv_fused_rmsnorm = None
        hidden_states = ModuleMarkerStartWrapper()(hidden_states)
        if self.input_layernorm:
            if self.qkv_kernel_enabled and self.qkv_kernel_fused_rmsnorm:
                qkv_fused_rmsnorm = self.input_layernorm
            else:
                hidden_states = self.input_layernorm(hidden_states)
        hidden_states, present_key_value, cos_cache, sin_cache = self.self_attn(
            hidden_states=hidden_states, attention_mask=attention_mask, position_ids=position_ids,
            past_key_value=past_key_value, rmsnorm=qkv_fused_rmsnorm, **kwargs)
        hidden_states = residual + hidden_states
        residual = hidden_states
        if not self.moe_fused_nki_kernel_enabled:
            hidden_states = self.post_attention_layernorm(hidden_states)
        is_speculative_decoding = (self.config.neuron_config.enable_fused_speculation
                                   and not self.config.neuron_config.is_prefill_stage)
        hidden_states = self.mlp(hidden_states, padding_mask, is_speculative_decoding=is_speculative_decoding)[0]
        hidden_states = residual + hidden_states
        hidden_states = ModuleMarkerEndWrapper()(hidden_states)
        return (hidden_states, present_key_value, cos_cache, sin_cache, None)


class NeuronQwen3MoeModel(nn.Module):
    def __init__(self, config, optimize_inference=True):
        super().__init__()
        self.config = config
        self.setup_attr_for_model(config)
        self.init_model(config)

    def setup_attr_for_model(self, config):
        self.hidden_size = config.hidden_size

    def init_model(self, config):
        self.layers = nn.ModuleList([NeuronQwen3MoeDecoderLayer(config, i) for i in range(config.num_hidden_layers)])
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
        "neuronx_distributed_inference.models.layer_boundary_marker": {
            "ModuleMarkerStartWrapper": ModuleMarkerStartWrapper, "ModuleMarkerEndWrapper": ModuleMarkerEndWrapper},
        "neuronx_distributed_inference.models.qwen3_moe": {},
        "neuronx_distributed_inference.models.qwen3_moe.modeling_qwen3_moe": {
            "NeuronQwen3MoeModel": NeuronQwen3MoeModel, "NeuronQwen3MoeForCausalLM": NeuronQwen3MoeForCausalLM,
            "NeuronQwen3MoeDecoderLayer": NeuronQwen3MoeDecoderLayer, "NeuronQwen3MoEAttention": NeuronQwen3MoEAttention,
            "Qwen3MoeInferenceConfig": Qwen3MoeInferenceConfig},
        "neuronx_distributed.modules": {}, "neuronx_distributed.modules.moe": {},
        "neuronx_distributed.modules.moe.routing": {"RouterTopK": RouterTopK},
        "neuronx_distributed.modules.moe.experts": {"Experts": Experts},
        "neuronx_distributed.modules.moe.expert_mlps_v2": {"ExpertMLPsV2": ExpertMLPsV2},
        "neuronx_distributed.modules.moe.model": {"MoE": MoE},
        "neuronx_distributed.parallel_layers": {}, "neuronx_distributed.parallel_layers.mappings": {
            "reduce_from_tensor_model_parallel_region": attention.reduce_from_tensor_model_parallel_region},
        "neuronx_distributed_inference.modules": {}, "neuronx_distributed_inference.modules.attention": {},
        "neuronx_distributed_inference.modules.attention.attention_base": {
            "NeuronAttentionBase": attention.NeuronAttentionBase,
            "NeuronAttentionBaseOutput": attention.NeuronAttentionBaseOutput},
        "neuronx_distributed_inference.modules.attention.utils": {"RotaryEmbedding": attention.RotaryEmbedding},
        "neuronx_distributed_inference.modules.kvcache": {},
        "neuronx_distributed_inference.modules.kvcache.kv_cache_manager": {"KVCacheManager": attention.KVCacheManager},
        "neuronx_distributed_inference.modules.generation": {},
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
