"""What the console shows while a job runs: no stray library lines, ETAs that count only the work."""
import logging
import re
import subprocess
import sys

from pipeline.config.validate import to_pipeline_conf
from pipeline import progress as progress_module
from pipeline.job import Job
from pipeline.stages import STAGES
from tests.conftest import PROJECT, compose_config

PROFILE_SOMETHING = """
import torch
from pipeline.stages.profile import cpu_profiler
with cpu_profiler():
    torch.ones(8) @ torch.ones(8)
print("profiled")
"""


def test_the_profiler_prints_no_usdt_lines():
    result = subprocess.run([sys.executable, "-c", PROFILE_SOMETHING], cwd=PROJECT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "profiled" in result.stdout, result.stderr[-2000:]
    assert "USDT" not in result.stderr and "profiler_start" not in result.stderr


def test_the_first_eta_does_not_count_model_loading(tmp_path, monkeypatch, caplog):
    """Loading (and on first use creating) the checkpoint is made to take 1000 s on the progress clock."""
    load_s, offset = 1000.0, [0.0]
    real_model, real_clock = Job.model, progress_module.time.monotonic

    def slow_model(self, kernels=None):
        offset[0] += load_s
        return real_model(self, kernels)

    monkeypatch.setattr(Job, "model", slow_model)
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: real_clock() + offset[0])
    job = Job(to_pipeline_conf(compose_config(["workload.max_new_tokens=2"], tmp_path)), tmp_path)
    with caplog.at_level(logging.INFO, logger="pipeline.progress"):
        STAGES["accuracy"].run(job)
    elapsed = [float(m.group(1)) for r in caplog.records if (m := re.search(r", (\d+) s elapsed", r.getMessage()))]
    assert elapsed and max(elapsed) < load_s, caplog.text
