"""The one place that builds and parses metric keys.

Every figure hf_fairmtl logs or evaluates has a flat key (what `Trainer` logs and `trainer.evaluate()` returns):

| key                                        | built by                                   |
|--------------------------------------------|--------------------------------------------|
| `{task}_accuracy`, `{task}_collapsed`, …   | `task_key(task, metric)`                   |
| `{task}_{attr}_eo_violation`, …            | `attribute_key(task, attr, metric)`        |
| `{task}_{attr}_tpr_{group}[_{class}]`      | `group_key(task, attr, "tpr", group, c)`   |
| `{task}_{attr}_count_{group}`              | `group_key(task, attr, "count", group)`    |
| `{task}_accuracy_loss`, `{task}_fairness_loss` | `loss_key(task, "accuracy")`           |
| `{task}_gradnorm_weight` (any weighting)   | `weight_key(task, "gradnorm")`             |
| `{task}_action` (teacher)                  | `task_key(task, "action")`                 |
| `mean_accuracy`, `ARA`, …                  | `overall_key(name)`                        |

`attr` may be intersectional (`"gender*race"`, [`intersection_name`]). Every builder takes a `prefix`
(`"eval"`, `"test"`, or `""` for none); `Trainer` adds `eval_` itself, so code that produces metrics builds them
without one and code that reads `trainer.evaluate()` output builds them with `prefix="eval"`.

Task, attribute and group names may contain underscores, so a key cannot be split on `_`: [`parse_key`] matches
it against the known names (longest first) instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..configuration_fairmtl import INTERSECTION_SEPARATOR

SEPARATOR = "_"
EVAL_PREFIX = "eval"

TASK_METRICS = ("accuracy", "balanced_accuracy", "majority_prediction_share", "collapsed")
"""Per-task figures of `make_compute_metrics`: `{task}_{metric}`."""
GROUP_RATES = ("tpr", "fpr", "selection_rate")
"""Per-group rates: `{task}_{attr}_{rate}_{group}` (multi-class: `..._{group}_{class}`)."""
COUNT = "count"
"""Per-group example count: `{task}_{attr}_count_{group}`."""
LOSS_KINDS = ("accuracy", "fairness")
"""Training losses logged per task: `{task}_{kind}_loss`."""
TRAINING_FIGURES = ("action",)
"""Other per-task training logs: `{task}_{figure}` (task weights: [`weight_key`])."""


def with_prefix(key: str, prefix: str = "") -> str:
    """`key` with `{prefix}_` in front (nothing added for an empty prefix)."""
    return f"{prefix}{SEPARATOR}{key}" if prefix else key


def without_prefix(key: str, prefix: str = EVAL_PREFIX) -> str | None:
    """`key` without its `{prefix}_`; `None` when it does not start with it (the key itself for `prefix=""`)."""
    if not prefix:
        return key
    marker = prefix + SEPARATOR
    return key[len(marker) :] if key.startswith(marker) else None


def task_key(task: str, metric: str, prefix: str = "") -> str:
    """`{task}_{metric}`, e.g. `task_key("target", "accuracy", "eval")` → `"eval_target_accuracy"`."""
    return with_prefix(f"{task}{SEPARATOR}{metric}", prefix)


def attribute_key(task: str, attr: str, metric: str, prefix: str = "") -> str:
    """`{task}_{attr}_{metric}`, e.g. `"target_gender_eo_violation"`; `metric` may be a group metric name."""
    return with_prefix(f"{task}{SEPARATOR}{attr}{SEPARATOR}{metric}", prefix)


def group_metric_name(rate: str, group: str, class_id: int | None = None) -> str:
    """`{rate}_{group}` (multi-class one-vs-rest: `{rate}_{group}_{class_id}`): the per-group name inside an
    attribute, as [`fairness_metrics`] returns it."""
    name = f"{rate}{SEPARATOR}{group}"
    return name if class_id is None else f"{name}{SEPARATOR}{int(class_id)}"


def group_key(task: str, attr: str, rate: str, group: str, class_id: int | None = None, prefix: str = "") -> str:
    """`{task}_{attr}_{rate}_{group}[_{class_id}]`, e.g. `"eval_target_gender_tpr_female"`; `rate` is one of
    `GROUP_RATES` or `COUNT` (a count has no class)."""
    return attribute_key(task, attr, group_metric_name(rate, group, class_id), prefix)


def loss_key(task: str, kind: str, prefix: str = "") -> str:
    """`{task}_{kind}_loss` (`kind` is `"accuracy"` or `"fairness"`), as the trainer logs it."""
    if kind not in LOSS_KINDS:
        raise ValueError(f"Unknown loss kind {kind!r}; one of {', '.join(LOSS_KINDS)}")
    return task_key(task, f"{kind}{SEPARATOR}loss", prefix)


def weight_key(task: str, weighting: str, prefix: str = "") -> str:
    """`{task}_{weighting}_weight`: a task weight the trainer logs, e.g. `"target_gradnorm_weight"`."""
    return task_key(task, f"{weighting}{SEPARATOR}weight", prefix)


def overall_key(name: str, prefix: str = "") -> str:
    """A model-level figure: `mean_accuracy`, `mean_eo_violation`, `ARA`, `AREO`, … with the prefix."""
    return with_prefix(name, prefix)


def intersection_name(*attributes: str) -> str:
    """The intersectional attribute name: `intersection_name("gender", "race")` → `"gender*race"`."""
    return INTERSECTION_SEPARATOR.join(attributes)


def is_intersectional(attr: str) -> bool:
    """Whether an attribute name is an intersection of several attributes."""
    return INTERSECTION_SEPARATOR in attr


@dataclass(frozen=True)
class MetricKey:
    """A parsed metric key; fields that the key does not have are `None`.

    Attributes:
        metric: The figure: `"accuracy"`, `"eo_violation"`, `"tpr"`, `"count"`, `"accuracy_loss"`, `"ARA"`, …
        task: The task, for per-task keys.
        attribute: The attribute, for per-attribute and per-group keys.
        group: The group, for per-group keys.
        class_id: The class of a multi-class per-group rate.
        prefix: The prefix the key was parsed with.
    """

    metric: str
    task: str | None = None
    attribute: str | None = None
    group: str | None = None
    class_id: int | None = None
    prefix: str = ""


def _longest_first(names: Iterable[str]) -> list[str]:
    return sorted(set(names), key=len, reverse=True)


def _strip_name(text: str, names: Sequence[str]) -> tuple[str, str] | None:
    """(name, rest) for the first of `names` (longest first) that `text` starts with, followed by `_`."""
    for name in names:
        if text.startswith(name + SEPARATOR):
            return name, text[len(name) + 1 :]
    return None


def _parse_group(rest: str, groups: Sequence[str]) -> tuple[str, str, int | None] | None:
    """(rate, group, class_id) of `{rate}_{group}[_{class}]`, or `None`."""
    for rate in (*GROUP_RATES, COUNT):
        if not rest.startswith(rate + SEPARATOR):
            continue
        tail = rest[len(rate) + 1 :]
        for group in _longest_first(groups):
            if tail == group:
                return rate, group, None
            if rate != COUNT and tail.startswith(group + SEPARATOR) and tail[len(group) + 1 :].isdigit():
                return rate, group, int(tail[len(group) + 1 :])
    return None


def parse_key(
    key: str,
    tasks: Sequence[str],
    attributes: Sequence[str] = (),
    group_names: Mapping[str, Sequence[str]] | None = None,
    prefix: str = EVAL_PREFIX,
) -> MetricKey | None:
    """Parse a key built by this module against the known names.

    Args:
        key: A flat metric key, e.g. `"eval_target_gender*race_tpr_female*black_2"`.
        tasks: Task names.
        attributes: Attribute names (single and intersectional).
        group_names: Group names per attribute; without them a per-attribute remainder is returned as the metric.
        prefix: The prefix the key must carry (`""` for none).

    Returns:
        The [`MetricKey`], or `None` when the key lacks the prefix. A key without a known task is a model-level
        figure (`metric` = the whole key without prefix).
    """
    body = without_prefix(key, prefix)
    if body is None:
        return None
    found = _strip_name(body, _longest_first(tasks))
    if found is None:
        return MetricKey(metric=body, prefix=prefix)
    task, rest = found
    found = _strip_name(rest, _longest_first(attributes))
    if found is not None:
        attr, remainder = found
        group = _parse_group(remainder, (group_names or {}).get(attr, ()))
        if group is not None:
            rate, name, class_id = group
            return MetricKey(rate, task, attr, name, class_id, prefix)
        return MetricKey(remainder, task, attr, prefix=prefix)
    return MetricKey(rest, task, prefix=prefix)


def attributes_in_keys(
    keys: Iterable[str], tasks: Sequence[str], candidates: Sequence[str], prefix: str = ""
) -> set[str]:
    """Which of the `candidates` attributes appear in any `{prefix}_{task}_{attr}_…` key."""
    starts = {attr: tuple(attribute_key(task, attr, "", prefix) for task in tasks) for attr in candidates}
    keys = list(keys)
    return {attr for attr, prefixes in starts.items() if any(key.startswith(prefixes) for key in keys)}
