"""Device accuracy, as aws-neuron/nki-moe main.py `check_accuracy_logits` runs it, prompt by prompt: the
baseline build (NxDI's model, compiled in this job's keyed directory with the same settings) generates greedily
with `output_scores` through HuggingFaceGenerationAdapter; torch_neuronx's `logit_validation` then drives
the job's build with teacher forcing against those logits, with the config's tolerance map (the contest's by
default) and divergence tolerance. A failed validation (the harness's AssertionError) is a failed prompt."""
from __future__ import annotations

import json
import logging

import torch

from pipeline.platforms.neuron.session import BASELINE, CANDIDATE, Build
from pipeline.stages.accuracy import tol_map
from pipeline.stages.base import StageResult

log = logging.getLogger(__name__)


def _generate(build: Build, input_ids, attention_mask, new_tokens: int):
    from neuronx_distributed_inference.utils.hf_adapter import HuggingFaceGenerationAdapter

    adapter = HuggingFaceGenerationAdapter(build.model)
    with torch.inference_mode():
        outputs = adapter.generate(
            input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=new_tokens,
            min_new_tokens=new_tokens, do_sample=False, return_dict_in_generate=True, output_scores=True,
            generation_config=build.generation_config,
        )
    return torch.stack(outputs.scores)


def validate_prompt(job, baseline: Build, candidate: Build, prompt) -> tuple[bool, str, int]:
    """(passed, status message, tokens checked) for one prompt."""
    from torch_neuronx.testing.validation import logit_validation

    settings = job.conf.accuracy
    input_ids = torch.tensor([list(prompt.ids)])
    attention_mask = torch.ones_like(input_ids)
    candidate.model.config.neuron_config.max_new_tokens = prompt.max_new_tokens
    expected = _generate(baseline, input_ids, attention_mask, prompt.max_new_tokens)
    if settings.num_tokens_to_check is not None:
        expected = expected[: settings.num_tokens_to_check]
    full_mask = torch.cat([attention_mask, torch.ones((1, expected.shape[0]), dtype=attention_mask.dtype)], dim=1)

    def generate_fn(ids):
        length = ids.shape[1]
        return _generate(candidate, ids, full_mask[:, :length], prompt.total_length - length)

    try:
        passed, _, status = logit_validation(
            input_ids=input_ids, generate_fn=generate_fn, expected_logits=expected, tol_map=tol_map(job),
            divergence_difference_tol=settings.divergence_difference_tol,
        )
    except AssertionError as error:  # as the harness's run_accuracy_check treats it
        return False, f"AssertionError: {error}", int(expected.shape[0])
    return bool(passed), str(status), int(expected.shape[0])


def run(job) -> StageResult:
    session = job.platform.session(job)
    baseline, candidate = session.build(BASELINE), session.build(CANDIDATE)
    out = job.stage_dir("accuracy")
    metrics, report = {}, []
    for prompt in job.prompts:
        passed, status, checked = validate_prompt(job, baseline, candidate, prompt)
        metrics[f"p{prompt.index}.passed"] = float(passed)
        report.append({"prompt": prompt.index, "tokens_checked": checked, "passed": passed, "status": status})
        log.info("accuracy prompt %d: %s", prompt.index, "passed" if passed else f"FAILED ({status})")
    (out / "report.json").write_text(json.dumps({"reference": "baseline compiled on the device", "prompts": report},
                                                indent=2))
    all_passed = all(r["passed"] for r in report)
    passed_count = sum(r["passed"] for r in report)
    return StageResult(
        metrics={"passed": float(all_passed), **metrics},
        headline={"passed": float(all_passed)},
        tags={"accuracy.gate": "passed" if all_passed else "failed", "accuracy.reference": "compiled baseline"},
        summary=(f"{'PASSED' if all_passed else 'FAILED'} vs the compiled baseline: "
                 f"{passed_count}/{len(report)} prompts"),
        data={"passed": all_passed, "per_prompt": {r["prompt"]: r["passed"] for r in report}},
    )
