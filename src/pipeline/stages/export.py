"""The submission: one self-contained `qwen_with_nki.py` (model.neuron.bundle) with this config's kernel
choices, their params and the compiler settings baked in, written to the job's folder and MLflow. Runs on
any platform: it writes a file, it does not need the device."""
from __future__ import annotations

import dataclasses
import datetime

from model.neuron.bundle import bundled_modules, render
from model.neuron.slots import unwired
from pipeline.config.schema import PipelineConf
from pipeline.identity import config_hash, kernel_set_label
from pipeline.job import Job
from pipeline.stages.base import StageResult, register_stage

FILE_NAME = "qwen_with_nki.py"


def compiler_settings(conf: PipelineConf) -> dict:
    """The config's numerics-relevant compiler flags (`compiler.*`), for the submission and the baseline alike."""
    return {"auto_cast": conf.compiler.auto_cast, "mixed_precision_accumulation": conf.compiler.mpa}


@register_stage("export")
class ExportStage:
    def run(self, job: Job) -> StageResult:
        problems = unwired(job.kernels.choices())
        if problems:
            raise RuntimeError("; ".join(problems))
        choices = job.kernels.choices()
        params = {layer: dataclasses.asdict(slot.params) for layer, slot in job.kernels.slots.items()
                  if slot.variant.name != "baseline"}
        provenance = {"config_hash": config_hash(job.conf), "kernels": kernel_set_label(job.conf),
                      "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        text = render(choices, params, compiler_settings(job.conf), provenance)
        compile(text, FILE_NAME, "exec")  # a syntax error here is ours, not the contest's
        path = job.stage_dir(self.name) / FILE_NAME
        path.write_text(text)
        modules = bundled_modules(text)
        nki = sorted(f"{k}={v}" for k, v in choices.items() if v != "baseline")
        return StageResult(
            metrics={"bytes": len(text.encode()), "embedded_modules": len(modules)},
            tags={"export.file": FILE_NAME},
            summary=f"{FILE_NAME} ({len(text.encode())} bytes): NKI {', '.join(nki) or 'none (baseline)'}; "
                    f"embeds {len(modules)} module(s)",
            data={"path": str(path), "modules": modules},
        )
