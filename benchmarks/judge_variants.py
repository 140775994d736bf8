"""Judge NKI variants against the compiled baseline (accuracy.reference=compiled), MPA on and off, per TP degree:
the contest gate's verdict and the per-layer parity (the largest mismatch of a block the variant runs in).

    PYTHONPATH=src python benchmarks/judge_variants.py --model qwen3_moe_tiny --tp 1 2 4 --out judge.json
    PYTHONPATH=src python benchmarks/judge_variants.py --model qwen3_30b_a3b_slice --tp 4 \
        --variants experts=grouped_v2 experts=grouped_v2:fp32_swiglu=true

As the accuracy stage with accuracy.reference=compiled, in process and without MLflow: the weights load once per
TP degree (stored as the baseline prefers), the reference generates once per TP degree and MPA setting, and
every variant is a kernel set over the same weights. Use platform.executor=reference (--extra) for speed: each
NKI variant then runs its torch reference, the kernel's rounding schedule with bf16 at its boundaries.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from pipeline.config.compose import compose_config
from pipeline.config.validate import to_pipeline_conf
from kernels.slots import KernelSet
from pipeline.evaluation.layer_parity import BlockRecorder, first_divergent, layer_parity, merge, teacher_forced
from pipeline.evaluation.logit_validation import logit_validation
from pipeline.job import Job
from pipeline.stages.accuracy import tol_map

VARIANTS = ["norm=nki_rmsnorm", "norm=nki_add_rmsnorm", "router=nki_topk", "experts=selective_v1",
            "experts=grouped_v2", "attention=nki_decode"]


def parse(spec: str) -> tuple[str, str, dict]:
    """`layer=variant[:knob=value,...]` -> (layer, variant, knobs); values are YAML scalars."""
    choice, _, knobs = spec.partition(":")
    layer, name = choice.split("=")
    return layer, name, {k: yaml.safe_load(v) for k, v in (kv.split("=") for kv in knobs.split(",") if kv)}


def make_job(overrides: list[str], out: Path) -> Job:
    return Job(to_pipeline_conf(compose_config(overrides, out, job_name="judge")), out)


def verdicts(job: Job, mpa: bool, specs: list[str]) -> list[dict]:
    """Every variant of `specs` against one compiled reference (generated once): the contest gate prompt by
    prompt, and the teacher-forced per-layer parity of the blocks its NKI calls run in."""
    numerics = job.numerics(mpa)
    reference = job.model(job.compiled_kernels(numerics, baseline=True))
    expected, forced_reference = {}, {}
    for prompt in job.prompts:
        recorder = BlockRecorder(len(prompt.ids))
        generation = job.generate(reference, prompt.ids, prompt.max_new_tokens, keep_logits=True, taps=recorder)
        expected[prompt.index] = generation.logits
        tokens = expected[prompt.index].argmax(dim=-1)[:, 0].tolist()
        forced_reference[prompt.index] = teacher_forced(reference, recorder, generation.tokens[0].tolist(),
                                                        list(prompt.ids), tokens, list(job.buckets))
    rows = []
    for spec in specs:
        layer, name, knobs = parse(spec)
        kernels = KernelSet.from_choices({layer: name}, {layer: knobs}, job.conf.platform.executor,
                                         job.conf.platform.target, numerics)
        candidate = job.model(kernels)
        start, passed, records, margins, drifts = time.perf_counter(), True, [], [], []
        for prompt in job.prompts:
            recorder, fed = BlockRecorder(len(prompt.ids)), []

            def generate_fn(ids: torch.Tensor, prompt=prompt, recorder=recorder, fed=fed) -> torch.Tensor:
                remaining = prompt.max_new_tokens - (ids.shape[1] - len(prompt.ids))
                generation = job.generate(candidate, tuple(ids[0].tolist()), remaining, keep_logits=True,
                                          taps=None if fed else recorder)
                fed.append(generation.tokens[0].tolist())
                return generation.logits

            result = logit_validation(torch.tensor([prompt.ids]), generate_fn, expected[prompt.index],
                                      tol_map(job), job.conf.accuracy.divergence_difference_tol)
            passed &= result.passed
            margins.append(result.min_margin)
            drifts.append(result.max_margin_drift)
            tokens = expected[prompt.index].argmax(dim=-1)[:, 0].tolist()
            records.append(layer_parity(teacher_forced(candidate, recorder, fed[0], list(prompt.ids), tokens,
                                                       list(job.buckets)), forced_reference[prompt.index], kernels))
        merged = merge(records)
        own = [r for r in merged if r.custom_call]  # the blocks the variant runs in
        rows.append({"model": job.conf.model.name, "tp": job.tp.degree, "variant": spec, "mpa": mpa, "passed": passed, "seconds": round(time.perf_counter() - start, 1),
                     "own_block_max_mismatch_pct": max((r.mismatch_pct for r in own), default=0.0),
                     "own_block_max_divergence": max((r.max_divergence for r in own), default=0.0),
                     "min_margin": min(margins), "max_margin_drift": max(drifts),
                     "first_divergence": {p: f"layer {r.layer} {r.block} ({r.kernels})"
                                          for p, r in first_divergent(merged).items()}})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen3_moe_tiny")
    parser.add_argument("--tp", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--mpa", nargs="+", default=["on", "off"], choices=["on", "off"])
    parser.add_argument("--variants", nargs="+", default=VARIANTS)
    parser.add_argument("--extra", nargs="*", default=[], help="more Hydra overrides for every job")
    parser.add_argument("--out", type=Path, default=Path("judge_variants.json"))
    args = parser.parse_args(argv)
    rows = []
    for tp in args.tp:
        with tempfile.TemporaryDirectory() as tmp:
            job = make_job([f"model={args.model}", f"parallel.tp_degree={tp}", *args.extra], Path(tmp))
            for mpa in args.mpa:
                rows += verdicts(job, mpa == "on", args.variants)
                args.out.write_text(json.dumps(rows, indent=1))
    print("| model | TP | variant | MPA | gate | worst mismatch % of its blocks | max divergence | smallest top-1 "
          "margin | largest margin drift | first divergence |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        first = "; ".join(f"{k}: {v}" for k, v in r["first_divergence"].items()) or "none"
        print(f"| {r['model']} | {r['tp']} | {r['variant']} | {'on' if r['mpa'] else 'off'} | "
              f"{'pass' if r['passed'] else 'FAIL'} | {r['own_block_max_mismatch_pct']:.1f} | "
              f"{r['own_block_max_divergence']:.3g} | {r['min_margin']:.3g} | {r['max_margin_drift']:.3g} | {first} |")


if __name__ == "__main__":
    main(sys.argv[1:])
