"""The accuracy gate against references: TP degrees agree in bf16, and a slightly wrong kernel fails."""
import pytest
import torch

from kernels.slots import KernelSet
from model.generation import generate
from model.qwen3_moe import Qwen3Moe
from pipeline.evaluation.logit_validation import logit_validation
from tests.models import checkpoint, contest_prompt_ids

NEW_TOKENS = 12
EOS = (151645, 151643)


def gate(reference: Qwen3Moe, candidate: Qwen3Moe, ids) -> bool:
    def run(model, prefix, new):
        return generate(model, [list(prefix)], new, [128, 256, 640], keep_logits=True, suppress=EOS).logits

    expected = run(reference, ids, NEW_TOKENS)
    result = logit_validation(
        torch.tensor([ids]), lambda x: run(candidate, x[0].tolist(), NEW_TOKENS - (x.shape[1] - len(ids))), expected
    )
    return result.passed


@pytest.fixture(scope="module")
def tiny_by_degree():
    path = checkpoint("qwen3_moe_tiny")
    return {d: Qwen3Moe.from_checkpoint(path, KernelSet.baseline(), d, torch.bfloat16) for d in (1, 2, 4)}


@pytest.mark.parametrize("reference,candidate", [(1, 2), (1, 4), (2, 4)])
@pytest.mark.parametrize("prompt", range(5))
def test_tp_degrees_pass_against_each_other(tiny_by_degree, reference, candidate, prompt):
    assert gate(tiny_by_degree[reference], tiny_by_degree[candidate], contest_prompt_ids()[prompt])


def test_perturbed_lm_head_fails_against_baseline(tiny_by_degree):
    baseline = tiny_by_degree[1]
    perturbed = baseline.with_kernels(KernelSet.from_choices({"lm_head": "perturbed"}))
    assert not gate(baseline, perturbed, contest_prompt_ids()[0])


def test_bf16_passes_the_contest_gate_against_transformers(tracking, tmp_path):
    """Our NxDI-numerics model against Hugging Face's on the same weights, through the accuracy stage."""
    from pipeline.runner import prepare, run_job
    from tests.conftest import compose_config, tracking_overrides
    from tests.integration.cli import children, job_runs

    overrides = ["workload=contest", "accuracy.reference=transformers", "accuracy.num_tokens_to_check=16",
                 "stages=[accuracy]", *tracking_overrides(tracking)]
    out = tmp_path / "out"
    out.mkdir()
    cfg = compose_config(overrides, out)
    run_job(cfg, prepare(cfg, out), overrides)
    (job,) = job_runs(tracking)
    assert job.data.metrics["accuracy.passed"] == 1.0 and job.data.tags["accuracy.reference"] == "transformers"
    (stage,) = children(tracking, job.info.run_id)
    assert [stage.data.metrics[f"accuracy.p{i}.passed"] for i in range(5)] == [1.0] * 5


@pytest.mark.parametrize("tp_degree", [1, 4])
def test_every_nki_variant_together_passes_the_gate(tracking, tmp_path, tp_degree):
    """The decode NKI kernels, run by the CPU interpreter inside the model, against the all-baseline reference."""
    from pipeline.runner import prepare, run_job
    from tests.conftest import compose_config, tracking_overrides
    from tests.integration.cli import job_runs

    overrides = ["kernel.norm=nki_add_rmsnorm", "kernel.attention=nki_decode", "kernel.router=nki_topk",
                 "kernel.experts=grouped_v2", f"parallel.tp_degree={tp_degree}", "stages=[compile,accuracy]",
                 "workload.max_new_tokens=4", *tracking_overrides(tracking)]
    out = tmp_path / "out"
    out.mkdir()
    cfg = compose_config(overrides, out)
    run_job(cfg, prepare(cfg, out), overrides)
    (job,) = job_runs(tracking)
    assert job.info.status == "FINISHED" and job.data.metrics["accuracy.passed"] == 1.0
    assert job.data.metrics["compile.nki_mac_ratio"] > 0
    assert job.data.tags["fallbacks"] == "attention:context->baseline"  # grouped_v2 serves context too
