"""Group metrics: agreement with fairlearn, hand-computed figures, compute_metrics, ARA/AREO, evaluate."""

from __future__ import annotations

import math

import numpy as np
import pytest
from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate
from transformers import EvalPrediction

from hf_fairmtl import FairMTLConfig
from hf_fairmtl.metrics import (
    COLLAPSE_THRESHOLD,
    FAIRNESS_METRIC_PATH,
    GAP_METRIC_TITLES,
    fairness_metrics,
    make_compute_metrics,
    relative_scores,
    task_metrics,
)
from hf_fairmtl.metrics.keys import (
    MetricKey,
    attribute_key,
    group_key,
    intersection_name,
    loss_key,
    parse_key,
    task_key,
)


def random_task(num_groups: int, num_classes: int = 2, n: int = 600, seed: int = 0):
    """Random labels, predictions that agree with them 70% of the time, groups with ~10% unknown (-1)
    and ~5% missing labels (-100)."""
    rng = np.random.default_rng(seed + num_groups)
    y_true = rng.integers(0, num_classes, n)
    y_pred = np.where(rng.random(n) < 0.7, y_true, rng.integers(0, num_classes, n))
    groups = rng.integers(0, num_groups, n)
    groups[rng.random(n) < 0.1] = -1
    y_true[rng.random(n) < 0.05] = -100
    return y_true, y_pred, groups


def fairlearn_frame(y_true, y_pred, groups, positive=1):
    keep = (groups >= 0) & (y_true != -100)
    return MetricFrame(
        metrics={"tpr": true_positive_rate, "fpr": false_positive_rate, "sr": selection_rate},
        y_true=(y_true[keep] == positive).astype(int),
        y_pred=(y_pred[keep] == positive).astype(int),
        sensitive_features=groups[keep],
    )


@pytest.mark.parametrize("num_groups", [2, 3, 5])
def test_binary_metrics_match_fairlearn(num_groups):
    y_true, y_pred, groups = random_task(num_groups)
    names = [f"g{g}" for g in range(num_groups)]
    ours = fairness_metrics(y_true, y_pred, groups, group_names=names)
    frame = fairlearn_frame(y_true, y_pred, groups)
    for g in range(num_groups):
        assert ours[f"tpr_g{g}"] == pytest.approx(frame.by_group.loc[g, "tpr"], abs=1e-12)
        assert ours[f"fpr_g{g}"] == pytest.approx(frame.by_group.loc[g, "fpr"], abs=1e-12)
        assert ours[f"selection_rate_g{g}"] == pytest.approx(frame.by_group.loc[g, "sr"], abs=1e-12)
        assert ours[f"count_g{g}"] == ((groups == g) & (y_true != -100)).sum()
    difference = frame.difference()
    assert ours["tpr_gap"] == pytest.approx(difference["tpr"], abs=1e-12)
    assert ours["fpr_gap"] == pytest.approx(difference["fpr"], abs=1e-12)
    assert ours["dp_gap"] == pytest.approx(difference["sr"], abs=1e-12)
    assert ours["eo_violation"] == pytest.approx(difference["tpr"] + difference["fpr"], abs=1e-12)
    labelled = y_true != -100  # accuracy counts unknown-group rows too
    assert ours["accuracy"] == pytest.approx((y_true[labelled] == y_pred[labelled]).mean())


@pytest.mark.parametrize("num_groups", [2, 3, 5])
def test_multiclass_one_vs_rest_matches_fairlearn(num_groups):
    y_true, y_pred, groups = random_task(num_groups, num_classes=3)
    ours = fairness_metrics(y_true, y_pred, groups, num_classes=3)  # no names: keys use the ids
    gaps = {"tpr": [], "fpr": [], "sr": []}
    for c in range(3):
        frame = fairlearn_frame(y_true, y_pred, groups, positive=c)
        for g in range(num_groups):
            assert ours[f"tpr_{g}_{c}"] == pytest.approx(frame.by_group.loc[g, "tpr"], abs=1e-12)
            assert ours[f"fpr_{g}_{c}"] == pytest.approx(frame.by_group.loc[g, "fpr"], abs=1e-12)
            assert ours[f"selection_rate_{g}_{c}"] == pytest.approx(frame.by_group.loc[g, "sr"], abs=1e-12)
        for key in gaps:
            gaps[key].append(frame.difference()[key])
    assert ours["tpr_gap"] == pytest.approx(np.mean(gaps["tpr"]), abs=1e-12)  # macro over classes
    assert ours["fpr_gap"] == pytest.approx(np.mean(gaps["fpr"]), abs=1e-12)
    assert ours["dp_gap"] == pytest.approx(np.mean(gaps["sr"]), abs=1e-12)


def test_eps_deo_and_rms_gap_by_hand():
    # group 0: y=1 -> ŷ 1,1,0 ; y=0 -> ŷ 1,0   group 1: y=1 -> ŷ 1 ; y=0 -> ŷ 0,0,0   unknown: ignored
    y_true = [1, 1, 1, 0, 0, 1, 0, 0, 0, 1]
    y_pred = [1, 1, 0, 1, 0, 1, 0, 0, 0, 0]
    groups = [0, 0, 0, 0, 0, 1, 1, 1, 1, -1]
    out = fairness_metrics(y_true, y_pred, groups, alpha=0.1)
    tpr0, tpr1 = (2 + 0.05) / (3 + 0.1), (1 + 0.05) / (1 + 0.1)
    fpr0, fpr1 = (1 + 0.05) / (2 + 0.1), (0 + 0.05) / (3 + 0.1)
    assert out["eps_deo"] == pytest.approx(abs(math.log(tpr0 / tpr1)) + abs(math.log(fpr0 / fpr1)))
    assert out["tpr_gap"] == pytest.approx(1 - 2 / 3) and out["fpr_gap"] == pytest.approx(0.5)
    # fairlib RMS gap over classes 0 and 1: class 1 TPRs 2/3, 1 vs overall 3/4; class 0 (TNR) 1/2, 1 vs 4/5.
    gap1 = abs(2 / 3 - 3 / 4) + abs(1 - 3 / 4)
    gap0 = abs(1 / 2 - 4 / 5) + abs(1 - 4 / 5)
    assert out["rms_tpr_gap"] == pytest.approx(math.sqrt((gap0**2 + gap1**2) / 2))
    assert out["accuracy"] == pytest.approx(7 / 10)  # the unknown-group row (wrong) counts here


def test_groups_without_positives_are_skipped():
    # Group 2 has no positives: its TPR is NaN and it does not enter the TPR gap, but it does enter the FPR gap.
    out = fairness_metrics([1, 0, 1, 0, 0, 0], [1, 0, 0, 0, 1, 1], [0, 0, 1, 1, 2, 2], group_names=["a", "b", "c"])
    assert math.isnan(out["tpr_c"]) and out["fpr_c"] == 1.0
    assert out["tpr_gap"] == 1.0 and out["fpr_gap"] == 1.0
    # An absent named group: NaN rates, zero count, no effect on gaps.
    out = fairness_metrics([1, 0, 1, 0], [1, 0, 1, 1], [0, 0, 1, 1], group_names=["a", "b", "c"])
    assert math.isnan(out["selection_rate_c"]) and out["count_c"] == 0 and out["fpr_gap"] == 1.0
    # Fewer than two groups: no measurable gap.
    out = fairness_metrics([1, 0, 1], [0, 0, 1], [0, 0, -1])
    assert out["eo_violation"] == 0.0 and out["eps_deo"] == 0.0 and out["dp_gap"] == 0.0


def test_fairness_metrics_validation_and_scores():
    with pytest.raises(ValueError, match="same length"):
        fairness_metrics([1, 0], [1], [0, 1])
    with pytest.raises(ValueError, match="no name"):
        fairness_metrics([1, 0], [1, 0], [0, 2], group_names=["a", "b"])
    with pytest.raises(ValueError, match="outside"):
        fairness_metrics([1, 2], [1, 0], [0, 1], num_classes=2)
    with pytest.raises(ValueError, match="clash"):
        fairness_metrics([1, 0], [1, 0], [0, 1], group_names=["gap", "other"])
    scores = np.array([[0.1, 0.9], [0.8, 0.2]])  # [N, C] scores are argmax-ed
    assert fairness_metrics([1, 0], scores, [0, 1])["accuracy"] == 1.0


# -------------------------------------------------------------------------------------- make_compute_metrics


@pytest.fixture
def mtl_eval():
    config = FairMTLConfig(
        tasks=["income", "topic"],
        num_labels={"income": 2, "topic": 3},
        protected_attributes=["sex", "race"],
        group_vocab={"sex": ["female", "male"], "race": ["a", "b", "c"]},
        intersections=[["sex", "race"]],
        num_features=4,
    )
    rng = np.random.default_rng(7)
    n = 300
    labels = np.stack([rng.integers(0, 2, n), rng.integers(0, 3, n)], axis=1)
    labels[rng.random(n) < 0.3, 0] = -100  # rows from a source without the income task
    labels[rng.random(n) < 0.3, 1] = -100
    group_labels = np.stack([rng.integers(0, 2, n), rng.integers(0, 3, n)], axis=1)
    group_labels[rng.random(n) < 0.15, 0] = -1
    group_labels[rng.random(n) < 0.15, 1] = -1
    logits = (rng.normal(size=(n, 2)), rng.normal(size=(n, 3)))
    return config, EvalPrediction(predictions=logits, label_ids=(labels, group_labels))


def test_make_compute_metrics(mtl_eval):
    config, eval_pred = mtl_eval
    results = make_compute_metrics(config)(eval_pred)
    labels, group_labels = eval_pred.label_ids
    sex, race = group_labels[:, 0], group_labels[:, 1]
    # Intersection ids written out independently: sex * 3 + race, unknown if either is.
    attribute_ids = {"sex": sex, "race": race, "sex*race": np.where((sex < 0) | (race < 0), -1, sex * 3 + race)}
    violations = []
    for t, (task, classes) in enumerate([("income", 2), ("topic", 3)]):
        keep = labels[:, t] != -100
        y_true, y_pred = labels[keep, t], eval_pred.predictions[t].argmax(-1)[keep]
        assert results[f"{task}_accuracy"] == pytest.approx((y_true == y_pred).mean())
        for attr, ids in attribute_ids.items():
            expected = fairness_metrics(
                y_true, y_pred, ids[keep], num_classes=classes, group_names=config.group_names(attr)
            )
            for key in ("tpr_gap", "fpr_gap", "eo_violation", "dp_gap", "eps_deo", "rms_tpr_gap"):
                assert results[f"{task}_{attr}_{key}"] == pytest.approx(expected[key]), (task, attr, key)
            violations.append(expected["eo_violation"])
    assert results["income_sex_tpr_female"] == pytest.approx(
        ((labels[:, 0] == 1) & (sex == 0) & (eval_pred.predictions[0].argmax(-1) == 1)).sum()
        / ((labels[:, 0] == 1) & (sex == 0)).sum()
    )
    assert "topic_sex*race_tpr_male*c_2" in results  # multi-class: per class, intersectional group names
    assert "income_accuracy" in results and "income_sex_accuracy" not in results
    assert results["mean_eo_violation"] == pytest.approx(np.mean(violations))
    assert results["mean_accuracy"] == pytest.approx((results["income_accuracy"] + results["topic_accuracy"]) / 2)
    assert all(isinstance(value, float) for value in results.values())


def test_make_compute_metrics_variants(mtl_eval):
    config, eval_pred = mtl_eval
    only_sex = make_compute_metrics(config, attributes=["sex"])(eval_pred)
    assert not any("race" in key for key in only_sex)
    labels, _ = eval_pred.label_ids
    no_groups = make_compute_metrics(config)((eval_pred.predictions, labels))  # tuple input, no group column
    per_task = ("accuracy", "balanced_accuracy", "majority_prediction_share", "collapsed")
    expected = {f"{task}_{figure}" for task in ("income", "topic") for figure in per_task}
    assert set(no_groups) == expected | {"mean_accuracy", "num_collapsed_tasks"}
    with pytest.raises(ValueError, match="2"):
        make_compute_metrics(config)(EvalPrediction(predictions=eval_pred.predictions[:1], label_ids=labels))
    with pytest.raises(ValueError, match="Unknown protected attribute"):
        make_compute_metrics(config, attributes=["age"])


# -------------------------------------------------------------------------------------------- ARA / AREO


def test_relative_scores():
    mtl = {"a": {"accuracy": 0.8, "eo_violation": 0.1}, "b": {"accuracy": 0.9, "eo_violation": 0.3}}
    stl = {"a": {"accuracy": 0.8, "eo_violation": 0.2}, "b": {"accuracy": 0.75, "eo_violation": 0.1}}
    scores = relative_scores(mtl, stl)
    assert scores["ARA"] == pytest.approx((1.0 + 1.2) / 2)
    assert scores["AREO"] == pytest.approx((0.5 + 3.0) / 2)
    assert scores["b_relative_eo_violation"] == pytest.approx(3.0)
    with pytest.raises(ValueError, match="only in MTL"):
        relative_scores({**mtl, "c": mtl["a"]}, stl)
    with pytest.raises(ValueError, match="STL eo_violation is 0"):
        relative_scores(mtl, {**stl, "a": {"accuracy": 0.8, "eo_violation": 0.0}})
    with pytest.raises(ValueError, match="lacks"):
        relative_scores(mtl, {**stl, "a": {"accuracy": 0.8}})


# -------------------------------------------------------------------------------------------- evaluate module


def test_evaluate_module_loads_offline(tmp_path):
    evaluate = pytest.importorskip("evaluate")
    metric = evaluate.load(FAIRNESS_METRIC_PATH, cache_dir=str(tmp_path))
    y_true, y_pred, groups = random_task(3)
    out = metric.compute(predictions=y_pred, references=y_true, groups=groups, group_names=["x", "y", "z"])
    expected = fairness_metrics(y_true, y_pred, groups, group_names=["x", "y", "z"])
    assert out.keys() == expected.keys()
    assert all(out[key] == pytest.approx(expected[key], nan_ok=True) for key in expected)


def test_task_without_labels_gets_no_keys_and_stays_out_of_means():
    config = FairMTLConfig(
        tasks=["target", "auxiliary"], protected_attributes=["g"], group_vocab={"g": ["a", "b"]}, num_features=2
    )
    rng = np.random.default_rng(0)
    labels = np.stack([rng.integers(0, 2, 40), np.full(40, -100)], axis=1)
    groups = rng.integers(0, 2, (40, 1))
    predictions = (rng.normal(size=(40, 2)), rng.normal(size=(40, 2)))
    out = make_compute_metrics(config)(EvalPrediction(predictions=predictions, label_ids=(labels, groups)))
    assert not any(key.startswith("auxiliary_") for key in out)
    assert out["mean_accuracy"] == out["target_accuracy"]
    assert out["mean_eo_violation"] == out["target_g_eo_violation"]
    assert all(math.isfinite(value) for key, value in out.items() if "gap" in key or "violation" in key)


def test_task_without_known_groups_gets_no_group_keys():
    """The transfer setting's target task evaluated on training-like rows: labels, but no group known."""
    config = FairMTLConfig(
        tasks=["target", "auxiliary"], protected_attributes=["g"], group_vocab={"g": ["a", "b"]}, num_features=2
    )
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, (40, 2))
    labels[:20, 1] = -100  # rows 0-19: target only, group unknown; rows 20-39: auxiliary only, group known
    labels[20:, 0] = -100
    groups = np.concatenate([np.full(20, -1), rng.integers(0, 2, 20)])[:, None]
    predictions = (rng.normal(size=(40, 2)), rng.normal(size=(40, 2)))
    out = make_compute_metrics(config)(EvalPrediction(predictions=predictions, label_ids=(labels, groups)))
    assert "target_accuracy" in out and not any(key.startswith("target_g_") for key in out)
    assert "auxiliary_g_eo_violation" in out
    assert out["mean_eo_violation"] == out["auxiliary_g_eo_violation"]


# -------------------------------------------------------------------------------------------- metric keys


def test_keys_build_what_trainer_evaluate_returns_and_parse_back():
    assert task_key("target", "accuracy", prefix="eval") == "eval_target_accuracy"
    assert attribute_key("target", "gender", "eo_violation") == "target_gender_eo_violation"
    assert group_key("topic", intersection_name("sex", "race"), "tpr", "male*c", 2) == "topic_sex*race_tpr_male*c_2"
    assert group_key("t", "g", "count", "a") == "t_g_count_a"
    assert loss_key("income", "fairness") == "income_fairness_loss"
    with pytest.raises(ValueError, match="loss kind"):
        loss_key("income", "fair")
    # Names with underscores: matched against the known names, not split on "_".
    tasks, attrs = ["hate_speech", "hate"], ["skin_tone", "skin"]
    groups = {"skin_tone": ["dark_brown", "dark"], "skin": ["x"]}
    parse = lambda key: parse_key(key, tasks, attrs, groups)  # noqa: E731
    assert parse("eval_hate_speech_skin_tone_tpr_dark_brown") == MetricKey(
        "tpr", "hate_speech", "skin_tone", "dark_brown", None, "eval"
    )
    assert parse("eval_hate_speech_skin_tone_fpr_dark_1") == MetricKey(
        "fpr", "hate_speech", "skin_tone", "dark", 1, "eval"
    )
    assert parse("eval_hate_skin_eo_violation") == MetricKey("eo_violation", "hate", "skin", prefix="eval")
    assert parse("eval_hate_speech_accuracy_loss") == MetricKey("accuracy_loss", "hate_speech", prefix="eval")
    assert parse("eval_mean_accuracy") == MetricKey("mean_accuracy", prefix="eval")
    assert parse("train_loss") is None


def test_every_compute_metrics_key_parses_back(mtl_eval):
    config, eval_pred = mtl_eval
    results = make_compute_metrics(config)(eval_pred)
    attributes = config.group_attribute_names
    groups = {attr: config.group_names(attr) for attr in attributes}
    for key in results:
        parsed = parse_key(key, config.tasks, attributes, groups, prefix="")
        if parsed.task is None:
            assert parsed.metric in ("mean_accuracy", "mean_eo_violation", "num_collapsed_tasks")
        elif parsed.attribute is not None and parsed.group is None:
            assert parsed.metric in GAP_METRIC_TITLES, key
        elif parsed.group is not None:
            rebuilt = group_key(parsed.task, parsed.attribute, parsed.metric, parsed.group, parsed.class_id)
            assert rebuilt == key


# -------------------------------------------------------------------------------------------- collapse guard


def test_task_metrics_flag_a_constant_predictor_as_collapsed():
    y_true = np.array([0] * 94 + [1] * 6)  # 6 % positive, like census income
    constant = np.zeros(100, dtype=int)
    figures = task_metrics(y_true, constant)
    assert figures["accuracy"] == pytest.approx(0.94)
    assert figures["balanced_accuracy"] == pytest.approx(0.5)
    assert figures["majority_prediction_share"] == 1.0 and figures["collapsed"] == 1.0
    almost = constant.copy()
    almost[:6] = 1  # 94 % one class: below the 95 % threshold
    assert task_metrics(y_true, almost)["collapsed"] == 0.0
    almost[5] = 0  # 95 % one class
    assert task_metrics(y_true, almost)["majority_prediction_share"] == pytest.approx(COLLAPSE_THRESHOLD)
    assert task_metrics(y_true, almost)["collapsed"] == 1.0
    labelled_only = task_metrics(np.array([0, 1, -100, -100]), np.array([0, 1, 1, 1]))
    assert labelled_only["majority_prediction_share"] == 0.5  # rows without a label do not count


def test_compute_metrics_reports_collapse_next_to_a_zero_gap(caplog):
    """Data built to collapse: one task predicted as class 0 everywhere has EO violation 0 and is flagged."""
    config = FairMTLConfig(
        tasks=["income", "topic"], protected_attributes=["sex"], group_vocab={"sex": ["f", "m"]}, num_features=2
    )
    rng = np.random.default_rng(3)
    n = 200
    labels = np.stack([(rng.random(n) < 0.1).astype(int), rng.integers(0, 2, n)], axis=1)
    sex = rng.integers(0, 2, (n, 1))
    constant = np.tile([5.0, -5.0], (n, 1))  # always class 0
    informative = np.eye(2)[labels[:, 1]] * 4.0
    with caplog.at_level("WARNING"):
        out = make_compute_metrics(config)(EvalPrediction(predictions=(constant, informative), label_ids=(labels, sex)))
    assert out["income_collapsed"] == 1.0 and out["income_sex_eo_violation"] == 0.0
    assert out["income_balanced_accuracy"] == pytest.approx(0.5)
    assert out["topic_collapsed"] == 0.0 and out["topic_balanced_accuracy"] == 1.0
    assert out["num_collapsed_tasks"] == 1.0
    assert "income" in caplog.text and "Collapsed" in caplog.text


def test_relative_scores_with_and_without_collapsed_tasks():
    mtl = {
        "a": {"accuracy": 0.8, "eo_violation": 0.1, "collapsed": 0.0},
        "b": {"accuracy": 0.94, "eo_violation": 0.0, "majority_prediction_share": 1.0},
    }
    stl = {"a": {"accuracy": 0.8, "eo_violation": 0.2}, "b": {"accuracy": 0.9, "eo_violation": 0.1}}
    scores = relative_scores(mtl, stl)
    assert scores["b_collapsed"] == 1.0 and scores["a_collapsed"] == 0.0 and scores["num_collapsed_tasks"] == 1.0
    assert scores["AREO"] == pytest.approx((0.5 + 0.0) / 2)  # the collapsed task "wins" AREO ...
    assert scores["AREO_without_collapsed"] == pytest.approx(0.5)  # ... and is left out here
    assert scores["ARA_without_collapsed"] == pytest.approx(1.0)
    # A collapsed STL reference with EO 0: NaN ratio instead of an error, kept out of both means.
    collapsed_stl = {**stl, "b": {"accuracy": 0.94, "eo_violation": 0.0, "collapsed": 1.0}}
    scores = relative_scores({**mtl, "b": {"accuracy": 0.9, "eo_violation": 0.1}}, collapsed_stl)
    assert math.isnan(scores["b_relative_eo_violation"]) and scores["AREO"] == pytest.approx(0.5)
    all_collapsed = relative_scores({"b": mtl["b"]}, {"b": stl["b"]})
    assert math.isnan(all_collapsed["ARA_without_collapsed"])


@pytest.mark.parametrize("num_classes", [2, 4])
def test_equalized_odds_violation_equals_fairness_metrics(num_classes):
    """The teacher's cheap EO violation is exactly `fairness_metrics`' (unknown groups and missing labels too), one
    prediction or several of the same rows at once."""
    from hf_fairmtl.metrics import equalized_odds_violation, equalized_odds_violations

    rng = np.random.default_rng(num_classes)
    for _ in range(20):
        y_true = rng.integers(0, num_classes, 60)
        y_true[rng.random(60) < 0.2] = -100
        y_pred = rng.integers(0, num_classes, 60)
        groups = rng.integers(-1, 3, 60)
        expected = fairness_metrics(y_true, y_pred, groups, num_classes=num_classes)["eo_violation"]
        assert equalized_odds_violation(y_true, y_pred, groups, num_classes) == expected
        others = rng.integers(0, num_classes, (2, 60))
        batched = equalized_odds_violations(y_true, np.vstack([y_pred, others]), groups, num_classes)
        assert batched.tolist() == [
            fairness_metrics(y_true, p, groups, num_classes=num_classes)["eo_violation"] for p in (y_pred, *others)
        ]
    with pytest.raises(ValueError, match="outside"):
        equalized_odds_violations([0, 1], [[0, num_classes]], [0, 1], num_classes)
