"""Group thresholds: equal to fairlearn's ThresholdOptimizer on fixed scores, stored in the config, applied after
a save/reload (also with trust_remote_code), argmax for unknown groups, clear errors; the fairlearn anchors.

fairlearn is in the `dev` extra (and the `anchors` extra), so these tests run in CI.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers.dynamic_module_utils import get_class_from_dynamic_module

from hf_fairmtl import FairMTLConfig, FairMTLModel
from hf_fairmtl.experiments.anchors import fairlearn_anchors, threshold_optimizer_on_scores
from hf_fairmtl.metrics import fairness_metrics
from hf_fairmtl.postprocessing import fit_group_thresholds, fit_postprocessing


def synthetic_scores(num_rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group 1 has a higher base rate and higher scores at equal labels: an EO and a DP gap at threshold 0."""
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 2, num_rows)
    labels = (rng.random(num_rows) < np.where(groups == 1, 0.45, 0.2)).astype(np.int64)
    scores = rng.normal(size=num_rows) + 1.3 * labels + 0.6 * groups - 0.8
    return scores, labels, groups


@pytest.mark.parametrize("constraint", ["equalized_odds", "demographic_parity"])
@pytest.mark.parametrize("objective", ["accuracy", "balanced_accuracy"])
def test_equal_to_fairlearn_threshold_optimizer(constraint, objective):
    scores, labels, groups = synthetic_scores(4000, seed=0)
    test_scores, test_labels, test_groups = synthetic_scores(6000, seed=1)
    ours = fit_group_thresholds(scores, labels, groups, constraint=constraint, objective=objective)
    fairlearn_pred = threshold_optimizer_on_scores(
        (scores, labels, groups), test_scores, test_groups, constraint, objective, seed=0
    )
    # Independent random draws: the figures agree within the sampling noise of the randomised rules.
    ours_pred = ours.predict(test_scores, test_groups, seed=0)
    ours_metrics = fairness_metrics(test_labels, ours_pred, test_groups)
    fairlearn_metrics = fairness_metrics(test_labels, fairlearn_pred, test_groups)
    assert abs(ours_metrics["accuracy"] - fairlearn_metrics["accuracy"]) <= 0.01
    assert abs(ours_metrics["eo_violation"] - fairlearn_metrics["eo_violation"]) <= 0.02
    assert abs(ours_metrics["dp_gap"] - fairlearn_metrics["dp_gap"]) <= 0.02
    # fairlearn's own draws (RandomState(seed).rand(N)): the two rules give the very same predictions.
    same_draws = ours.predict(test_scores, test_groups, draws=np.random.RandomState(0).rand(len(test_scores)))
    assert np.array_equal(same_draws, fairlearn_pred)
    # The post-processing does what it is for, against the argmax (score > 0) of the same scores.
    argmax_metrics = fairness_metrics(test_labels, (test_scores > 0).astype(int), test_groups)
    gap = "eo_violation" if constraint == "equalized_odds" else "dp_gap"
    assert ours_metrics[gap] < 0.5 * argmax_metrics[gap]


def test_rules_are_plain_json_with_infinite_thresholds_as_strings():
    scores, labels, groups = synthetic_scores(2000, seed=2)
    fitted = fit_group_thresholds(scores, labels, groups, group_names=["a", "b"]).to_dict()
    assert set(fitted["groups"]) == {"a", "b"}
    import json

    assert json.loads(json.dumps(fitted, allow_nan=False)) == fitted
    for rule in fitted["groups"].values():
        assert abs(sum(rule["weights"]) - 1) < 1e-9 and 0 <= rule["p_ignore"] <= 1


def _config(**kwargs) -> FairMTLConfig:
    return FairMTLConfig(
        tasks=["income", "kind"],
        num_labels={"income": 2, "kind": 3},
        protected_attributes=["sex", "race"],
        group_vocab={"sex": ["female", "male"], "race": ["a", "b"]},
        num_features=3,
        tabular_hidden_sizes=[8],
        **kwargs,
    )


def _rows(num_rows: int, seed: int, income_labels: bool = True, sex=None) -> Dataset:
    rng = np.random.default_rng(seed)
    sex = rng.integers(0, 2, num_rows) if sex is None else np.full(num_rows, sex)
    income = (rng.random(num_rows) < np.where(sex == 1, 0.5, 0.25)).astype(int)
    features = rng.normal(size=(num_rows, 3)) + np.stack([0.8 * income, 2 * sex, np.zeros(num_rows)], axis=1)
    return Dataset.from_dict(
        {
            "features": features.astype(np.float32).tolist(),
            "labels": [[int(y) if income_labels else -100, int(rng.integers(0, 3))] for y in income],
            "group_labels": [[int(s), int(rng.integers(0, 2))] for s in sex],
        }
    )


def _predict(model, rows: Dataset, seed: int = 0) -> tuple[torch.Tensor, ...]:
    batch = rows.with_format("torch")[:]
    with torch.no_grad():
        logits = model(features=batch["features"]).logits
    return model.predict_labels(logits, batch["group_labels"], generator=torch.Generator().manual_seed(seed))


def test_save_reload_applies_the_same_thresholds(tmp_path):
    torch.manual_seed(0)
    model = FairMTLModel(_config()).eval()
    validation, test = _rows(3000, seed=0), _rows(1000, seed=1)
    fitted = fit_postprocessing(model, validation, constraint="equalized_odds", tasks=["income"], attribute="sex")
    assert set(model.config.postprocessing) == {"income"} and set(fitted) == {"income"}
    assert set(model.config.postprocessing["income"]["sex"]["groups"]) == {"female", "male"}
    before = _predict(model, test)
    model.save_pretrained(tmp_path)
    # The class trust_remote_code=True loads: the modeling file copied next to the weights, not hf_fairmtl's.
    remote_class = get_class_from_dynamic_module("modeling_fairmtl.FairMTLModel", str(tmp_path))
    assert remote_class.__module__.startswith("transformers_modules")
    for reloaded in (FairMTLModel.from_pretrained(tmp_path).eval(), remote_class.from_pretrained(tmp_path).eval()):
        assert reloaded.config.postprocessing == model.config.postprocessing
        after = _predict(reloaded, test)
        assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))

    batch = test.with_format("torch")[:]
    with torch.no_grad():
        logits = model(features=batch["features"]).logits
    argmax = logits[0].argmax(-1)
    assert not torch.equal(before[0], argmax)  # the thresholds change predictions ...
    assert torch.equal(before[1], logits[1].argmax(-1))  # ... only of the post-processed task
    assert torch.equal(model.predict_labels(logits)[0], argmax)  # no group labels: argmax
    unknown = batch["group_labels"].clone()
    unknown[:, 0] = -1
    assert torch.equal(model.predict_labels(logits, unknown)[0], argmax)  # unknown group: argmax
    # The same rule as GroupThresholds: where it is deterministic (probability 0 or 1) the predictions agree.
    margin = (logits[0][:, 1] - logits[0][:, 0]).double().numpy()
    probability = fitted["income"].positive_probability(margin, batch["group_labels"][:, 0], ["female", "male"])
    sure = (probability == 0) | (probability == 1)
    assert sure.any() and (~sure).any()
    assert np.array_equal(before[0].numpy()[sure], probability[sure].astype(int))
    # ... and where it is random, the positive rate is the rule's probability on average.
    assert abs(before[0].numpy()[~sure].mean() - probability[~sure].mean()) < 0.05


def test_postprocessing_on_a_trained_model_reduces_the_gap():
    """Reloaded rules on held-out rows: EO violation falls against the argmax of the same model."""
    torch.manual_seed(0)
    model = FairMTLModel(_config())
    train = _rows(3000, seed=3).with_format("torch")[:]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(80):
        loss = model(features=train["features"], labels=train["labels"]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    fit_postprocessing(model, _rows(3000, seed=4), tasks=["income"], attribute="sex")
    test = _rows(4000, seed=5)
    batch = test.with_format("torch")[:]
    predicted = _predict(model, test)[0].numpy()
    with torch.no_grad():
        argmax = model(features=batch["features"]).logits[0].argmax(-1).numpy()
    labels, groups = batch["labels"][:, 0].numpy(), batch["group_labels"][:, 0].numpy()
    thresholded, plain = fairness_metrics(labels, predicted, groups), fairness_metrics(labels, argmax, groups)
    assert thresholded["eo_violation"] < 0.6 * plain["eo_violation"]
    assert thresholded["accuracy"] > plain["accuracy"] - 0.05


def test_clear_errors():
    model = FairMTLModel(_config()).eval()
    validation = _rows(500, seed=0)
    with pytest.raises(ValueError, match="'kind' has 3 classes.*binary"):
        fit_postprocessing(model, validation, attribute="sex")
    with pytest.raises(ValueError, match="Choose the attribute"):
        fit_postprocessing(model, validation, tasks=["income"])
    with pytest.raises(ValueError, match="'sex\\*race' is not a single protected attribute"):
        fit_postprocessing(model, validation, tasks=["income"], attribute="sex*race")
    with pytest.raises(ValueError, match="Task 'income' has no labelled row"):
        fit_postprocessing(model, _rows(200, seed=0, income_labels=False), tasks=["income"], attribute="sex")
    with pytest.raises(ValueError, match="Group 'male' of attribute 'sex' for task 'income' has no labelled"):
        fit_postprocessing(model, _rows(200, seed=0, sex=0), tasks=["income"], attribute="sex")
    with pytest.raises(ValueError, match="Unknown post-processing constraint"):
        fit_postprocessing(model, validation, "equal_opportunity", tasks=["income"], attribute="sex")
    scores, labels, groups = synthetic_scores(300, seed=0)
    labels[groups == 1] = 0
    with pytest.raises(ValueError, match="Group '1' has only negative"):
        fit_group_thresholds(scores, labels, groups)
    assert model.config.postprocessing is None  # nothing stored by a failed fit


def test_config_refuses_bad_postprocessing_entries():
    rule = {"thresholds": [0.0, 0.0], "weights": [1.0, 0.0], "p_ignore": 0.0, "constant": 0.0}
    entry = {"constraint": "equalized_odds", "groups": {"female": rule, "male": rule}}
    assert _config(postprocessing={"income": {"sex": entry}}).postprocessing["income"]["sex"] == entry
    with pytest.raises(ValueError, match="not a binary task"):
        _config(postprocessing={"kind": {"sex": entry}})
    with pytest.raises(ValueError, match="exactly one attribute"):
        _config(postprocessing={"income": {"sex": entry, "race": entry}})
    with pytest.raises(ValueError, match="unknown group 'female'"):
        _config(postprocessing={"income": {"race": entry}})


def test_fairlearn_anchors_on_tabular_rows():
    """LogReg, ThresholdOptimizer over it (thresholds on validation) and ExponentiatedGradient, per binary task."""
    config = _config()
    train, validation, test = _rows(1000, seed=0), _rows(800, seed=1), _rows(2000, seed=2)
    results = fairlearn_anchors(train, validation, test, config, "sex", seed=0, eg_max_iter=10)
    assert set(results) == {
        "logistic_regression",
        "threshold_optimizer",
        "threshold_optimizer_balanced_accuracy",
        "exponentiated_gradient",
    }
    for figures in results.values():
        assert set(figures) == {"income"}  # "kind" has 3 classes: not an anchor task
        assert {"accuracy", "balanced_accuracy", "eo_violation", "collapsed", "fit_seconds"} <= set(figures["income"])
    plain = results["logistic_regression"]["income"]["eo_violation"]
    assert results["threshold_optimizer"]["income"]["eo_violation"] < 0.6 * plain
    assert results["exponentiated_gradient"]["income"]["eo_violation"] < 0.6 * plain
    with pytest.raises(ValueError, match="binary tasks"):
        fairlearn_anchors(train, validation, test, config, "sex", tasks=["kind"])
