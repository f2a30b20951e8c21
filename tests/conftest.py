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


@pytest.fixture
def tiny_tokenizer(tmp_path):
    """A BERT WordPiece tokenizer over a vocabulary the test writes (ids < TINY_VOCAB_SIZE)."""
    from transformers import BertTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = [f"w{i}" for i in range(TINY_VOCAB_SIZE - len(special))]
    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("\n".join(special + words) + "\n")
    return BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True)
