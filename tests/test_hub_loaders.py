"""Hub loaders run on local files of the published schemas, through the same `load_dataset` call."""

from __future__ import annotations

import json

import datasets
import pandas as pd
import pytest

from hf_fairmtl import FairMTLConfig
from hf_fairmtl.data import build_multitask_dataset, fit_vocabularies, hub

from .conftest import tiny_bert_dict


def _config(tasks, label_vocab, attributes, group_vocab, num_labels=None) -> FairMTLConfig:
    return FairMTLConfig(
        tasks=tasks,
        num_labels=num_labels,
        label_vocab=label_vocab,
        protected_attributes=attributes,
        group_vocab=group_vocab,
        encoder=tiny_bert_dict(),
    )


def test_bias_in_bios_parquet(tmp_path):
    path = tmp_path / "bios_train.parquet"
    pd.DataFrame(
        {
            "hard_text": ["She studied nursing in Leeds.", "He writes code for banks.", "She teaches yoga."],
            "profession": [13, 24, 27],
            "gender": [1, 0, 1],
        }
    ).to_parquet(path)
    source = hub.load_bias_in_bios(path="parquet", data_files={"train": str(path)}, cache_dir=str(tmp_path / "c"))
    assert source.tasks == {"profession": "profession"} and source.text_column == "hard_text"
    config = _config(["profession"], {"profession": hub.BIOS_PROFESSIONS}, ["gender"], {"gender": hub.BIOS_GENDERS})
    ds = build_multitask_dataset([source], config)
    assert ds["labels"] == [[13], [24], [27]] and ds["group_labels"] == [[1], [0], [1]]
    assert config.label_vocab["profession"][13] == "nurse" and config.group_vocab["gender"][1] == "female"
    assert len(hub.load_bias_in_bios(path="parquet", data_files={"train": str(path)}, max_rows=2).dataset) == 2


def test_bias_in_bios_schema_mismatch(tmp_path):
    path = tmp_path / "bad.parquet"
    pd.DataFrame({"hard_text": ["x"], "profession": [1], "gender_label": [0]}).to_parquet(path)
    with pytest.raises(ValueError, match=r"'gender'.*did you mean 'gender_label'"):
        hub.load_bias_in_bios(path="parquet", data_files={"train": str(path)}, cache_dir=str(tmp_path / "c"))


def _hatexplain_posts(label_as_name: bool) -> list[dict]:
    def annotators(labels, targets):
        names = hub.HATEXPLAIN_LABELS
        return [
            {"label": names[lab] if label_as_name else lab, "annotator_id": i, "target": tgt}
            for i, (lab, tgt) in enumerate(zip(labels, targets, strict=True))
        ]

    return [
        # majority hatespeech (0, 0, 2), target African by all three
        {"id": "1_gab", "annotators": annotators([0, 0, 2], [["African"], ["African"], ["African", "Women"]]),
         "rationales": [], "post_tokens": ["some", "hateful", "post"]},
        # normal, targets Women by two of three
        {"id": "2_tw", "annotators": annotators([1, 1, 1], [["Women"], ["Women", "Islam"], ["None"]]),
         "rationales": [], "post_tokens": ["a", "normal", "post"]},
        # no majority label (one vote each), two race targets with a majority each -> race ambiguous
        {"id": "3_tw", "annotators": annotators([0, 1, 2], [["Arab", "Asian"], ["Arab", "Asian"], []]),
         "rationales": [], "post_tokens": ["unclear"]},
    ]  # fmt: skip


@pytest.mark.parametrize("label_as_name", [False, True])
def test_hatexplain_jsonl(tmp_path, label_as_name):
    path = tmp_path / "hatexplain.jsonl"
    path.write_text("\n".join(json.dumps(post) for post in _hatexplain_posts(label_as_name)))
    source = hub.load_hatexplain(path="json", data_files={"train": str(path)}, cache_dir=str(tmp_path / "c"))
    ds = source.dataset
    assert ds["text"] == ["some hateful post", "a normal post", "unclear"]
    assert ds["hate_label"] == ["hatespeech", "normal", None] and ds["toxic"] == [1, 0, None]
    assert ds["target_race"] == ["african", None, None]
    assert ds["target_gender"] == [None, "women", None]
    assert ds["target_religion"] == [None, None, None]
    config = _config(
        ["hate_label", "toxic"],
        {"hate_label": hub.HATEXPLAIN_LABELS},
        list(source.attributes),
        hub.hatexplain_group_vocab(),
    )
    built = build_multitask_dataset([source], config)
    race = hub.hatexplain_group_vocab()["target_race"].index("african")
    women = hub.hatexplain_group_vocab()["target_gender"].index("women")
    assert built["labels"] == [[0, 1], [1, 0], [-100, -100]]
    assert built["group_labels"] == [[race, -1, -1], [-1, women, -1], [-1, -1, -1]]


def test_hatexplain_hub_features_dict_of_lists():
    """The Hub build stores `annotators` as a Sequence of a dict: one dict of lists per post."""
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "annotators": datasets.Sequence(
                {
                    "label": datasets.ClassLabel(names=hub.HATEXPLAIN_LABELS),
                    "annotator_id": datasets.Value("int32"),
                    "target": datasets.Sequence(datasets.Value("string")),
                }
            ),
            "rationales": datasets.Sequence(datasets.Sequence(datasets.Value("int32"))),
            "post_tokens": datasets.Sequence(datasets.Value("string")),
        }
    )
    posts = _hatexplain_posts(False)
    for post in posts:
        post["annotators"] = {key: [a[key] for a in post["annotators"]] for key in ("label", "annotator_id", "target")}
    ds = datasets.Dataset.from_list(posts, features=features)
    assert isinstance(ds[0]["annotators"], dict)
    rows = [hub.hatexplain_row(example) for example in ds]
    assert [r["hate_label"] for r in rows] == ["hatespeech", "normal", None]
    assert rows[0]["target_race"] == "african" and rows[1]["target_gender"] == "women"


def test_moji_and_generic_csv(tmp_path):
    moji = tmp_path / "moji.parquet"
    pd.DataFrame({"text": ["so happy today", "ugh monday", "lol yes"], "label": [1, 0, 1], "sa": [0, 0, 1]}).to_parquet(
        moji
    )
    source = hub.load_moji(path="parquet", data_files={"train": str(moji)}, cache_dir=str(tmp_path / "c"))
    config = _config(["sentiment"], {"sentiment": hub.MOJI_SENTIMENTS}, ["dialect"], {"dialect": hub.MOJI_DIALECTS})
    built = build_multitask_dataset([source], config)
    assert built["labels"] == [[1], [0], [1]] and built["group_labels"] == [[0], [0], [1]]

    reviews = tmp_path / "trustpilot.csv"
    pd.DataFrame({"review": ["Great service", "Never again"], "rating": ["5", "1"], "gender": ["F", "M"]}).to_csv(
        reviews, index=False
    )
    generic = hub.load_hub_text_source(
        "csv", {"rating": "rating"}, {"gender": "gender"}, text_column="review", data_files={"train": str(reviews)},
        cache_dir=str(tmp_path / "c"),
    )  # fmt: skip
    label_vocab, group_vocab = fit_vocabularies([generic])
    assert group_vocab == {"gender": ["F", "M"]} and generic.name == "csv"
    # The csv reader types ratings as ints, so they are ids: names "0".."5" (0 unused), ids unchanged.
    assert label_vocab == {"rating": ["0", "1", "2", "3", "4", "5"]}
