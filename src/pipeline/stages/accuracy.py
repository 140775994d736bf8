"""The contest's logit validation of the job's kernels against a reference, prompt by prompt (batch 1).

Reference `baseline`: the same model, weights, dtype and TP degree with every kernel `baseline` (eager
torch roundings). Reference `compiled`: that baseline with the Neuron compiler's fusions and roundings
(kernels.numerics, settings under `compiler:`), as the contest compares against the NxDI baseline compiled on
the same chip; the candidate then runs with the same compiler rules between its NKI custom calls. Reference
`transformers`: Hugging Face's Qwen3MoeForCausalLM on the same checkpoint and dtype, an implementation we did
not write.
"""
from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from kernels.slots import KernelSet
from model.qwen3_moe import Qwen3Moe
from pipeline.evaluation.ahead import OneAhead
from pipeline.evaluation.layer_parity import (BlockRecorder, LayerParity, first_divergent, layer_parity, merge,
                                              teacher_forced)
from pipeline.evaluation.layer_parity import as_rows as parity_rows
from pipeline.evaluation.logit_validation import TolMap, ValidationResult, logit_validation, nan_max
from pipeline.job import Job, Prompt
from pipeline.progress import Progress
from pipeline.stages.base import StageResult, register_stage

log = logging.getLogger(__name__)

# (prompt, new tokens, progress, block taps or None) -> (logits [new, 1, V], the tokens fed back [1, new] or None)
ReferenceFn = Callable[[Prompt, int, Progress, BlockRecorder | None], tuple[torch.Tensor, torch.Tensor | None]]


def tol_map(job: Job) -> TolMap:
    return {None if k == "all" else int(k): (float(v[0]), float(v[1])) for k, v in job.conf.accuracy.tol_map.items()}


# The in-house references: the kernel set the reference model runs (also the per-layer parity's reference).
REFERENCE_KERNELS: dict[str, Callable[[Job], KernelSet]] = {
    "baseline": lambda job: job.baseline_kernels,
    "compiled": lambda job: job.compiled_kernels(job.numerics(), baseline=True),
}


def _model_reference(job: Job) -> ReferenceFn:
    model = job.model(REFERENCE_KERNELS[job.conf.accuracy.reference](job))

    def run(prompt: Prompt, new: int, progress: Progress, taps: BlockRecorder | None) -> tuple:
        generation = job.generate(model, prompt.ids, new, keep_logits=True, progress=progress, taps=taps)
        return generation.logits, generation.tokens

    return run


def _transformers_reference(job: Job) -> ReferenceFn:
    from transformers import Qwen3MoeForCausalLM

    hf = Qwen3MoeForCausalLM.from_pretrained(job.checkpoint, dtype=job.dtype, attn_implementation="eager")
    hf.eval()

    def run(prompt: Prompt, new: int, progress: Progress, taps: BlockRecorder | None) -> tuple:
        with torch.inference_mode():
            out = hf.generate(
                torch.tensor([prompt.ids]), max_new_tokens=new, min_new_tokens=new, do_sample=False,
                output_scores=True, return_dict_in_generate=True, eos_token_id=list(job.tokenizer.eos_token_ids),
                pad_token_id=job.tokenizer.eos_token_ids[-1],
            )
        progress.advance(new)
        return torch.stack(out.scores).float(), None

    return run


REFERENCES = {"baseline": _model_reference, "compiled": _model_reference, "transformers": _transformers_reference}


def candidate_kernels(job: Job) -> KernelSet:
    """The job's kernels; against the compiled reference, with the same compiler rules between NKI calls."""
    return job.compiled_kernels(job.numerics()) if job.conf.accuracy.reference == "compiled" else job.kernels


def _write_positions(path, result: ValidationResult) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        keys = list(result.positions[0].errors) if result.positions else []
        writer.writerow(["position", *keys, "diverged", "divergence_gap", "passed", "margin", "margin_drift"])
        for p in result.positions:
            writer.writerow([p.position, *(p.errors[k] for k in keys), p.diverged, p.divergence_gap, p.passed,
                             p.margin, p.margin_drift])


@dataclass
class _Recorded:
    """A generation's block outputs and the tokens it fed back (None: not recorded)."""

    blocks: BlockRecorder
    tokens: torch.Tensor | None = None


def _layer_parity(job: Job, candidate: Qwen3Moe, reference: Qwen3Moe, prompt: Prompt, expected: torch.Tensor,
                  recorded: dict[str, _Recorded]) -> list[LayerParity]:
    """Teacher-forced per-layer parity of the candidate against the in-house reference model on one prompt. A
    generation that fed back exactly the reference's greedy tokens (the reference's own, and the candidate's
    first gate call unless it diverged) already ran the teacher-forced calls: its recorded outputs are used."""
    forced = expected.argmax(dim=-1)[:, 0].tolist()

    def outputs(model: Qwen3Moe, run: _Recorded):
        fed = None if run.tokens is None else run.tokens[0].tolist()
        return teacher_forced(model, run.blocks, fed, list(prompt.ids), forced, list(job.buckets))

    return layer_parity(outputs(candidate, recorded["candidate"]), outputs(reference, recorded["reference"]),
                        candidate.kernels)


def _log_parity(out_dir: Path, records: list[LayerParity], metrics: dict) -> tuple[dict, str]:
    """layer_parity.json (every phase, layer and block), the worst layer per phase as metrics (a metric per layer
    would be 2 x 48 x 2 columns on the real model), and where each phase first diverges."""
    (out_dir / "layer_parity.json").write_text(json.dumps(parity_rows(records), indent=2))
    for phase in sorted({r.phase for r in records}):
        mine = [r for r in records if r.phase == phase]
        metrics[f"parity.{phase}.max_mismatch_pct"] = max(r.mismatch_pct for r in mine)
        metrics[f"parity.{phase}.max_divergence"] = max(r.max_divergence for r in mine)
    first = {phase: f"layer {r.layer} {r.block} ({r.kernels})" for phase, r in first_divergent(records).items()}
    where = "; first divergence: " + ", ".join(f"{p} {v}" for p, v in first.items()) if first else "; every layer exact"
    return {f"accuracy.first_divergence.{phase}": v for phase, v in first.items()}, where


@register_stage("accuracy")
class AccuracyStage:
    def run(self, job: Job) -> StageResult:
        settings = job.conf.accuracy
        out_dir = job.stage_dir(self.name)
        limit = settings.num_tokens_to_check
        checks = [(p, min(p.max_new_tokens, limit or p.max_new_tokens)) for p in job.prompts]
        reference = REFERENCES[settings.reference](job)  # loads (first use: creates) the checkpoint
        candidate = job.model(candidate_kernels(job))
        parity = settings.layer_parity and settings.reference in REFERENCE_KERNELS
        parity_reference = job.model(REFERENCE_KERNELS[settings.reference](job)) if parity else None
        # Started after loading so the ETA counts only generation: the reference's tokens, then the candidate's
        # (a candidate that diverges is regenerated from the divergence, which can go past 100%).
        progress = Progress("accuracy", 2 * sum(n for _, n in checks))
        metrics, report, all_passed, parities = {}, [], True, []

        def reference_run(check: tuple[Prompt, int]) -> tuple[torch.Tensor, _Recorded]:
            prompt, new = check
            run = _Recorded(BlockRecorder(len(prompt.ids)))
            expected, run.tokens = reference(prompt, new, progress, run.blocks if parity else None)
            return expected, run

        # The references run on a second thread, at most one prompt ahead of the candidate, which meanwhile makes the
        # gate's first generation of its prompt (the full generation from the prompt, recording its block outputs).
        with OneAhead(reference_run, checks) as references:
            for prompt, new in checks:
                candidate_recorded = _Recorded(BlockRecorder(len(prompt.ids)))
                first = job.generate(candidate, prompt.ids, new, keep_logits=True, progress=progress,
                                     taps=candidate_recorded.blocks if parity else None)
                candidate_recorded.tokens = first.tokens if parity else None
                expected, reference_recorded = next(references)

                def generate_fn(ids: torch.Tensor, prompt: Prompt = prompt, new: int = new,
                                first: torch.Tensor = first.logits) -> torch.Tensor:
                    """The gate's generations: the first was made above; later ones continue after a divergence."""
                    if ids.shape[1] == len(prompt.ids):
                        return first
                    generation = job.generate(candidate, tuple(ids[0].tolist()), new - (ids.shape[1] - len(prompt.ids)),
                                              keep_logits=True, progress=progress)
                    return generation.logits

                result = logit_validation(
                    torch.tensor([prompt.ids]), generate_fn, expected, tol_map(job), settings.divergence_difference_tol
                )
                if parity:
                    recorded = {"reference": reference_recorded, "candidate": candidate_recorded}
                    parities.append(_layer_parity(job, candidate, parity_reference, prompt, expected, recorded))
                _write_positions(out_dir / f"prompt{prompt.index}_positions.csv", result)
                all_passed &= result.passed
                metrics[f"p{prompt.index}.passed"] = float(result.passed)
                metrics[f"p{prompt.index}.divergences"] = len(result.divergences)
                metrics.update({f"p{prompt.index}.max_err_{k}": v for k, v in result.max_errors.items()})
                metrics[f"p{prompt.index}.min_margin"] = result.min_margin
                metrics[f"p{prompt.index}.max_margin_drift"] = result.max_margin_drift
                report.append({"prompt": prompt.index, "tokens_checked": new, "status": result.status(),
                               "divergences": result.divergences, "max_errors": result.max_errors,
                               "generate_calls": result.generate_calls})
                log.info("accuracy prompt %d: %s", prompt.index, result.status())
        (out_dir / "report.json").write_text(json.dumps({"reference": settings.reference, "prompts": report}, indent=2))
        passed = sum(r["status"].startswith("passed") for r in report)
        worst = nan_max(m for k, m in metrics.items() if "max_err_top_all" in k) if report else 0.0
        margin = min((m for k, m in metrics.items() if k.endswith(".min_margin")), default=math.inf)
        drift = max((m for k, m in metrics.items() if k.endswith(".max_margin_drift")), default=0.0)
        tags, where = {}, ""
        if parity:
            tags, where = _log_parity(out_dir, merge(parities), metrics)
        return StageResult(
            metrics={"passed": float(all_passed), **metrics},
            headline={"passed": float(all_passed), "max_err_top_all": worst, "min_margin": margin,
                      "max_margin_drift": drift},
            tags={"accuracy.gate": "passed" if all_passed else "failed", "accuracy.reference": settings.reference,
                  **tags},
            summary=(f"{'PASSED' if all_passed else 'FAILED'} vs {settings.reference}: {passed}/{len(report)} prompts"
                     f"; top-1 margin >= {margin:.3g}, drift <= {drift:.3g}{where}"),
            data={"passed": all_passed, "per_prompt": {r["prompt"]: r["status"].startswith("passed") for r in report}},
        )
