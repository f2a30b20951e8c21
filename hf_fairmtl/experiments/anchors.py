"""fairlearn baselines ("anchors") on the same tabular features as our models.

Two lines of scikit-learn a user would try first, per binary task and one protected attribute:

* `logistic_regression`: `LogisticRegression` on the standardised features (the unconstrained reference);
* `threshold_optimizer`: fairlearn's `ThresholdOptimizer(constraints="equalized_odds")` over that (prefit)
  logistic regression, its thresholds fitted on the **validation** rows (Hardt et al. 2016);
  `threshold_optimizer_balanced_accuracy` the same with `objective="balanced_accuracy_score"` (on an imbalanced
  task the accuracy objective tends to the constant majority-class predictor, which has no EO gap);
* `exponentiated_gradient`: fairlearn's `ExponentiatedGradient(LogisticRegression, EqualizedOdds())` trained on
  the training rows (Agarwal et al. 2018), a randomised classifier.

Rows whose group is unknown (-1) are left out of fitting and of the figures (fairlearn would take -1 for a group);
rows without a label for a task are left out for that task. Figures are those of our models
(`prediction_figures`: `hf_fairmtl.metrics.fairness_metrics` + `task_metrics`), so a table can put both side by
side. Needs the `anchors` extra: `pip install "hf_fairmtl[anchors]"`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from ..configuration_fairmtl import FairMTLConfig
from ..metrics import fairness_metrics, task_metrics
from ..modeling_fairmtl import IGNORE_INDEX

ANCHORS = (
    "logistic_regression",
    "threshold_optimizer",
    "threshold_optimizer_balanced_accuracy",
    "exponentiated_gradient",
)
ANCHOR_TITLES = {
    "logistic_regression": "logistic regression (sklearn)",
    "threshold_optimizer": "fairlearn ThresholdOptimizer(EO) over logistic regression",
    "threshold_optimizer_balanced_accuracy": "fairlearn ThresholdOptimizer(EO, balanced acc.) over logistic regression",
    "exponentiated_gradient": "fairlearn ExponentiatedGradient(LogReg, EqualizedOdds)",
}
FIGURE_KEYS = ("accuracy", "balanced_accuracy", "eo_violation", "tpr_gap", "fpr_gap", "dp_gap", "eps_deo")


@dataclass
class TabularArrays:
    """The tabular rows of a multi-task dataset as arrays: `features [N, F]`, `labels [N, T]`, `groups [N, A]`."""

    features: np.ndarray
    labels: np.ndarray
    groups: np.ndarray

    @classmethod
    def from_dataset(cls, dataset: Any) -> TabularArrays:
        """From a dataset with `features`, `labels` and `group_labels` columns (`build_multitask_dataset`)."""
        missing = [c for c in ("features", "labels", "group_labels") if c not in dataset.column_names]
        if missing:
            raise ValueError(f"fairlearn anchors need tabular rows: the dataset lacks column(s) {missing}")
        rows = dataset.with_format("numpy")
        return cls(
            np.asarray(rows["features"], dtype=np.float64),
            np.asarray(rows["labels"]).reshape(len(dataset), -1),
            np.asarray(rows["group_labels"]).reshape(len(dataset), -1),
        )

    def task_rows(self, task_index: int, attribute_index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Features, labels and group ids of the rows with a label for the task and a known group."""
        keep = (self.labels[:, task_index] != IGNORE_INDEX) & (self.groups[:, attribute_index] >= 0)
        return self.features[keep], self.labels[keep, task_index], self.groups[keep, attribute_index]


def prediction_figures(y_true: Any, y_pred: Any, groups: Any) -> dict[str, float]:
    """Accuracy, balanced accuracy, collapse guard and group gaps of hard predictions (one task, one attribute)."""
    gaps = fairness_metrics(y_true, y_pred, groups, num_classes=2)
    figures = task_metrics(y_true, y_pred)
    figures.update({key: float(gaps[key]) for key in FIGURE_KEYS if key in gaps and key not in figures})
    return figures


class PrefitScores(ClassifierMixin, BaseEstimator):
    """A prefit scikit-learn "classifier" whose prediction is its one input column, the score itself.

    With `ThresholdOptimizer(estimator=PrefitScores(), prefit=True, predict_method="predict")`, fairlearn
    thresholds exactly the scores it is given (e.g. our model's logit margins), so its post-processing can be
    compared with `hf_fairmtl.postprocessing` on the same scores.
    """

    def __init__(self) -> None:
        self.classes_ = np.array([0, 1])
        self.is_prefit_ = True

    def fit(self, X: Any = None, y: Any = None) -> PrefitScores:
        return self

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(X, dtype=np.float64).reshape(len(X), -1)[:, 0]


def threshold_optimizer_on_scores(
    validation: tuple[np.ndarray, np.ndarray, np.ndarray],
    test_scores: np.ndarray,
    test_groups: np.ndarray,
    constraint: str = "equalized_odds",
    objective: str = "accuracy",
    seed: int = 0,
) -> np.ndarray:
    """fairlearn's `ThresholdOptimizer` fitted on validation `(scores, labels, groups)`; predictions on test scores.

    Args:
        validation: Scores, binary labels and group ids of the validation rows (labelled, known group).
        test_scores: `[N]` scores of the rows to predict.
        test_groups: `[N]` their group ids.
        constraint: A fairlearn constraint (`"equalized_odds"`, `"demographic_parity"`, ...).
        objective: `"accuracy"` or `"balanced_accuracy"` (fairlearn's `*_score` objectives).
        seed: `random_state` of the randomised predictions.
    """
    from fairlearn.postprocessing import ThresholdOptimizer

    scores, labels, groups = validation
    optimizer = ThresholdOptimizer(
        estimator=PrefitScores(),
        constraints=constraint,
        objective=f"{objective}_score",
        prefit=True,
        predict_method="predict",
    ).fit(np.asarray(scores)[:, None], labels, sensitive_features=groups)
    return optimizer.predict(np.asarray(test_scores)[:, None], sensitive_features=test_groups, random_state=seed)


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return [(x - mean) / std for x in (train, *others)]


def _logistic_regression(seed: int, max_iter: int = 1000):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=max_iter, random_state=seed)


def task_anchors(
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray, np.ndarray],
    methods: Sequence[str] = ANCHORS,
    seed: int = 0,
    eg_max_iter: int = 50,
) -> dict[str, dict[str, float]]:
    """Fit the anchors of one task and attribute; figures on the test rows, per method.

    Args:
        train, validation, test: `(features, labels, groups)` each (see `TabularArrays.task_rows`).
        methods: A subset of `ANCHORS`.
        seed: Seeds the logistic regressions and the randomised predictions.
        eg_max_iter: `max_iter` of `ExponentiatedGradient`.

    Returns:
        Method -> figures (`prediction_figures`) plus `fit_seconds`.
    """
    from fairlearn.postprocessing import ThresholdOptimizer
    from fairlearn.reductions import EqualizedOdds, ExponentiatedGradient

    unknown = [m for m in methods if m not in ANCHORS]
    if unknown:
        raise ValueError(f"Unknown anchor(s) {unknown}; choose from {list(ANCHORS)}")
    (x_train, y_train, g_train), (x_val, y_val, g_val), (x_test, y_test, g_test) = train, validation, test
    x_train, x_val, x_test = _standardise(x_train, x_val, x_test)
    results: dict[str, dict[str, float]] = {}
    start = time.perf_counter()
    base = _logistic_regression(seed).fit(x_train, y_train)
    base_seconds = time.perf_counter() - start
    if "logistic_regression" in methods:
        results["logistic_regression"] = {**prediction_figures(y_test, base.predict(x_test), g_test)}
        results["logistic_regression"]["fit_seconds"] = base_seconds
    for method, objective in (
        ("threshold_optimizer", "accuracy"),
        ("threshold_optimizer_balanced_accuracy", "balanced_accuracy"),
    ):
        if method not in methods:
            continue
        start = time.perf_counter()
        optimizer = ThresholdOptimizer(
            estimator=base,
            constraints="equalized_odds",
            objective=f"{objective}_score",
            prefit=True,
            predict_method="predict_proba",
        ).fit(x_val, y_val, sensitive_features=g_val)
        predicted = optimizer.predict(x_test, sensitive_features=g_test, random_state=seed)
        results[method] = prediction_figures(y_test, predicted, g_test)
        results[method]["fit_seconds"] = base_seconds + time.perf_counter() - start
    if "exponentiated_gradient" in methods:
        start = time.perf_counter()
        # The inner fits are many (one per iteration) and warm-started by nothing: 200 lbfgs steps each.
        inner = _logistic_regression(seed, max_iter=200)
        reduction = ExponentiatedGradient(inner, constraints=EqualizedOdds(), max_iter=eg_max_iter)
        reduction.fit(x_train, y_train, sensitive_features=g_train)
        predicted = reduction.predict(x_test, random_state=seed)
        results["exponentiated_gradient"] = prediction_figures(y_test, predicted, g_test)
        results["exponentiated_gradient"]["fit_seconds"] = time.perf_counter() - start
    return results


def fairlearn_anchors(
    train_dataset: Any,
    validation_dataset: Any,
    test_dataset: Any,
    config: FairMTLConfig,
    attribute: str,
    tasks: Sequence[str] | None = None,
    methods: Sequence[str] = ANCHORS,
    seed: int = 0,
    eg_max_iter: int = 50,
) -> dict[str, dict[str, dict[str, float]]]:
    """fairlearn's anchors on every binary task of tabular multi-task datasets, for one protected attribute.

    Args:
        train_dataset: Rows the logistic regressions and ExponentiatedGradient are trained on.
        validation_dataset: Rows ThresholdOptimizer fits its thresholds on (never the test rows).
        test_dataset: Rows the figures are computed on.
        config: Task and attribute order.
        attribute: A single protected attribute of `config`.
        tasks: Binary tasks (default: every binary task of `config`).
        methods: A subset of `ANCHORS`.
        seed: Seeds the logistic regressions and the randomised predictions.
        eg_max_iter: `max_iter` of `ExponentiatedGradient`.

    Returns:
        Method -> task -> figures (`prediction_figures` keys and `fit_seconds`).

    Raises:
        ValueError: An unknown or intersectional attribute, a multi-class or unknown task, a task or split without
            rows, non-tabular datasets.
        ImportError: fairlearn is not installed (the `anchors` extra).
    """
    try:
        import fairlearn  # noqa: F401
    except ImportError as error:
        raise ImportError('fairlearn anchors need fairlearn: pip install "hf_fairmtl[anchors]"') from error
    if attribute not in config.protected_attributes:
        raise ValueError(
            f"Attribute {attribute!r} is not a single protected attribute of {config.protected_attributes}"
        )
    tasks = [t for t in config.tasks if config.task_num_labels[t] == 2] if tasks is None else list(tasks)
    for task in tasks:
        if task not in config.tasks or config.task_num_labels[task] != 2:
            raise ValueError(f"fairlearn anchors need binary tasks of {config.tasks}; got {task!r}")
    a = config.protected_attributes.index(attribute)
    splits = [TabularArrays.from_dataset(d) for d in (train_dataset, validation_dataset, test_dataset)]
    results: dict[str, dict[str, dict[str, float]]] = {method: {} for method in methods}
    for task in tasks:
        t = config.tasks.index(task)
        parts = [split.task_rows(t, a) for split in splits]
        for name, (_, labels, _) in zip(("train", "validation", "test"), parts, strict=True):
            if len(np.unique(labels)) < 2:
                raise ValueError(f"Task {task!r} needs both classes among its {name} rows for the fairlearn anchors")
        for method, figures in task_anchors(*parts, methods=methods, seed=seed, eg_max_iter=eg_max_iter).items():
            results[method][task] = figures
    return results
