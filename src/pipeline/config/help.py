"""`python -m pipeline --help`: usage, config groups, every registered kernel variant (from the registry)
and the stages, before the composed config."""
from __future__ import annotations

import dataclasses

import kernels
from kernels.types import Phase

USAGE = """\
pipeline: compile, accuracy, latency, profile and score runs of Qwen3-30B-A3B MoE kernel variants,
tracked in MLflow.

  python -m pipeline                                        # defaults: CPU, tiny model, smoke workload
  python -m pipeline kernel.experts=<variant> parallel.tp_degree=4
  python -m pipeline -m kernel.experts=baseline,<variant> parallel.tp_degree=1,2,4   # a sweep
  python -m pipeline +experiment=contest model=qwen3_30b_a3b_slice
  make ui                                                   # browse and compare runs
"""


def _variant_line(variant: kernels.Variant) -> str:
    kind = "NKI" if variant.nki else "torch"
    phases = "" if variant.phases == frozenset(Phase) else f" [{'/'.join(p.value for p in variant.phases)} only]"
    knobs = [f"{f.name}={f.default}" for f in dataclasses.fields(variant.params)]
    knob_text = f" knobs: {', '.join(knobs)}" if knobs else ""
    test = " (test only)" if variant.test_only else ""
    return f"    {variant.name:<16} {kind:<5}{phases} {variant.summary}{test}{knob_text}"


def kernel_catalogue() -> str:
    lines = ["== Kernel variants (kernel.<layer>=<variant>, knobs: kernel_params.<layer>.<knob>=<value>) =="]
    for layer, variants in kernels.catalogue().items():
        lines.append(f"  {layer}:")
        lines.extend(_variant_line(v) for v in variants)
    return "\n".join(lines)


def help_config() -> dict:
    from pipeline.config.schema import PipelineConf

    stages = next(f.default_factory() for f in dataclasses.fields(PipelineConf) if f.name == "stages")
    template = "\n".join([
        USAGE,
        "== Configuration groups (group=option) ==",
        "$APP_CONFIG_GROUPS",
        "",
        kernel_catalogue(),
        "",
        f"== Stages (stages=[...], run in order) ==\n  default: {', '.join(stages)}\n"
        "  also: cutpoints (after compile: where an NKI custom call may cut the graph, against the compiled\n"
        "        baseline), export (after score: writes the single-file submission qwen_with_nki.py), report\n"
        "        (last: the comparison report of the experiment's job runs so far, as python -m pipeline.report)",
        "",
        "== Config (override anything: key.sub=value) ==",
        "$CONFIG",
    ])
    return {"app_name": "pipeline", "header": "", "footer": "", "template": template.replace("${", "$\\{")}
