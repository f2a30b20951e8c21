"""Post-processing: group-specific randomised thresholds for equalized odds or demographic parity.

For a binary task whose protected group is known at prediction time, Hardt, Price & Srebro (2016, "Equality of
Opportunity in Supervised Learning") make a scored classifier fair by choosing, per group, a threshold on the
score, or a random mixture of two thresholds (and, for equalized odds, of a constant predictor), fitted on
validation rows. The construction is the one of fairlearn's `ThresholdOptimizer` (re-implemented here on
NumPy, same defaults: a grid of 1000 + 1 points, no flipped thresholds):

* For each group, every threshold `score > t` between two distinct validation scores gives a point of a
  trade-off curve: (FPR, TPR) for `equalized_odds`, (selection rate, objective) for `demographic_parity`.
  Randomising between two thresholds reaches any point of the upper convex hull of these points.
* `equalized_odds`: on a grid of FPRs, the highest TPR every group can reach is the lowest of the group hulls;
  the grid point maximising the overall objective is chosen, and a group whose hull lies above it mixes in the
  constant predictor "positive with probability FPR" (weight `p_ignore`) to come down to the common point.
* `demographic_parity`: on a grid of selection rates, the point maximising the group-size-weighted objective.

The objective is `accuracy` (default) or `balanced_accuracy`. The score is the positive-class logit margin
`logit_1 − logit_0` (`modeling_fairmtl.positive_class_margin`). Only binary tasks are supported: for a
multi-class task the post-processing refuses with a clear error (equalized odds over C classes is a linear
program over C×C confusion rates, not a pair of thresholds; one-vs-rest thresholds would not give a consistent
class decision). Only single attributes are supported (no `"gender*race"`).

The fitted rules are stored in `config.postprocessing` (plain JSON), so `save_pretrained` carries them and a
reloaded model (also with `trust_remote_code=True`) applies them in `FairMTLModel.predict_labels`.

```python
from hf_fairmtl.postprocessing import fit_postprocessing

fit_postprocessing(trainer, validation_dataset, constraint="equalized_odds", attribute="sex")
outputs = model(features=features)
labels = model.predict_labels(outputs.logits, group_labels=group_labels, generator=torch.Generator().manual_seed(0))
```
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from .configuration_fairmtl import FairMTLConfig
from .data import DataCollatorForFairMTL
from .modeling_fairmtl import IGNORE_INDEX, positive_class_margin, threshold_rule_probability
from .utils import unwrap_model

CONSTRAINTS = ("equalized_odds", "demographic_parity")
OBJECTIVES = ("accuracy", "balanced_accuracy")
SCORE = "logit_margin"
DEFAULT_GRID_SIZE = 1000


@dataclass
class GroupThresholds:
    """Fitted randomised threshold rules of one task and attribute.

    Attributes:
        constraint: `"equalized_odds"` or `"demographic_parity"`.
        objective: `"accuracy"` or `"balanced_accuracy"`.
        groups: Group key (its name in the vocabulary, else its id as a string) -> rule, the JSON form
            `threshold_rule_probability` reads.
        validation: What the fit reached on the validation rows (rows, the common rate(s), objective value).
    """

    constraint: str
    objective: str
    groups: dict[str, dict[str, Any]]
    validation: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in `config.postprocessing[task][attribute]`."""
        return {
            "constraint": self.constraint,
            "objective": self.objective,
            "score": SCORE,
            "groups": self.groups,
            "validation": self.validation,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GroupThresholds:
        return cls(data["constraint"], data["objective"], dict(data["groups"]), dict(data.get("validation", {})))

    def positive_probability(self, scores: Any, groups: Any, group_names: Sequence[str] | None = None) -> np.ndarray:
        """`P(ŷ = 1)` per row (`[N]`); NaN for rows whose group has no rule (unknown groups).

        Args:
            scores: `[N]` positive-class margins.
            groups: `[N]` group ids.
            group_names: Names of the group ids when the rules are keyed by name.
        """
        margin = torch.as_tensor(np.asarray(scores, dtype=np.float64))
        groups = np.asarray(groups).reshape(-1)
        probability = np.full(len(groups), np.nan)
        for key, rule in self.groups.items():
            group_id = list(group_names).index(key) if group_names else int(key)
            rows = groups == group_id
            probability[rows] = threshold_rule_probability(margin[torch.as_tensor(rows)], rule).numpy()
        return probability

    def predict(
        self,
        scores: Any,
        groups: Any,
        group_names: Sequence[str] | None = None,
        seed: int | None = 0,
        draws: Any = None,
    ) -> np.ndarray:
        """Randomised predictions (`[N]`, 0/1): positive where a uniform draw is below `P(ŷ = 1)`; rows of unknown
        groups get `score > 0` (the argmax).

        Args:
            scores: `[N]` positive-class margins.
            groups: `[N]` group ids.
            group_names: Names of the group ids when the rules are keyed by name.
            seed: Seeds NumPy's generator for the draws.
            draws: `[N]` uniform draws in [0, 1) to use instead (e.g. the ones another randomised predictor used,
                to compare two rules without sampling noise).
        """
        probability = self.positive_probability(scores, groups, group_names)
        draws = np.random.default_rng(seed).random(len(probability)) if draws is None else np.asarray(draws)
        argmax = (np.asarray(scores, dtype=np.float64) > 0).astype(np.int64)
        return np.where(np.isnan(probability), argmax, (draws < probability).astype(np.int64))


# ----------------------------------------------------------------------------------------------- trade-off curves


def _format_threshold(value: float) -> float | str:
    """JSON has no infinities: ±inf become the strings `"inf"` / `"-inf"` (which `float()` reads back)."""
    if math.isfinite(value):
        return float(value)
    return "inf" if value > 0 else "-inf"


def _threshold_counts(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thresholds `t_k` (descending, `+inf` first, `-inf` last) and the false/true positives of `score > t_k`."""
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    distinct, starts = np.unique(-scores, return_index=True)
    distinct = -distinct
    ends = np.append(starts[1:], len(scores))
    positives = np.concatenate([[0], np.cumsum(labels)])
    tp = np.concatenate([[0], positives[ends]])
    fp = np.concatenate([[0], ends - positives[ends]])
    midpoints = (distinct[:-1] + distinct[1:]) / 2
    thresholds = np.concatenate([[np.inf], midpoints, [-np.inf]])
    return thresholds, fp.astype(np.float64), tp.astype(np.float64)


def _objective(objective: str, tp, fp, tn, fn) -> np.ndarray:
    if objective == "accuracy":
        return (tp + tn) / (tp + fp + tn + fn)
    return 0.5 * tp / (tp + fn) + 0.5 * tn / (tn + fp)


def _upper_hull(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the upper convex hull of points already sorted by (x, y) (Andrew's monotone chain)."""
    kept: list[int] = []
    for i in range(len(x)):
        while len(kept) >= 2:
            a, b = kept[-2], kept[-1]
            if (y[b] - y[a]) * (x[i] - x[a]) <= (y[i] - y[a]) * (x[b] - x[a]):
                kept.pop()
            else:
                break
        kept.append(i)
    return np.asarray(kept)


@dataclass
class _Curve:
    """A group's hull interpolated on the grid: `y` and, per grid point, the two thresholds and their weights."""

    y: np.ndarray
    low: np.ndarray
    high: np.ndarray
    weight_low: np.ndarray

    def rule(self, index: int, p_ignore: float = 0.0, constant: float = 0.0) -> dict[str, Any]:
        weight = float(self.weight_low[index])
        return {
            "thresholds": [_format_threshold(self.low[index]), _format_threshold(self.high[index])],
            "weights": [weight, 1.0 - weight],
            "p_ignore": float(p_ignore),
            "constant": float(constant),
        }


def _curve(x: np.ndarray, y: np.ndarray, thresholds: np.ndarray, grid: np.ndarray) -> _Curve:
    """The upper hull of the points `(x, y)` (one per threshold), interpolated linearly on `grid`."""
    order = np.lexsort((y, x))
    hull = order[_upper_hull(x[order], y[order])]
    hx, hy, ht = x[hull], y[hull], thresholds[hull]
    left = np.searchsorted(hx, grid, side="right") - 1
    left[1:] = np.where(grid[1:] == hx[left[1:]], left[1:] - 1, left[1:])
    left = np.clip(left, 0, len(hx) - 2)
    weight_low = (hx[left + 1] - grid) / (hx[left + 1] - hx[left])
    return _Curve(
        y=weight_low * hy[left] + (1 - weight_low) * hy[left + 1],
        low=ht[left],
        high=ht[left + 1],
        weight_low=weight_low,
    )


# ----------------------------------------------------------------------------------------------- fitting


def _group_rows(
    labels: np.ndarray, groups: np.ndarray, group_names: Sequence[str] | None, context: str
) -> dict[str, np.ndarray]:
    """Boolean row mask per group key; every named group must have positives and negatives."""
    ids = range(len(group_names)) if group_names is not None else np.unique(groups)
    keys = [str(group_names[g]) if group_names is not None else str(int(g)) for g in ids]
    masks = {}
    for group_id, key in zip(ids, keys, strict=True):
        rows = groups == group_id
        if not rows.any():
            raise ValueError(
                f"Group {key!r}{context} has no labelled validation row: thresholds cannot be fitted for it "
                "(use a validation split that contains every group)"
            )
        positives = int(labels[rows].sum())
        if positives in (0, int(rows.sum())):
            raise ValueError(
                f"Group {key!r}{context} has only {'negative' if positives == 0 else 'positive'} validation "
                "labels: its rates are undefined, so thresholds cannot be fitted for it"
            )
        masks[key] = rows
    if len(masks) < 2:
        raise ValueError(f"Group thresholds need at least two groups with validation rows{context}, got {list(masks)}")
    return masks


def _check_inputs(scores, labels, groups, constraint: str, objective: str) -> tuple[np.ndarray, ...]:
    if constraint not in CONSTRAINTS:
        raise ValueError(f"Unknown post-processing constraint {constraint!r}; choose one of {list(CONSTRAINTS)}")
    if objective not in OBJECTIVES:
        raise ValueError(f"Unknown post-processing objective {objective!r}; choose one of {list(OBJECTIVES)}")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    groups = np.asarray(groups).reshape(-1).astype(np.int64)
    if not len(scores) == len(labels) == len(groups):
        raise ValueError(f"scores, labels and groups differ in length: {len(scores)}, {len(labels)}, {len(groups)}")
    if not np.isfinite(scores).all():
        raise ValueError("Scores must be finite")
    keep = (labels != IGNORE_INDEX) & (groups >= 0)
    if ((labels[keep] != 0) & (labels[keep] != 1)).any():
        raise ValueError("Group thresholds are for binary tasks: labels must be 0, 1 or -100")
    return scores[keep], labels[keep], groups[keep]


def fit_group_thresholds(
    scores: Any,
    labels: Any,
    groups: Any,
    constraint: str = "equalized_odds",
    objective: str = "accuracy",
    grid_size: int = DEFAULT_GRID_SIZE,
    group_names: Sequence[str] | None = None,
    context: str = "",
) -> GroupThresholds:
    """Fit randomised group thresholds on validation scores (see the module docstring).

    Args:
        scores: `[N]` positive-class scores (any monotone score; the model's logit margin).
        labels: `[N]` binary labels; -100 rows are dropped.
        groups: `[N]` group ids; negative (unknown) rows are dropped.
        constraint: `"equalized_odds"` or `"demographic_parity"`.
        objective: `"accuracy"` or `"balanced_accuracy"`, maximised under the constraint.
        grid_size: Grid intervals on the constrained rate (fairlearn's `grid_size`).
        group_names: Names of the group ids: rules are keyed by name and every named group must be present.
            Without names, the groups present are keyed by their id.
        context: Appended to error messages (e.g. `" of attribute 'sex' for task 'income'"`).

    Raises:
        ValueError: Unknown constraint/objective, non-binary labels, a group without rows or with one label only,
            fewer than two groups.
    """
    scores, labels, groups = _check_inputs(scores, labels, groups, constraint, objective)
    masks = _group_rows(labels, groups, group_names, context)
    grid = np.linspace(0.0, 1.0, int(grid_size) + 1)
    curves: dict[str, _Curve] = {}
    for key, rows in masks.items():
        thresholds, fp, tp = _threshold_counts(scores[rows], labels[rows])
        n_pos = float(labels[rows].sum())
        n_neg = float(rows.sum()) - n_pos
        if constraint == "equalized_odds":
            x, y = fp / n_neg, tp / n_pos
        else:
            x = (tp + fp) / (n_pos + n_neg)
            y = _objective(objective, tp, fp, n_neg - fp, n_pos - tp)
        curves[key] = _curve(x, y, thresholds, grid)
    if constraint == "equalized_odds":
        return _equalized_odds(curves, grid, labels, objective)
    sizes = {key: rows.sum() / len(labels) for key, rows in masks.items()}
    return _demographic_parity(curves, grid, sizes, objective, len(labels))


def _equalized_odds(curves: dict[str, _Curve], grid: np.ndarray, labels: np.ndarray, objective: str):
    """The FPR grid point where the lowest group ROC hull gives the best objective; groups above it mix in a
    constant predictor (Hardt et al. 2016)."""
    tpr = np.min(np.stack([curve.y for curve in curves.values()]), axis=0)
    n_pos = float(labels.sum())
    n_neg = len(labels) - n_pos
    values = _objective(objective, n_pos * tpr, n_neg * grid, n_neg * (1 - grid), n_pos * (1 - tpr))
    best = int(np.argmax(np.around(values, 15)))
    fpr, common_tpr = float(grid[best]), float(tpr[best])
    rules = {}
    for key, curve in curves.items():
        group_tpr = float(curve.y[best])
        p_ignore = 0.0 if group_tpr == fpr else (group_tpr - common_tpr) / (group_tpr - fpr)
        rules[key] = curve.rule(best, p_ignore=p_ignore, constant=fpr)
    validation = {"rows": len(labels), "fpr": fpr, "tpr": common_tpr, objective: float(values[best])}
    return GroupThresholds("equalized_odds", objective, rules, validation)


def _demographic_parity(curves: dict[str, _Curve], grid: np.ndarray, sizes: dict, objective: str, rows: int):
    """The selection-rate grid point that maximises the group-size-weighted objective."""
    overall = sum(sizes[key] * curve.y for key, curve in curves.items())
    best = int(np.argmax(overall))
    rules = {key: curve.rule(best) for key, curve in curves.items()}
    validation = {"rows": rows, "selection_rate": float(grid[best]), objective: float(overall[best])}
    return GroupThresholds("demographic_parity", objective, rules, validation)


# ----------------------------------------------------------------------------------------------- models


@torch.no_grad()
def predict_scores(model, dataset, data_collator=None, batch_size: int = 256) -> dict[str, Any]:
    """Per-task logits, `labels` and `group_labels` of every row of `dataset` (NumPy), in dataset order.

    Runs the unwrapped model in eval mode on its own device over the whole dataset (no DDP sharding), so every
    rank computes the same thresholds.
    """
    model = unwrap_model(model)
    was_training = model.training
    model.eval()
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, collate_fn=data_collator or DataCollatorForFairMTL()
    )
    logits: list[list[np.ndarray]] = [[] for _ in model.config.tasks]
    labels, group_labels = [], []
    try:
        for batch in loader:
            for key in ("labels", "group_labels"):
                if key not in batch:
                    raise ValueError(f"fit_postprocessing needs a `{key}` column in the validation dataset")
            labels.append(batch.pop("labels").numpy())
            group_labels.append(batch.pop("group_labels").numpy())
            inputs = {k: v.to(model.device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
            for t, task_logits in enumerate(model(**inputs).logits):
                logits[t].append(task_logits.float().cpu().numpy())
    finally:
        model.train(was_training)
    return {
        "logits": [np.concatenate(parts) for parts in logits],
        "labels": np.concatenate(labels),
        "group_labels": np.concatenate(group_labels),
    }


def _postprocessed_tasks(config: FairMTLConfig, tasks: Sequence[str] | None) -> list[str]:
    tasks = list(config.tasks if tasks is None else tasks)
    for task in tasks:
        if task not in config.tasks:
            raise ValueError(f"Unknown task {task!r} for post-processing; tasks are {config.tasks}")
        if config.task_num_labels[task] != 2:
            raise ValueError(
                f"Task {task!r} has {config.task_num_labels[task]} classes: group thresholds are for binary tasks "
                "only; pass `tasks=[...]` listing the binary tasks to post-process"
            )
    return tasks


def _task_attribute(config: FairMTLConfig, attribute: str | dict[str, str] | None, task: str) -> str:
    name = attribute.get(task) if isinstance(attribute, dict) else attribute
    if name is None:
        if len(config.protected_attributes) != 1:
            raise ValueError(
                f"Choose the attribute to post-process task {task!r} for: `attribute=` one of "
                f"{config.protected_attributes} (or a dict task -> attribute)"
            )
        name = config.protected_attributes[0]
    if name not in config.protected_attributes:
        raise ValueError(
            f"Post-processing attribute {name!r} is not a single protected attribute of {config.protected_attributes}"
        )
    return name


def fit_postprocessing(
    trainer_or_model,
    dataset,
    constraint: str = "equalized_odds",
    tasks: Sequence[str] | None = None,
    attribute: str | dict[str, str] | None = None,
    objective: str = "accuracy",
    grid_size: int = DEFAULT_GRID_SIZE,
    data_collator=None,
    batch_size: int = 256,
) -> dict[str, GroupThresholds]:
    """Fit group thresholds per task on `dataset` (a validation split) and store them in `config.postprocessing`.

    Args:
        trainer_or_model: A `FairMTLTrainer` (its model and data collator are used) or a `FairMTLModel`.
        dataset: Validation rows in the data contract (`labels`, `group_labels`, model inputs). Never the test rows.
        constraint: `"equalized_odds"` or `"demographic_parity"`.
        tasks: Binary tasks to post-process (default: every task; a multi-class task raises).
        attribute: The protected attribute per task: a name, a dict task -> name, or `None` when the config has
            exactly one protected attribute.
        objective: `"accuracy"` or `"balanced_accuracy"`.
        grid_size: Grid intervals (see [`fit_group_thresholds`]).
        data_collator: Batches the rows (default: the trainer's, else `DataCollatorForFairMTL()`).
        batch_size: Prediction batch size.

    Returns:
        Task -> [`GroupThresholds`]; `config.postprocessing` is updated (other tasks' entries are kept), so
        `save_pretrained` stores them and `predict_labels` applies them.

    Raises:
        ValueError: A multi-class or unknown task, an ambiguous or unknown attribute, a task without labels on the
            validation rows, a group absent from them (see [`fit_group_thresholds`]).
    """
    model = unwrap_model(getattr(trainer_or_model, "model", trainer_or_model))
    collator = data_collator or getattr(trainer_or_model, "data_collator", None)
    config: FairMTLConfig = model.config
    tasks = _postprocessed_tasks(config, tasks)
    predicted = predict_scores(model, dataset, collator, batch_size)
    fitted: dict[str, GroupThresholds] = {}
    entries: dict[str, dict[str, Any]] = {}
    for task in tasks:
        t = config.tasks.index(task)
        attr = _task_attribute(config, attribute, task)
        labels = predicted["labels"][:, t]
        if not (labels != IGNORE_INDEX).any():
            raise ValueError(f"Task {task!r} has no labelled row in the validation dataset: nothing to fit on")
        groups = predicted["group_labels"][:, config.protected_attributes.index(attr)]
        margin = positive_class_margin(torch.as_tensor(predicted["logits"][t])).numpy()
        fitted[task] = fit_group_thresholds(
            margin,
            labels,
            groups,
            constraint,
            objective,
            grid_size,
            group_names=config.group_vocab.get(attr),
            context=f" of attribute {attr!r} for task {task!r}",
        )
        entries[task] = {attr: fitted[task].to_dict()}
    config.postprocessing = {**(config.postprocessing or {}), **entries}
    return fitted
