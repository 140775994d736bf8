"""Per-rank shapes and settings the estimate tests share (no checkpoint needed)."""
from __future__ import annotations

import torch

from kernels.types import LayerShapes
from model.dims import ModelDims
from model.parallel import TensorParallel
from pipeline.estimate import EstimateSettings
from pipeline.estimate.contest import QWEN3_30B_A3B
from tests.models import model_dims

BUCKETS = (128, 256, 640)  # NxDI's context and KV buckets at seq_len 640 (hardware-and-model.md §8.4)
TINY = model_dims("qwen3_moe_tiny")
REAL = ModelDims(num_hidden_layers=2, **QWEN3_30B_A3B)


def shapes(dims: ModelDims, tp: int, buckets: tuple[int, ...] = BUCKETS) -> LayerShapes:
    return TensorParallel(dims, tp).layer_shapes(1, buckets, buckets, torch.bfloat16)


def settings(target: str = "trn2", layers: int = 48, **overrides) -> EstimateSettings:
    values = dict(target=target, lnc=2, layers=layers, torch_op_efficiency=0.7, graph_op_ns=1000.0, block_ns=9e4,
                  custom_call_ns=500.0, call_ns=2e6, allreduce_hop_ns=1500.0, host_step_ns=1e6)
    return EstimateSettings(**(values | overrides))
