"""Hub model cards with fairness reports, and pushing FairMTL models (full or PEFT adapters) to the Hub.

The card is rendered from `model_cards/fairmtl_card.md` (a Jinja template) with `huggingface_hub.ModelCard`:
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

import copy
import dataclasses
import json
import math
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import CommitInfo, EvalResult, HfApi, ModelCard, ModelCardData
from torch import nn
from transformers import TrainingArguments

from .configuration_fairmtl import INTERSECTION_SEPARATOR, FairMTLConfig
from .metrics import GAP_METRIC_TITLES
from .modeling_fairmtl import FairMTLModel
from .teacher import FAIRNESS_ACTION

__all__ = [
    "DEFAULT_TAGS",
    "last_eval_metrics",
    "parse_eval_metrics",
    "push_model_to_hub",
    "render_model_card",
    "save_model_card",
    "write_model_card",
]

DEFAULT_TAGS = ("fairness", "multi-task", "hf_fairmtl")
TEMPLATE_NAME = "fairmtl_card.md"
MISSING = "–"

# (metric key suffix, column title); `eval_{task}_{attr}_{suffix}`.
GAP_METRICS = tuple(GAP_METRIC_TITLES.items())
# (metric key stem, column title); `eval_{task}_{attr}_{stem}_{group}` (multi-class: `..._{group}_{class}`).
GROUP_METRICS = (("tpr", "TPR"), ("fpr", "FPR"), ("selection_rate", "Selection rate"))
# Per-group example count, `eval_{task}_{attr}_count_{group}`; shown next to the rates it qualifies.
COUNT_COLUMN = ("count", "Examples")
# Model-level summaries, `eval_{name}`.
OVERALL_METRICS = (
    ("mean_accuracy", "Mean accuracy over tasks"),
    ("mean_eo_violation", "Mean EO violation over tasks and attributes"),
    ("ARA", "ARA (accuracy relative to single-task models)"),
    ("AREO", "AREO (EO violation relative to single-task models)"),
)
# Gaps that also go into the model-index metadata (shown on the model page), with their display names.
MODEL_INDEX_GAPS = {key: GAP_METRIC_TITLES[key] for key in ("eo_violation", "tpr_gap", "fpr_gap", "dp_gap")}

STRATEGIES = {
    "vanilla": ("Vanilla MTL", "the task losses only, no fairness term"),
    "weighted": (
        "Weighted fairness",
        "each task's loss plus a fixed weight times its fairness loss; with demographic labels on only some tasks "
        "this is fairness transfer through the shared encoder (Aguirre & Dredze)",
    ),
    "mtaf": (
        "MTA-F",
        "fixed fairness weights, fairness on the negatives, task heads debiased on task-exclusive examples and the "
        "shared layers on the rest (Wang et al., KDD 2021)",
    ),
    "greedy": ("G-FMT", "each task trains on the larger of its accuracy and fairness losses"),
    "teacher": (
        "L2T-FMT",
        "a learned teacher picks per step and per task whether to train for accuracy or fairness (Roy & Ntoutsi)",
    ),
}
FAIRNESS_OBJECTIVES = {
    "robust_eo": ("Robust log-loss", "the worst group's log-loss on positives plus the worst group's on negatives"),
    "eps_deo": (
        "ε-differential equalized odds",
        "the largest log-ratio of smoothed group TPRs and FPRs, penalised above the auxiliary task's level",
    ),
    "loss_gap_eo": ("Loss-gap equalized odds", "per class, each group's loss distance from the class's mean loss"),
    "dp_gap": ("Demographic-parity gap", "the spread of the groups' positive prediction rates"),
}
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


def last_eval_metrics(log_history: Sequence[Mapping[str, Any]], metric_key_prefix: str = "eval") -> dict[str, Any]:
    """The metrics of the last evaluation in a `Trainer.state.log_history` (empty when there was none)."""
    marker = f"{metric_key_prefix}_"
    for entry in reversed(log_history):
        metrics = {key: value for key, value in entry.items() if key.startswith(marker)}
        if metrics:
            return metrics
    return {}


def parse_eval_metrics(
    config: FairMTLConfig, metrics: Mapping[str, Any] | None, metric_key_prefix: str = "eval"
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
        `{"accuracy": {task: value}, "overall": {name: value}, "attributes": {attr: {"intersectional": bool,
        "groups": [names], "gaps": {task: {metric: value}}, "group_rates": {task: {row: {metric: value}}}}}}`
        with only the figures present (and finite) in `metrics`. A group-rate row is a group name, or
        `"{group} / {class}"` for a multi-class task. Intersectional attributes found in the keys are included
        even when the config does not list them.
    """
    metrics = metrics or {}

    def lookup(*parts: str) -> float | None:
        return _finite(metrics.get("_".join(p for p in (metric_key_prefix, *parts) if p)))

    accuracy = {task: value for task in config.tasks if (value := lookup(task, "accuracy")) is not None}
    overall = {name: value for name, _ in OVERALL_METRICS if (value := lookup(name)) is not None}
    attributes: dict[str, Any] = {}
    for attr in _reported_attributes(config, metrics, metric_key_prefix):
        groups = config.group_names(attr)
        gaps: dict[str, dict[str, float]] = {}
        group_rates: dict[str, dict[str, dict[str, float]]] = {}
        for task in config.tasks:
            task_gaps = {m: v for m, _ in GAP_METRICS if (v := lookup(task, attr, m)) is not None}
            rates = {}
            for group in groups:
                count = lookup(task, attr, "count", group)
                for label, suffix in _class_rows(config, task, group):
                    row = {m: v for m, _ in GROUP_METRICS if (v := lookup(task, attr, m, suffix)) is not None}
                    if row and count is not None:
                        row["count"] = count
                    if row:
                        rates[label] = row
            if task_gaps:
                gaps[task] = task_gaps
            if rates:
                group_rates[task] = rates
        if gaps or group_rates:
            attributes[attr] = {
                "intersectional": INTERSECTION_SEPARATOR in attr,
                "groups": groups,
                "gaps": gaps,
                "group_rates": group_rates,
            }
    return {"accuracy": accuracy, "overall": overall, "attributes": attributes}


def _class_rows(config: FairMTLConfig, task: str, group: str) -> list[tuple[str, str]]:
    """(row label, metric key suffix) of a group: one row for a binary task (class 1 is the positive class),
    one per class (one-vs-rest) for a multi-class task."""
    num_classes = config.task_num_labels[task]
    if num_classes == 2:
        return [(group, group)]
    names = config.label_vocab.get(task) or [str(c) for c in range(num_classes)]
    return [(f"{group} / {names[c]}", f"{group}_{c}") for c in range(num_classes)]


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
            (`hf_fairmtl.teacher.FAIRNESS_ACTION` = fairness).
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
        template_path: Another Jinja template (defaults to `model_cards/fairmtl_card.md`).

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
                "intersectional": INTERSECTION_SEPARATOR in attr,
            }
            for attr in _described_attributes(fairmtl_config, parsed)
        ],
        strategy=_describe(strategy, STRATEGIES),
        fairness_objective=_describe(fairness_loss, FAIRNESS_OBJECTIVES),
        gradnorm=settings.get("gradnorm"),
        peft=peft,
        has_metrics=bool(parsed["accuracy"] or parsed["attributes"] or parsed["overall"]),
        overall_rows=[
            {"name": title, "value": _fmt(parsed["overall"][name])}
            for name, title in OVERALL_METRICS
            if name in parsed["overall"]
        ],
        eval_split=eval_split,
        accuracy_rows=[
            {"task": _md(task), "accuracy": _fmt(parsed["accuracy"].get(task))} for task in fairmtl_config.tasks
        ],
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


def push_model_to_hub(
    model: nn.Module,
    repo_id: str,
    card: ModelCard | None = None,
    *,
    eval_metrics: Mapping[str, Any] | None = None,
    tokenizer: Any = None,
    commit_message: str = "Upload FairMTL model",
    commit_description: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    merge_adapter: bool = False,
    api: HfApi | None = None,
    **card_kwargs: Any,
) -> CommitInfo:
    """Create the repo if needed and push the model, its card and (optionally) its tokenizer in one commit.

    A `FairMTLModel` is saved with `save_pretrained`: `config.json`, the safetensors weights and the
    `configuration_fairmtl.py`/`modeling_fairmtl.py` files that let `AutoModel.from_pretrained(repo,
    trust_remote_code=True)` load it without hf_fairmtl installed. A `PeftModel` is saved as an adapter (adapter
    weights, task heads, `fairmtl_config.json`; load it with `hf_fairmtl.peft_utils.load_peft_model(repo)`),
    or merged into a full model first with `merge_adapter=True`.

    Args:
        model: A `FairMTLModel` or a `PeftModel` around one.
        repo_id: Target model repo (`"user/name"`).
        card: The card to push; rendered with [`render_model_card`] from `eval_metrics` and `card_kwargs` if not
            given.
        eval_metrics: Metrics of the last evaluation, for a card rendered here.
        tokenizer: Saved next to the model when given.
        commit_message: Commit title.
        commit_description: Commit description.
        private: Visibility of a newly created repo.
        token: Hub token (defaults to the logged-in one / `HF_TOKEN`).
        revision: Branch to commit to.
        create_pr: Open a pull request instead of committing to the branch.
        merge_adapter: Push a PEFT model as a merged full model (the adapter merged into a copy of the model).
        api: The `HfApi` to use (e.g. one with another endpoint); a new one otherwise.
        **card_kwargs: Passed to [`render_model_card`] when `card` is not given.

    Returns:
        The `huggingface_hub.CommitInfo` of the commit.
    """
    is_adapter = _is_peft_model(model)
    if merge_adapter and is_adapter:
        # merge_and_unload rewrites the modules in place; the caller's PeftModel stays usable.
        model = copy.deepcopy(model).merge_and_unload()
        is_adapter = False
    api = api or HfApi(token=token)
    repo_url = api.create_repo(repo_id, private=private, exist_ok=True, token=token)
    if card is None:
        card = render_model_card(model, eval_metrics, repo_id=repo_url.repo_id, **card_kwargs)
    with tempfile.TemporaryDirectory() as folder:
        if is_adapter:
            from .peft_utils import save_peft_model

            save_peft_model(model, folder)
        else:
            model.save_pretrained(folder)
        if tokenizer is not None:
            tokenizer.save_pretrained(folder)
        # After saving: PEFT writes its own generic README.md, which this card replaces.
        save_model_card(folder, card)
        return api.upload_folder(
            repo_id=repo_url.repo_id,
            folder_path=folder,
            commit_message=commit_message,
            commit_description=commit_description,
            token=token,
            revision=revision,
            create_pr=create_pr,
        )


def _template_path() -> Path:
    # Package data, so an installed wheel renders cards too.
    return Path(__file__).resolve().parent / "model_cards" / TEMPLATE_NAME


def _fairmtl_config(config: FairMTLConfig | nn.Module) -> FairMTLConfig:
    return config if isinstance(config, FairMTLConfig) else _unwrap(config).config


def _is_peft_model(model: nn.Module) -> bool:
    # peft is optional: without it nothing can be a PeftModel.
    try:
        from .peft_utils import is_peft_model
    except ImportError:
        return False
    return is_peft_model(model)


def _unwrap(model: nn.Module) -> FairMTLModel:
    if isinstance(model, FairMTLModel):
        return model
    if _is_peft_model(model):
        return model.get_base_model()
    raise TypeError(f"Expected a FairMTLConfig, a FairMTLModel or a PeftModel around one, got {type(model).__name__}")


def _peft_summary(model: nn.Module | None) -> dict[str, Any] | None:
    if model is None or not _is_peft_model(model):
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
    for first in attrs:
        for second in attrs:
            name = f"{first}{INTERSECTION_SEPARATOR}{second}"
            if first == second or name in names or not _has_vocab(config, name):
                continue
            starts = tuple("_".join(p for p in (prefix, task, name) if p) + "_" for task in config.tasks)
            if any(key.startswith(starts) for key in metrics):
                names.append(name)
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
        if task in parsed["accuracy"]:
            add(task, "accuracy", f"Accuracy ({task})", parsed["accuracy"][task])
        for attr, figures in parsed["attributes"].items():
            for metric, title in MODEL_INDEX_GAPS.items():
                value = figures["gaps"].get(task, {}).get(metric)
                if value is not None:
                    add(task, metric, f"{title} ({task}, {attr})", value)
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
            fraction = sum(int(a) == FAIRNESS_ACTION for a in value) / steps if steps else None
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
            ("gradnorm_", settings.get("gradnorm")),
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
        count = sum(p.numel() for p in _unwrap(model).encoder.parameters())
        text += f", {count / 1e6:.1f} M parameters" if count >= 1e5 else f", {count} parameters"
    return text


def _class_names(config: FairMTLConfig, task: str) -> str:
    names = config.label_vocab.get(task)
    return ", ".join(_md(name) for name in names) if names else str(config.task_num_labels[task])


def _describe(name: str | None, table: dict[str, tuple[str, str]]) -> dict[str, str]:
    if not name:
        return {"title": "not recorded", "text": ""}
    title, text = table.get(name, (name, ""))
    return {"title": f"{title} (`{name}`)", "text": text}


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
