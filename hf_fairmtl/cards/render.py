"""Model cards with fairness reports: rendering from `trainer.evaluate()` metrics, saving as `README.md`.

The card is rendered from `templates/fairmtl_card.md` (a Jinja template, package data) with `huggingface_hub.ModelCard`:
per-task accuracy, per-attribute gap tables and per-group TPR/FPR tables parsed from `trainer.evaluate()` metrics,
the teacher's action summary, the training settings, intended use, limitations and citations. The metadata is in
the Hub's `model-index` format, so accuracy and the gaps show on the model page.

Trainer integration: `Trainer.push_to_hub` calls `self.create_model_card(**kwargs)` and then uploads `output_dir`;
a FairMTL trainer overrides `create_model_card` with a call to [`write_model_card`], e.g.

```python
def create_model_card(self, **kwargs):
    if self.is_world_process_zero():
        write_model_card(self.args.output_dir, self.model, last_eval_metrics(self.state.log_history),
                         training_args=self.args, teacher_summary=..., **kwargs)
```
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from torch import nn
from transformers import TrainingArguments

from ..configuration_fairmtl import FairMTLConfig
from ..metrics import GAP_METRIC_TITLES
from ..metrics.keys import (
    COUNT,
    EVAL_PREFIX,
    attribute_key,
    attributes_in_keys,
    group_key,
    intersection_name,
    is_intersectional,
    overall_key,
    task_key,
    with_prefix,
)
from ..utils import unwrap_model

__all__ = [
    "DEFAULT_TAGS",
    "last_eval_metrics",
    "parse_eval_metrics",
    "render_model_card",
    "save_model_card",
    "write_model_card",
]

DEFAULT_TAGS = ("fairness", "multi-task", "hf_fairmtl")
TEMPLATE_NAME = "fairmtl_card.md"
MISSING = "–"

# (metric, column title) of the keys of `hf_fairmtl.metrics.keys`: gaps `attribute_key(task, attr, metric)`,
# per-group rates `group_key(task, attr, rate, group[, class])`, counts `group_key(task, attr, "count", group)`.
GAP_METRICS = tuple(GAP_METRIC_TITLES.items())
GROUP_METRICS = (("tpr", "TPR"), ("fpr", "FPR"), ("selection_rate", "Selection rate"))
COUNT_COLUMN = (COUNT, "Examples")
# Per-task figures, `task_key(task, metric)`: shown next to the accuracy they qualify.
TASK_METRICS = ("accuracy", "balanced_accuracy", "majority_prediction_share", "collapsed")
# Model-level summaries, `overall_key(name)`.
OVERALL_METRICS = (
    ("mean_accuracy", "Mean accuracy over tasks"),
    ("mean_eo_violation", "Mean EO violation over tasks and attributes"),
    ("num_collapsed_tasks", "Collapsed tasks (one class predicted for at least 95 % of held-out rows)"),
    ("ARA", "ARA (accuracy relative to single-task models)"),
    ("AREO", "AREO (EO violation relative to single-task models)"),
    ("ARA_without_collapsed", "ARA without collapsed tasks"),
    ("AREO_without_collapsed", "AREO without collapsed tasks"),
)
# Gaps that also go into the model-index metadata (shown on the model page), with their display names.
MODEL_INDEX_GAPS = {key: GAP_METRIC_TITLES[key] for key in ("eo_violation", "tpr_gap", "fpr_gap", "dp_gap")}

# Hyperparameters worth a line in the card, from the standard TrainingArguments; every field a FairMTL training
# arguments class adds on top of TrainingArguments is listed as well.
STANDARD_SETTINGS = (
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "weight_decay",
    "warmup_ratio",
    "lr_scheduler_type",
    "seed",
)
_SECRET_HINTS = ("token", "secret", "password", "key")
_PEFT_DISPLAY_NAMES = {"LORA": "LoRA", "IA3": "IA³", "LOHA": "LoHa", "LOKR": "LoKr", "ADALORA": "AdaLoRA"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def last_eval_metrics(log_history: Sequence[Mapping[str, Any]], metric_key_prefix: str = EVAL_PREFIX) -> dict[str, Any]:
    """The metrics of the last evaluation in a `Trainer.state.log_history` (empty when there was none)."""
    marker = with_prefix("", metric_key_prefix)
    for entry in reversed(log_history):
        metrics = {key: value for key, value in entry.items() if key.startswith(marker)}
        if metrics:
            return metrics
    return {}


def parse_eval_metrics(
    config: FairMTLConfig, metrics: Mapping[str, Any] | None, metric_key_prefix: str = EVAL_PREFIX
) -> dict[str, Any]:
    """Sort `trainer.evaluate()` metrics into per-task accuracy and per-attribute gap and group figures.

    Keys are looked up from the config's task, attribute, group and class names rather than split on `_`,
    because those names may themselves contain underscores.

    Args:
        config: The model config (tasks, attributes, group vocabularies, intersections).
        metrics: Flat metrics as `hf_fairmtl.metrics.make_compute_metrics` names them (with the evaluation
            prefix): `eval_{task}_accuracy`, `eval_{task}_{attr}_eo_violation`, `eval_{task}_{attr}_tpr_{group}`
            (multi-class: `..._tpr_{group}_{class_id}`), `eval_{task}_{attr}_count_{group}`; `attr` may be
            intersectional (`gender*race`).
        metric_key_prefix: The prefix given to `evaluate` (`"eval"`, `"test"`, or `""` for none).

    Returns:
        `{"accuracy": {task: value}, "tasks": {task: {figure: value}}, "overall": {name: value},
        "attributes": {attr: {"intersectional": bool,
        "groups": [names], "gaps": {task: {metric: value}}, "group_rates": {task: {row: {metric: value}}}}}}`
        with only the figures present (and finite) in `metrics`; `tasks` holds the per-task figures of
        `TASK_METRICS` (balanced accuracy, majority-prediction share, collapsed). A group-rate row is a group name, or
        `"{group} / {class}"` for a multi-class task. Intersectional attributes found in the keys are included
        even when the config does not list them.
    """
    metrics = metrics or {}

    def lookup(key: str) -> float | None:
        return _finite(metrics.get(key))

    prefix = metric_key_prefix
    accuracy = {
        task: value for task in config.tasks if (value := lookup(task_key(task, "accuracy", prefix))) is not None
    }
    task_figures = {
        task: {m: v for m in TASK_METRICS if (v := lookup(task_key(task, m, prefix))) is not None}
        for task in config.tasks
    }
    overall = {name: value for name, _ in OVERALL_METRICS if (value := lookup(overall_key(name, prefix))) is not None}
    attributes: dict[str, Any] = {}
    for attr in _reported_attributes(config, metrics, prefix):
        gaps: dict[str, dict[str, float]] = {}
        group_rates: dict[str, dict[str, dict[str, float]]] = {}
        for task in config.tasks:
            task_gaps = {
                m: v for m, _ in GAP_METRICS if (v := lookup(attribute_key(task, attr, m, prefix))) is not None
            }
            rates = _group_rows(config, task, attr, lookup, prefix)
            if task_gaps:
                gaps[task] = task_gaps
            if rates:
                group_rates[task] = rates
        if gaps or group_rates:
            attributes[attr] = {
                "intersectional": is_intersectional(attr),
                "groups": config.group_names(attr),
                "gaps": gaps,
                "group_rates": group_rates,
            }
    tasks = {task: figures for task, figures in task_figures.items() if figures}
    return {"accuracy": accuracy, "tasks": tasks, "overall": overall, "attributes": attributes}


def _group_rows(config: FairMTLConfig, task: str, attr: str, lookup: Any, prefix: str) -> dict[str, dict[str, float]]:
    """Per-group rate rows of one task and attribute: row label -> {rate: value, "count": n}."""
    rates = {}
    for group in config.group_names(attr):
        count = lookup(group_key(task, attr, COUNT, group, prefix=prefix))
        for label, class_id in _class_rows(config, task, group):
            row = {
                m: v
                for m, _ in GROUP_METRICS
                if (v := lookup(group_key(task, attr, m, group, class_id, prefix))) is not None
            }
            if row and count is not None:
                row[COUNT] = count
            if row:
                rates[label] = row
    return rates


def _class_rows(config: FairMTLConfig, task: str, group: str) -> list[tuple[str, int | None]]:
    """(row label, class id of the key) of a group: one row for a binary task (class 1 is the positive class, no
    class in the key), one per class (one-vs-rest) for a multi-class task."""
    num_classes = config.task_num_labels[task]
    if num_classes == 2:
        return [(group, None)]
    names = config.label_vocab.get(task) or [str(c) for c in range(num_classes)]
    return [(f"{group} / {names[c]}", c) for c in range(num_classes)]


def render_model_card(
    config: FairMTLConfig | nn.Module,
    eval_metrics: Mapping[str, Any] | None = None,
    training_args: TrainingArguments | Mapping[str, Any] | None = None,
    teacher_summary: Any = None,
    base_model: str | None = None,
    datasets: str | Sequence[str] | Mapping[str, str] | None = None,
    *,
    model_name: str | None = None,
    repo_id: str | None = None,
    eval_split: str | None = None,
    metric_key_prefix: str = "eval",
    strategy: str | None = None,
    fairness_loss: str | None = None,
    language: str | list[str] | None = None,
    license: str | None = None,
    tags: Sequence[str] | None = None,
    template_path: str | os.PathLike | None = None,
) -> ModelCard:
    """Render the FairMTL model card.

    Args:
        config: The [`FairMTLConfig`], or the model (a `FairMTLModel` or a `PeftModel` around one; then the card
            also describes the adapter and its metadata says `library_name: peft`).
        eval_metrics: Metrics of the last evaluation (`trainer.evaluate()` or [`last_eval_metrics`]).
        training_args: `FairMTLTrainingArguments` (or any `TrainingArguments`) or a dict of settings; gives the
            strategy, fairness loss and GradNorm flag when not passed explicitly, and the settings table.
        teacher_summary: The L2T-FMT `TeacherCallback`, or per task how often the teacher chose fairness: a
            fraction (what `TeacherCallback.summary()` returns), a dict with `fairness_fraction` (and optionally
            `steps`) or with decision counts `accuracy` and `fairness`, or the sequence of actions taken
            (`hf_fairmtl.strategies.FAIRNESS_ACTION` = fairness).
        base_model: Hub id of the pretrained encoder (metadata `base_model`); defaults to the adapter's base or the
            config's `encoder_name_or_path` when that is a Hub id (a local path is not valid metadata).
        datasets: Hub dataset id(s) trained and evaluated on, or a mapping task -> dataset id.
        model_name: Card title and model-index name; defaults to the repo name or `"fairmtl-model"`.
        repo_id: Where the model will live; used in the usage example.
        eval_split: Name of the evaluated split, for the text and the model-index.
        metric_key_prefix: Prefix of the metric keys (`"eval"` by default).
        strategy: Training strategy (`vanilla`, `weighted`, `mtaf`, `greedy`, `teacher`) if not in `training_args`.
        fairness_loss: Registry name of the fairness loss if not in `training_args`.
        language: Language code(s) of a text model.
        license: License id.
        tags: Extra tags; `fairness`, `multi-task` and `hf_fairmtl` are always set.
        template_path: Another Jinja template (defaults to `templates/fairmtl_card.md` in this package).

    Returns:
        A `huggingface_hub.ModelCard`; `card.save(path)` writes it, `card.push_to_hub(repo_id)` uploads it.
    """
    model = config if isinstance(config, nn.Module) else None
    fairmtl_config = _fairmtl_config(config)
    peft = _peft_summary(model)
    parsed = parse_eval_metrics(fairmtl_config, eval_metrics, metric_key_prefix)
    settings = _settings_dict(training_args)
    strategy = strategy or _as_text(settings.get("strategy"))
    fairness_loss = fairness_loss or _as_text(settings.get("fairness_loss"))
    model_name = model_name or (repo_id.split("/")[-1] if repo_id else "fairmtl-model")
    if base_model is None:
        candidate = peft["base_model"] if peft else None
        base_model = next(
            (c for c in (candidate, fairmtl_config.encoder_name_or_path) if c and _looks_like_hub_id(c)), None
        )
    dataset_ids = _dataset_ids(datasets)
    card_data = ModelCardData(
        model_name=model_name,
        base_model=base_model,
        datasets=dataset_ids or None,
        language=language,
        license=license,
        library_name="peft" if peft else "transformers",
        metrics=["accuracy"],
        tags=list(dict.fromkeys([*DEFAULT_TAGS, *(["peft", peft["tag"]] if peft else []), *(tags or [])])),
        eval_results=_eval_results(fairmtl_config, parsed, datasets, eval_split) or None,
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path or _template_path()),
        model_name=model_name,
        encoder_kind=fairmtl_config.encoder_type,
        encoder_description=_encoder_description(fairmtl_config, model, base_model),
        tasks=[{"name": _md(task), "classes": _class_names(fairmtl_config, task)} for task in fairmtl_config.tasks],
        attributes=[
            {
                "name": _md(attr),
                "groups": [_md(group) for group in fairmtl_config.group_names(attr)],
                "intersectional": is_intersectional(attr),
            }
            for attr in _described_attributes(fairmtl_config, parsed)
        ],
        **_method_context(strategy, fairness_loss, _weighting_name(settings)),
        peft=peft,
        has_metrics=bool(parsed["accuracy"] or parsed["attributes"] or parsed["overall"]),
        overall_rows=[
            {"name": title, "value": _fmt(parsed["overall"][name])}
            for name, title in OVERALL_METRICS
            if name in parsed["overall"]
        ],
        eval_split=eval_split,
        accuracy_rows=_accuracy_rows(fairmtl_config, parsed),
        collapsed_tasks=[_md(task) for task in fairmtl_config.tasks if parsed["tasks"].get(task, {}).get("collapsed")],
        fairness_sections=_fairness_sections(fairmtl_config, parsed),
        teacher_rows=_teacher_rows(teacher_summary, fairmtl_config.tasks),
        training_rows=_training_rows(settings),
        usage_code=_usage_code(repo_id or model_name, peft is not None),
    )


def save_model_card(save_directory: str | os.PathLike, card: ModelCard) -> Path:
    """Write `card` as `README.md` in `save_directory` (created if needed); returns the file path."""
    path = Path(save_directory) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    card.save(path)
    return path


def write_model_card(
    output_dir: str | os.PathLike,
    config: FairMTLConfig | nn.Module,
    eval_metrics: Mapping[str, Any] | None = None,
    *,
    finetuned_from: str | None = None,
    dataset: str | Sequence[str] | None = None,
    dataset_tags: str | Sequence[str] | None = None,
    tasks: Any = None,
    dataset_args: Any = None,
    **card_kwargs: Any,
) -> ModelCard:
    """Render the card and save it as `output_dir/README.md`; what a trainer's `create_model_card` calls.

    Takes the arguments of [`render_model_card`], plus the keyword arguments `Trainer.create_model_card` and
    `Trainer.push_to_hub` forward, so an override can pass its `**kwargs` through: `finetuned_from` is the
    `base_model`, `dataset`/`dataset_tags` the `datasets`; `tasks` and `dataset_args` have no place in this card
    (its tasks come from the config) and are ignored.
    """
    del tasks, dataset_args
    card_kwargs.setdefault("base_model", finetuned_from)
    card_kwargs.setdefault("datasets", dataset if dataset is not None else dataset_tags)
    card = render_model_card(config, eval_metrics, **card_kwargs)
    save_model_card(output_dir, card)
    return card


def _template_path() -> Path:
    # Package data, so an installed wheel renders cards too.
    return Path(__file__).resolve().parent / "templates" / TEMPLATE_NAME


def _fairmtl_config(config: FairMTLConfig | nn.Module) -> FairMTLConfig:
    return config if isinstance(config, FairMTLConfig) else _fairmtl_model(config).config


def is_adapter_model(model: nn.Module) -> bool:
    """Whether `model` is a `peft.PeftModel` (False without peft installed: then nothing can be one)."""
    try:
        from ..peft_utils import is_peft_model
    except ImportError:
        return False
    return is_peft_model(model)


def _fairmtl_model(model: nn.Module) -> nn.Module:
    base = unwrap_model(model)
    if not isinstance(getattr(base, "config", None), FairMTLConfig):
        raise TypeError(
            f"Expected a FairMTLConfig, a FairMTLModel or a PeftModel around one, got {type(model).__name__}"
        )
    return base


def _peft_summary(model: nn.Module | None) -> dict[str, Any] | None:
    if model is None or not is_adapter_model(model):
        return None
    peft_config = model.peft_config[model.active_adapter]
    targets = peft_config.target_modules
    if isinstance(targets, str):
        target_text = f"the encoder modules matching `{targets}`"
    else:
        leaves = sorted({name.rsplit(".", 1)[-1] for name in targets or ()})
        target_text = f"{len(targets or ())} encoder layers ({', '.join(f'`{leaf}`' for leaf in leaves)})"
    method = str(getattr(peft_config.peft_type, "value", peft_config.peft_type))
    return {
        "method": _PEFT_DISPLAY_NAMES.get(method, method),
        "tag": method.lower(),
        "rank": getattr(peft_config, "r", None),
        "targets": target_text,
        "base_model": peft_config.base_model_name_or_path,
    }


def _reported_attributes(config: FairMTLConfig, metrics: Mapping[str, Any], prefix: str) -> list[str]:
    # Configured attributes first; then intersections of two attributes that only the metrics mention.
    names = list(config.group_attribute_names)
    attrs = config.protected_attributes
    pairs = [intersection_name(first, second) for first in attrs for second in attrs if first != second]
    candidates = [name for name in pairs if name not in names and _has_vocab(config, name)]
    mentioned = attributes_in_keys(metrics, config.tasks, candidates, prefix)
    names += [name for name in candidates if name in mentioned]
    return [name for name in names if _has_vocab(config, name)]


def _described_attributes(config: FairMTLConfig, parsed: dict[str, Any]) -> list[str]:
    names = [attr for attr in config.group_attribute_names if _has_vocab(config, attr)]
    return names + [attr for attr in parsed["attributes"] if attr not in names]


def _has_vocab(config: FairMTLConfig, attr: str) -> bool:
    return all(config.group_vocab.get(part) for part in config.attribute_components(attr))


def _fairness_sections(config: FairMTLConfig, parsed: dict[str, Any]) -> list[dict[str, Any]]:
    sections = []
    # Single attributes before intersectional ones, each in config order.
    ordered = sorted(parsed["attributes"].items(), key=lambda item: item[1]["intersectional"])
    for attr, figures in ordered:
        gap_columns = [(m, t) for m, t in GAP_METRICS if any(m in g for g in figures["gaps"].values())]
        tables = []
        for task in config.tasks:
            rates = figures["group_rates"].get(task)
            if not rates:
                continue
            columns = [(m, t) for m, t in (*GROUP_METRICS, COUNT_COLUMN) if any(m in r for r in rates.values())]
            tables.append(
                {
                    "task": _md(task),
                    "multiclass": config.task_num_labels[task] > 2,
                    "columns": [{"title": t} for _, t in columns],
                    "rows": [
                        {
                            "group": _md(row),
                            "values": [_fmt(rates[row].get(m), integer=m == "count") for m, _ in columns],
                        }
                        for row in rates
                    ],
                }
            )
        sections.append(
            {
                "name": _md(attr),
                "intersectional": figures["intersectional"],
                "summary_columns": [{"title": t} for _, t in gap_columns],
                "summary_rows": [
                    {"task": _md(task), "values": [_fmt(figures["gaps"][task].get(m)) for m, _ in gap_columns]}
                    for task in config.tasks
                    if task in figures["gaps"]
                ],
                "group_tables": tables,
            }
        )
    return sections


def _eval_results(
    config: FairMTLConfig,
    parsed: dict[str, Any],
    datasets: str | Sequence[str] | Mapping[str, str] | None,
    eval_split: str | None,
) -> list[EvalResult]:
    task_type = "text-classification" if config.encoder_type == "transformer" else "tabular-classification"
    results = []
    # The model-index groups results by task *type* and dataset, not task name: every metric name carries its task
    # (and `task_name` stays unset, or the group would show one task's name for all of them).

    def add(task: str, metric_type: str, metric_name: str, value: float) -> None:
        dataset = _task_dataset(datasets, task)
        results.append(
            EvalResult(
                task_type=task_type,
                dataset_type=dataset or "custom",
                dataset_name=dataset or "held-out evaluation data",
                dataset_split=eval_split,
                metric_type=metric_type,
                metric_name=metric_name,
                metric_value=value,
            )
        )

    for task in config.tasks:
        figures_of_task = parsed["tasks"].get(task, {})
        # A collapsed task's small gaps must not read as fairness on the model page either.
        flag = ", collapsed: one class predicted" if figures_of_task.get("collapsed") else ""
        if task in parsed["accuracy"]:
            add(task, "accuracy", f"Accuracy ({task})", parsed["accuracy"][task])
        if "balanced_accuracy" in figures_of_task:
            add(task, "balanced_accuracy", f"Balanced accuracy ({task})", figures_of_task["balanced_accuracy"])
        for attr, figures in parsed["attributes"].items():
            for metric, title in MODEL_INDEX_GAPS.items():
                value = figures["gaps"].get(task, {}).get(metric)
                if value is not None:
                    add(task, metric, f"{title} ({task}, {attr}{flag})", value)
    return results


def _dataset_ids(datasets: str | Sequence[str] | Mapping[str, str] | None) -> list[str]:
    if datasets is None:
        return []
    if isinstance(datasets, str):
        return [datasets]
    values = datasets.values() if isinstance(datasets, Mapping) else datasets
    return list(dict.fromkeys(values))


def _task_dataset(datasets: str | Sequence[str] | Mapping[str, str] | None, task: str) -> str | None:
    if isinstance(datasets, Mapping):
        return datasets.get(task)
    ids = _dataset_ids(datasets)
    # With several datasets and no mapping there is no telling which one a task was evaluated on.
    return ids[0] if len(ids) == 1 else None


def _teacher_rows(summary: Any, tasks: list[str]) -> list[dict[str, str]]:
    if summary is None:
        return []
    if callable(getattr(summary, "summary", None)):
        # A TeacherCallback: its per-task fractions, over the decisions in its history.
        decisions = len(summary.action_history)
        summary = {task: {"fairness_fraction": value, "steps": decisions} for task, value in summary.summary().items()}
    rows = []
    for task in [*tasks, *(t for t in summary if t not in tasks)]:
        if task not in summary:
            continue
        value = summary[task]
        steps: float | None = None
        if isinstance(value, Mapping):
            if "fairness_fraction" in value:
                fraction, steps = value["fairness_fraction"], value.get("steps")
            else:
                fairness, accuracy = float(value.get("fairness", 0)), float(value.get("accuracy", 0))
                steps = fairness + accuracy
                fraction = fairness / steps if steps else None
        elif isinstance(value, Sequence):
            steps = len(value)
            fraction = _fairness_share(value)
        else:
            fraction = value
        fraction = _finite(fraction)
        rows.append(
            {
                "task": _md(task),
                "fraction": MISSING if fraction is None else f"{fraction:.1%}",
                "steps": MISSING if steps is None else f"{int(steps)}",
            }
        )
    return rows


def _fairness_share(actions: Sequence[Any]) -> float | None:
    """Share of a sequence of teacher actions that chose fairness (`None` when empty)."""
    from ..strategies import FAIRNESS_ACTION  # imported here: the strategies import the trainer's parts

    return sum(int(a) == FAIRNESS_ACTION for a in actions) / len(actions) if actions else None


def _settings_dict(training_args: TrainingArguments | Mapping[str, Any] | None) -> dict[str, Any]:
    if training_args is None:
        return {}
    if hasattr(training_args, "to_dict"):
        return dict(training_args.to_dict())
    return dict(training_args)


def _training_rows(settings: dict[str, Any]) -> list[dict[str, str]]:
    base_fields = {field.name for field in dataclasses.fields(TrainingArguments)}
    extra = [name for name in settings if name not in base_fields and not name.startswith("_")]
    # Settings of a component that did not run (the teacher under another strategy, GradNorm when off) are noise.
    unused = tuple(
        prefix
        for prefix, active in (
            ("teacher_", _as_text(settings.get("strategy")) == "teacher"),
            ("gradnorm_", _weighting_name(settings) == "gradnorm"),
        )
        if not active
    )
    rows = []
    for name in [*(n for n in STANDARD_SETTINGS if n in settings), *extra]:
        value = settings[name]
        if value is None or name.startswith(unused) or any(hint in name.lower() for hint in _SECRET_HINTS):
            continue
        rows.append({"name": name, "value": _setting_text(value)})
    return rows


def _setting_text(value: Any) -> str:
    value = getattr(value, "value", value)  # enums (scheduler type, strategies)
    if isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, (dict, list, tuple)):
        text = json.dumps(value, default=str)
    else:
        text = str(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= 120 else text[:117] + "..."


def _encoder_description(config: FairMTLConfig, model: nn.Module | None, base_model: str | None) -> str:
    if config.encoder_type == "transformer":
        encoder = config.encoder
        # A published card names where the encoder came from; a local folder would mean nothing to a reader.
        origin = config.encoder_name_or_path
        if origin and not _looks_like_hub_id(origin):
            origin = base_model or "a local checkpoint"
        source = f"`{origin}`" if origin else "built from a config"
        layers = encoder.get("num_hidden_layers")
        shape = [f"{layers} layer{'s' if layers != 1 else ''}"] if layers else []
        shape += [f"hidden size {encoder['hidden_size']}"] if encoder.get("hidden_size") else []
        text = f"{encoder['model_type']} ({'; '.join([source, *shape])}), mean-pooled"
    else:
        text = f"tabular MLP over {config.num_features} features (hidden sizes {config.tabular_hidden_sizes})"
    if model is not None:
        # Under PEFT this counts the frozen base weights and the adapter's.
        count = sum(p.numel() for p in _fairmtl_model(model).encoder.parameters())
        text += f", {count / 1e6:.1f} M parameters" if count >= 1e5 else f", {count} parameters"
    return text


def _class_names(config: FairMTLConfig, task: str) -> str:
    names = config.label_vocab.get(task)
    return ", ".join(_md(name) for name in names) if names else str(config.task_num_labels[task])


def _registry(kind: str) -> Mapping[str, type]:
    # Imported here: the registries' modules import the trainer's building blocks, which import this module.
    if kind == "strategy":
        from ..strategies import STRATEGIES

        return STRATEGIES
    if kind == "weighting":
        from ..weighting import WEIGHTINGS

        return WEIGHTINGS
    from ..losses import FAIRNESS_LOSSES

    return FAIRNESS_LOSSES


def describe_component(kind: str, name: str | None) -> dict[str, Any]:
    """Title, description and BibTeX citation of a registered strategy, fairness loss or task weighting.

    Read from the registered class (`title`, `description`, `citation` class attributes, TRL's `_name`/`_paper`
    pattern), so a user's own registered component is described in the card like a built-in one.

    Args:
        kind: `"strategy"`, `"loss"` or `"weighting"`.
        name: The registry name; `None` when the training settings do not record it.

    Returns:
        `{"title": "Title (`name`)", "text": description, "citation": BibTeX or None}`; a name that is not
        registered is shown as is, without description.
    """
    if not name:
        return {"title": "not recorded", "text": "", "citation": None}
    cls = _registry(kind).get(name)
    title = getattr(cls, "title", "")
    return {
        "title": f"{title} (`{name}`)" if title else f"`{name}`",
        "text": getattr(cls, "description", "") or "",
        "citation": getattr(cls, "citation", None) or None,
    }


def _weighting_name(settings: Mapping[str, Any]) -> str | None:
    """The task weighting of the settings; `gradnorm=True` (the alias of `weighting="gradnorm"`) included."""
    name = _as_text(settings.get("weighting"))
    if settings.get("gradnorm") and name in (None, "equal"):
        return "gradnorm"
    if name is None and "gradnorm" in settings:
        return "equal"
    return name


def _method_context(strategy: str | None, fairness_loss: str | None, weighting: str | None) -> dict[str, Any]:
    """Template variables describing the method: strategy, fairness objective, task weighting, citations."""
    described = {
        "strategy": describe_component("strategy", strategy),
        "fairness_objective": describe_component("loss", fairness_loss),
        "weighting": describe_component("weighting", weighting) if weighting else None,
    }
    citations = [part["citation"] for part in described.values() if part and part["citation"]]
    return {**described, "citations": list(dict.fromkeys(c.strip() for c in citations))}


def _accuracy_rows(config: FairMTLConfig, parsed: dict[str, Any]) -> list[dict[str, str]]:
    rows = []
    for task in config.tasks:
        figures = parsed["tasks"].get(task, {})
        share = figures.get("majority_prediction_share")
        collapsed = figures.get("collapsed")
        rows.append(
            {
                "task": _md(task),
                "accuracy": _fmt(parsed["accuracy"].get(task)),
                "balanced_accuracy": _fmt(figures.get("balanced_accuracy")),
                "majority_share": MISSING if share is None else f"{share:.1%}",
                "collapsed": MISSING if collapsed is None else ("**yes**" if collapsed else "no"),
            }
        )
    return rows


def _usage_code(repo: str, is_adapter: bool) -> str:
    if is_adapter:
        return (
            "from hf_fairmtl.peft_utils import load_peft_model\n\n"
            f'model = load_peft_model("{repo}")  # base model from adapter_config.json, adapter and heads from here'
        )
    return (
        "from transformers import AutoModel\n\n"
        f'model = AutoModel.from_pretrained("{repo}", trust_remote_code=True)  # or `import hf_fairmtl` first'
    )


def _looks_like_hub_id(name: str) -> bool:
    # A local folder is not valid `base_model` metadata, whatever its name.
    return bool(_HUB_ID.match(name)) and not os.path.exists(name)


def _as_text(value: Any) -> str | None:
    value = getattr(value, "value", value)
    return None if value is None else str(value)


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _md(text: str) -> str:
    """`text` escaped for Markdown: group names such as `female*black` must not turn into emphasis or split a
    table cell."""
    return re.sub(r"([\\`*_|<>\[\]])", r"\\\1", str(text))


def _fmt(value: float | None, integer: bool = False) -> str:
    if value is None:
        return MISSING
    return f"{value:.0f}" if integer else f"{value:.4f}"
