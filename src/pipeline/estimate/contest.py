"""The contest's reference numbers (aws-neuron/nki-moe@f742418, Apache-2.0; files beside this module, see
README.md) and when a config is the contest's setup, so its estimate can be scored against them."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from model.dims import ModelDims

if TYPE_CHECKING:  # importing pipeline.config imports the stages, which import this package
    from pipeline.config.schema import PipelineConf


@dataclass(frozen=True)
class BaselineRow:
    """One prompt of prompt_data_<target>.csv: the NxDI baseline measured by the contest on one chip, TP=4."""

    prompt: int
    latency_ms: float  # end-to-end p99
    throughput_tok_s: float


@dataclass(frozen=True)
class MeasuredPerToken:
    """Least-squares fit of the contest baseline's end-to-end time, fixed + t_tok x (new tokens - 1), to
    prompt_data_<target>.csv (hardware-and-model.md §10.3; derived there, not by us)."""

    ms_per_token: float
    fixed_s: float


MEASURED_PER_TOKEN = {"trn2": MeasuredPerToken(19.2, 0.50), "trn3": MeasuredPerToken(26.4, 0.44)}

# Qwen/Qwen3-30B-A3B config.json (hardware-and-model.md §7.1); the layer count is compared separately, since
# a slice is estimated with estimate.layers.
QWEN3_30B_A3B = {"vocab_size": 151936, "hidden_size": 2048, "num_attention_heads": 32, "num_key_value_heads": 4,
                 "head_dim": 128, "num_experts": 128, "num_experts_per_tok": 8, "moe_intermediate_size": 768}
QWEN3_30B_A3B_LAYERS = 48
# CONTEST main.py defaults: TP=4 on one chip at LNC=2, batch 1, seq_len 640 (hardware-and-model.md §9.1, §2).
CONTEST_TP, CONTEST_LNC, CONTEST_BATCH, CONTEST_SEQ_LEN = 4, 2, 1, 640


def _text(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text()


def contest_prompts() -> list[str]:
    """The five public prompts (prompts.txt: separated by blank lines)."""
    return [block.strip("\n") for block in _text("prompts.txt").split("\n\n") if block.strip()]


def baseline_rows(target: str) -> list[BaselineRow]:
    rows = csv.DictReader(io.StringIO(_text(f"prompt_data_{target}.csv")), skipinitialspace=True)
    return [BaselineRow(int(r["Prompt ID"]), float(r["Base latency"]), float(r["Base throughput"])) for r in rows]


@dataclass(frozen=True)
class FirstPlaceRow:
    """One prompt of first_place_trn3_score_records.csv: the contest's first-place entry measured on Trn3."""

    prompt: int
    latency_ms: float
    throughput_tok_s: float
    nki_flop_ratio: float
    score: float


def first_place_rows() -> list[FirstPlaceRow]:
    """The records in file order, which is prompt order (their base latencies are prompt_data_trn3.csv's rows)."""
    rows = csv.DictReader(io.StringIO(_text("first_place_trn3_score_records.csv")))
    return [FirstPlaceRow(i, float(r["latency"]), float(r["throughput"]), float(r["nki_flop_ratio"]),
                          float(r["final_score"])) for i, r in enumerate(rows)]


def is_contest_model(dims: ModelDims, layers: int, tp_degree: int, lnc: int) -> bool:
    """The real Qwen3-30B-A3B (all 48 layers estimated) at the contest's TP and LNC."""
    real = all(getattr(dims, key) == value for key, value in QWEN3_30B_A3B.items())
    return real and layers == QWEN3_30B_A3B_LAYERS and (tp_degree, lnc) == (CONTEST_TP, CONTEST_LNC)


def is_contest_setup(conf: PipelineConf, dims: ModelDims, layers: int) -> bool:
    """The contest's model, parallelism and workload (its five prompts, each generating up to seq_len 640)."""
    w = conf.workload
    workload = (list(w.prompts) == contest_prompts() and w.max_new_tokens is None
                and (w.seq_len, w.batch_size) == (CONTEST_SEQ_LEN, CONTEST_BATCH))
    return workload and is_contest_model(dims, layers, conf.parallel.tp_degree, conf.estimate.lnc)
