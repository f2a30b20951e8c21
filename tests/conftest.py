"""Shared fixtures: tiny models built from configs (nothing downloads)."""

from __future__ import annotations

import os

import pytest
import torch
from transformers import BertConfig

from hf_fairmtl import FairMTLConfig

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(1)

TINY_VOCAB_SIZE = 100


def tiny_bert_dict(hidden_size: int = 16) -> dict:
    """A one-layer BERT config dict: builds in milliseconds, trains on CPU."""
    return BertConfig(
        vocab_size=TINY_VOCAB_SIZE,
        hidden_size=hidden_size,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    ).to_dict()


@pytest.fixture
def text_config() -> FairMTLConfig:
    return FairMTLConfig(
        tasks=["sentiment", "topic"],
        num_labels={"sentiment": 2, "topic": 3},
        protected_attributes=["gender"],
        group_vocab={"gender": ["female", "male"]},
        encoder=tiny_bert_dict(),
    )


@pytest.fixture
def tabular_config() -> FairMTLConfig:
    return FairMTLConfig(
        tasks=["income", "employment"],
        protected_attributes=["sex", "race"],
        group_vocab={"sex": ["female", "male"], "race": ["a", "b", "c"]},
        intersections=[["sex", "race"]],
        num_features=6,
        tabular_hidden_sizes=[16],
    )


TINY_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Real words first (so text tests read real tokens), then w0, w1, ... up to TINY_VOCAB_SIZE ids.
TINY_WORDS = ["good", "bad", "film", "plot", "she", "he", "is", "a", "nurse", "doctor", "great", "awful", "fine"]


def tiny_vocab() -> dict[str, int]:
    """Token -> id of the tiny tokenizer: special tokens 0-4, `TINY_WORDS`, then `w0`, `w1`, ..."""
    fillers = [f"w{i}" for i in range(TINY_VOCAB_SIZE - len(TINY_SPECIAL_TOKENS) - len(TINY_WORDS))]
    return {token: i for i, token in enumerate(TINY_SPECIAL_TOKENS + TINY_WORDS + fillers)}


def build_tiny_tokenizer():
    """A BERT-style WordPiece tokenizer over `tiny_vocab()` (ids < TINY_VOCAB_SIZE), built in memory.

    Built from a vocabulary dict with the `tokenizers` library: under transformers 5,
    `BertTokenizerFast(vocab_file=...)` loads only the special tokens, so every word would be `[UNK]`.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast

    vocab = tiny_vocab()
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return BertTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=64,
    )


@pytest.fixture
def tiny_tokenizer():
    """`build_tiny_tokenizer()`: known words map to their ids in `tiny_vocab()`."""
    return build_tiny_tokenizer()
