from pathlib import Path

import yaml

from model.tokenizer import qwen3_tokenizer

CONTEST = Path(__file__).parents[2] / "conf" / "workload" / "contest.yaml"


def test_contest_prompts_tokenize_to_the_real_models_counts():
    prompts = yaml.safe_load(CONTEST.read_text())["prompts"]
    assert [len(qwen3_tokenizer().encode(p)) for p in prompts] == [20, 192, 54, 14, 512]


def test_known_ids_and_qwen3_special_tokens():
    tok = qwen3_tokenizer()
    assert tok.encode("Hello, world!") == [9707, 11, 1879, 0]
    assert tok.vocab_size == 151669
    assert tok.encode("<think>x</think>")[0] == 151667 and tok.encode("</think>") == [151668]
    assert tok.eos_token_ids == (151645, 151643)


def test_round_trip():
    tok = qwen3_tokenizer()
    text = "Déjà vu — 数学 formula: Σ(n) = n(n+1)/2\n\tend"
    assert tok.decode(tok.encode(text)) == text
