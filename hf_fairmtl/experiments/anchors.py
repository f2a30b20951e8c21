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
side. [`experiment_anchors`] is what `hf-fairmtl train` runs on tabular data (every binary task x single
attribute, each anchor fitted once and predicted with every seed of the run). Needs the `anchors` extra:
`pip install "hf_fairmtl[anchors]"`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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
ANCHOR_LABELS = {
    "logistic_regression": "LogisticRegression",
    "threshold_optimizer": "ThresholdOptimizer(EO)",
    "threshold_optimizer_balanced_accuracy": "ThresholdOptimizer(EO, bal. acc.)",
    "exponentiated_gradient": "ExponentiatedGradient(EO)",
}
"""Short names for plot legends and tables."""
ANCHOR_MARKERS = {
    "logistic_regression": "s",
    "threshold_optimizer": "X",
    "threshold_optimizer_balanced_accuracy": "P",
    "exponentiated_gradient": "*",
}
"""One matplotlib marker per anchor, the same in every plot."""
FAIRLEARN_MISSING = 'fairlearn is not installed (pip install "hf_fairmtl[anchors]")'
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


@dataclass
class FittedAnchor:
    """One anchor fitted on a task's rows: `predict(features, groups, seed)` gives hard predictions.

    `features` are raw (unstandardised) rows; the anchor standardises them as it did its training rows. `error` is
    set (and `predict` is `None`) when the fit failed and `fit_anchors` was told to note failures, not raise.
    """

    name: str
    predict: Callable[[np.ndarray, np.ndarray, int], np.ndarray] | None
    fit_seconds: float
    error: str | None = None


class _Scaler:
    """Standardises features with the mean and standard deviation of the training rows."""

    def __init__(self, train: np.ndarray) -> None:
        self.mean, std = train.mean(axis=0), train.std(axis=0)
        self.std = np.where(std > 0, std, 1.0)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return (features - self.mean) / self.std


def _logistic_regression(seed: int, max_iter: int = 1000):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=max_iter, random_state=seed)


def _fit_one(
    method: str,
    base: Any,
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray, np.ndarray],
    seed: int,
    eg_max_iter: int,
) -> Callable[[np.ndarray, np.ndarray, int], np.ndarray]:
    """Fit one anchor on standardised rows; its prediction function `(features, groups, seed) -> labels`."""
    from fairlearn.postprocessing import ThresholdOptimizer
    from fairlearn.reductions import EqualizedOdds, ExponentiatedGradient

    if method == "logistic_regression":
        return lambda x, g, s: base.predict(x)
    if method in ("threshold_optimizer", "threshold_optimizer_balanced_accuracy"):
        objective = "accuracy" if method == "threshold_optimizer" else "balanced_accuracy"
        optimizer = ThresholdOptimizer(
            estimator=base,
            constraints="equalized_odds",
            objective=f"{objective}_score",
            prefit=True,
            predict_method="predict_proba",
        ).fit(validation[0], validation[1], sensitive_features=validation[2])
        return lambda x, g, s: optimizer.predict(x, sensitive_features=g, random_state=s)
    # The inner fits are many (one per iteration) and warm-started by nothing: 200 lbfgs steps each.
    reduction = ExponentiatedGradient(
        _logistic_regression(seed, max_iter=200), constraints=EqualizedOdds(), max_iter=eg_max_iter
    ).fit(train[0], train[1], sensitive_features=train[2])
    return lambda x, g, s: reduction.predict(x, random_state=s)


def fit_anchors(
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray, np.ndarray],
    methods: Sequence[str] = ANCHORS,
    seed: int = 0,
    eg_max_iter: int = 50,
    raise_errors: bool = True,
) -> dict[str, FittedAnchor]:
    """Fit the anchors of one task and attribute once; their predictions can then be drawn with any seed.

    Args:
        train, validation: `(features, labels, groups)` each (see `TabularArrays.task_rows`); the logistic
            regressions and ExponentiatedGradient train on `train`, ThresholdOptimizer fits on `validation`.
        methods: A subset of `ANCHORS`.
        seed: Seeds the logistic regressions (lbfgs: the fit does not depend on it).
        eg_max_iter: `max_iter` of `ExponentiatedGradient`.
        raise_errors: With `False`, a fit fairlearn refuses (e.g. "Degenerate labels" when a group has one class
            among the validation rows) gives a `FittedAnchor` with its `error` instead of raising.

    Raises:
        ValueError: An unknown anchor; a refused fit with `raise_errors`.
    """
    unknown = [m for m in methods if m not in ANCHORS]
    if unknown:
        raise ValueError(f"Unknown anchor(s) {unknown}; choose from {list(ANCHORS)}")
    scale = _Scaler(train[0])
    train = (scale(train[0]), *train[1:])
    validation = (scale(validation[0]), *validation[1:])
    start = time.perf_counter()
    base = _logistic_regression(seed).fit(train[0], train[1])
    base_seconds = time.perf_counter() - start
    fitted = {}
    for method in methods:
        start = time.perf_counter()
        try:
            predict = _fit_one(method, base, train, validation, seed, eg_max_iter)
        except ValueError as error:
            if raise_errors:
                raise
            fitted[method] = FittedAnchor(method, None, math.nan, f"{type(error).__name__}: {error}")
            continue
        # ThresholdOptimizer post-processes the logistic regression: its cost includes that fit.
        seconds = time.perf_counter() - start + (0.0 if method == "exponentiated_gradient" else base_seconds)
        fitted[method] = FittedAnchor(method, lambda x, g, s, f=predict: f(scale(x), g, s), seconds)
    return fitted


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
    features, labels, groups = test
    results = {}
    for name, anchor in fit_anchors(train, validation, methods, seed, eg_max_iter).items():
        results[name] = prediction_figures(labels, anchor.predict(features, groups, seed), groups)
        results[name]["fit_seconds"] = anchor.fit_seconds
    return results


def _require_fairlearn() -> None:
    try:
        import fairlearn  # noqa: F401
    except ImportError as error:
        raise ImportError(FAIRLEARN_MISSING) from error


def _binary_tasks(config: FairMTLConfig, tasks: Sequence[str] | None) -> list[str]:
    tasks = [t for t in config.tasks if config.task_num_labels[t] == 2] if tasks is None else list(tasks)
    for task in tasks:
        if task not in config.tasks or config.task_num_labels[task] != 2:
            raise ValueError(f"fairlearn anchors need binary tasks of {config.tasks}; got {task!r}")
    return tasks


def _task_parts(splits: Sequence[TabularArrays], config: FairMTLConfig, task: str, attribute: str) -> list[tuple]:
    """The train/validation/test rows of a task with a known `attribute` group.

    Raises:
        ValueError: A split whose rows (labelled, group known) lack one of the two classes.
    """
    t, a = config.tasks.index(task), config.protected_attributes.index(attribute)
    parts = [split.task_rows(t, a) for split in splits]
    for name, (_, labels, _) in zip(("train", "validation", "test"), parts, strict=True):
        if len(np.unique(labels)) < 2:
            raise ValueError(
                f"task {task!r} has {len(labels)} {name} rows with a label and a known {attribute!r} group, "
                f"{'all of one class' if len(labels) else 'none'}; the fairlearn anchors need both classes there"
            )
    return parts


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
    _require_fairlearn()
    if attribute not in config.protected_attributes:
        raise ValueError(
            f"Attribute {attribute!r} is not a single protected attribute of {config.protected_attributes}"
        )
    tasks = _binary_tasks(config, tasks)
    splits = [TabularArrays.from_dataset(d) for d in (train_dataset, validation_dataset, test_dataset)]
    results: dict[str, dict[str, dict[str, float]]] = {method: {} for method in methods}
    for task in tasks:
        parts = _task_parts(splits, config, task, attribute)
        for method, figures in task_anchors(*parts, methods=methods, seed=seed, eg_max_iter=eg_max_iter).items():
            results[method][task] = figures
    return results


def _one_class_groups(rows: tuple[np.ndarray, np.ndarray, np.ndarray], names: Sequence[str]) -> str:
    """`"; groups with one class among the N validation rows: a, b"` (empty when every group has both)."""
    _, labels, groups = rows
    single = [names[g] for g in np.unique(groups) if len(np.unique(labels[groups == g])) < 2]
    if not single:
        return ""
    return f"; groups with one class among the {len(labels)} validation rows: {', '.join(single)} (--validation_rows)"


@dataclass
class AnchorRun:
    """The anchors of an experiment: one record per anchor, task, attribute and seed, and what was skipped.

    A record is `{"anchor", "task", "attribute", "seed", "figures"}` (figures: `prediction_figures` keys and
    `fit_seconds`); a note is one sentence on a task, attribute or anchor left out, and why.
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def experiment_anchors(
    train_dataset: Any,
    validation_dataset: Any,
    test_dataset: Any,
    config: FairMTLConfig,
    seeds: Sequence[int],
    eg_max_iter: int = 20,
    methods: Sequence[str] = ANCHORS,
) -> AnchorRun:
    """The anchors `hf-fairmtl train` reports: every binary task x single protected attribute, each fitted once
    and predicted with every seed (the fits do not depend on the seed; the randomised predictions do).

    A task, attribute or anchor fairlearn cannot fit (a split without both classes among the rows of known group,
    a group with one class among the validation rows) is left out with a note instead of failing the run.

    Raises:
        ImportError: fairlearn is not installed (the `anchors` extra).
        ValueError: Non-tabular datasets.
    """
    _require_fairlearn()
    splits = [TabularArrays.from_dataset(d) for d in (train_dataset, validation_dataset, test_dataset)]
    run = AnchorRun()
    run.notes += [f"task `{t}`: {n}-class, no anchors" for t, n in config.task_num_labels.items() if n != 2]
    for attribute in config.protected_attributes:
        for task in _binary_tasks(config, None):
            try:
                parts = _task_parts(splits, config, task, attribute)
            except ValueError as error:
                run.notes.append(f"`{task}` / `{attribute}`: no anchors ({error})")
                continue
            fitted = fit_anchors(*parts[:2], methods=methods, eg_max_iter=eg_max_iter, raise_errors=False)
            features, labels, groups = parts[2]
            for name, anchor in fitted.items():
                if anchor.error is not None:
                    why = _one_class_groups(parts[1], config.group_names(attribute))
                    title = ANCHOR_LABELS[name]
                    run.notes.append(f"`{task}` / `{attribute}`: {title} not fitted ({anchor.error}){why}")
                    continue
                for seed in seeds:
                    figures = prediction_figures(labels, anchor.predict(features, groups, seed), groups)
                    figures["fit_seconds"] = anchor.fit_seconds
                    run.records.append(
                        {"anchor": name, "task": task, "attribute": attribute, "seed": int(seed), "figures": figures}
                    )
    return run
