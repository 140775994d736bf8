"""Generation: NxDI buckets, greedy and seeded sampling, batches of prompts of different lengths."""
import pytest
import torch

from kernels.slots import KernelSet
from model.generation import Sampling, context_bucket, generate, nxdi_buckets, pick_bucket
from model.qwen3_moe import Qwen3Moe
from tests.models import checkpoint, contest_prompt_ids


@pytest.fixture(scope="module")
def tiny():
    return Qwen3Moe.from_checkpoint(checkpoint("qwen3_moe_tiny"), KernelSet.baseline(), 1, torch.bfloat16)


def test_nxdi_buckets():
    assert nxdi_buckets(128, 640) == [128, 256, 640]
    assert nxdi_buckets(128, 64) == [64]
    assert pick_bucket([128, 256, 640], 129) == 256
    with pytest.raises(ValueError, match="exceeds the largest bucket"):
        pick_bucket([128], 129)


def test_context_bucket_is_strictly_larger_than_the_prompt_as_nxdi():
    """NxDI model_wrapper._get_seq_bucket (first_fit): a prompt that fills a bucket runs in the next one."""
    buckets = [128, 256, 640]
    assert [context_bucket(buckets, n) for n in (1, 127, 128, 255, 256, 257, 639, 640)] == [
        128, 128, 256, 256, 640, 640, 640, 640]
    with pytest.raises(ValueError, match="exceeds the largest bucket"):
        context_bucket(buckets, 641)


def test_a_prompt_of_exactly_one_bucket_is_encoded_in_the_next(tiny):
    assert generate(tiny, [[1] * 64], 1, [64, 128]).context_bucket == 128
    assert generate(tiny, [[1] * 63], 1, [64, 128]).context_bucket == 64


def test_sampling_is_seeded_and_top_k_1_is_greedy(tiny):
    ids = [list(contest_prompt_ids()[0])]
    greedy = generate(tiny, ids, 6, [64]).tokens
    hot = Sampling(do_sample=True, temperature=5.0, seed=3)
    first, second = generate(tiny, ids, 6, [64], hot).tokens, generate(tiny, ids, 6, [64], hot).tokens
    assert torch.equal(first, second)
    assert not torch.equal(first, greedy)
    assert torch.equal(generate(tiny, ids, 6, [64], Sampling(do_sample=True, top_k=1, seed=9)).tokens, greedy)


def test_batch_rows_match_single_prompts(tiny):
    prompts = [list(contest_prompt_ids()[0]), list(contest_prompt_ids()[3])]  # 20 and 14 tokens
    batched = generate(tiny, prompts, 5, [64], keep_logits=True)
    for row, prompt in enumerate(prompts):
        alone = generate(tiny, [prompt], 5, [64], keep_logits=True)
        assert torch.equal(batched.tokens[row], alone.tokens[0])
        assert (batched.logits[:, row] - alone.logits[:, 0]).abs().max() <= 0.25  # bf16 logits ~20: 2 ulps


def test_suppressed_tokens_are_never_chosen(tiny):
    ids = [list(contest_prompt_ids()[1])]
    free = generate(tiny, ids, 3, [256]).tokens[0].tolist()
    blocked = generate(tiny, ids, 3, [256], suppress=free, keep_logits=True)
    assert not set(blocked.tokens[0].tolist()) & set(free)
    assert torch.isinf(blocked.logits[:, 0, free]).all()


def test_head_alignment_sets_how_much_of_the_seeded_lm_head_follows_the_embedding():
    """model.head_alignment: 1 keeps the checkpoint id of the existing cache; below 1 the head rows follow the
    (permuted) embedding less, so greedy margins shrink (benchmarks/gate_margin_scan.py)."""
    from model.dims import ModelDims
    from model.seeded import _generator, _lm_head, checkpoint_id

    dims = ModelDims(vocab_size=512, hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                     num_key_value_heads=1, head_dim=32, num_experts=4, num_experts_per_tok=2,
                     moe_intermediate_size=64)
    assert checkpoint_id(dims, 0) == checkpoint_id(dims, 0, 1.0) != checkpoint_id(dims, 0, 0.5)
    embed = torch.randn(512, 64, generator=torch.Generator().manual_seed(1))
    perm = torch.randperm(512, generator=_generator("lm_head.perm", 0))
    follow = [torch.nn.functional.cosine_similarity(_lm_head(embed, 0, a), embed[perm]).mean() for a in (1.0, 0.3, 0.0)]
    assert follow[0] > 0.6 > follow[1] > 0.2 > abs(follow[2])
