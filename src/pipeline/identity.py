"""Stable identities of a resolved config: its hash (de-duplication, caching) and the key a baseline run
must share with a job to be its score reference (same model, workload, parallelism and measurement)."""
from __future__ import annotations

import dataclasses
import hashlib
import json

from pipeline.config.schema import PipelineConf

NOT_RESULT_AFFECTING = ("tracking", "paths", "stages", "force")


def digest(value: object) -> str:
    """16 hex digits of a JSON-able value's SHA-256 (keys sorted)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def config_hash(conf: PipelineConf) -> str:
    values = dataclasses.asdict(conf)
    return digest({k: v for k, v in values.items() if k not in NOT_RESULT_AFFECTING})


def run_key(conf: PipelineConf, code_version: str) -> str:
    """What a job produces: its result-affecting config, the stages it runs and the code that runs them. A
    FINISHED run with the same key makes the job a repeat (`runner.run_job` skips it unless `force`)."""
    return digest({"config": config_hash(conf), "stages": conf.stages, "code": code_version})


def workload_key(conf: PipelineConf) -> str:
    values = dataclasses.asdict(conf)
    return digest({k: values[k] for k in ("model", "workload", "parallel", "platform", "latency")})


def all_baseline(conf: PipelineConf) -> bool:
    return all(v == "baseline" for v in dataclasses.asdict(conf.kernel).values())


def kernel_set_label(conf: PipelineConf) -> str:
    return ",".join(f"{k}={v}" for k, v in dataclasses.asdict(conf.kernel).items())
