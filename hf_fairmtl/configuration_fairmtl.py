"""Configuration of a fairness-aware multi-task model.

This file is copied next to checkpoints by ``save_pretrained`` and loaded with
``trust_remote_code=True`` where ``hf_fairmtl`` is not installed, so it imports nothing
from ``hf_fairmtl``.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from transformers import PretrainedConfig

INTERSECTION_SEPARATOR = "*"
CONFIG_FILE = "config.json"
# The inference pipeline shipped with every checkpoint (`pipelines.py`, copied next to the weights because
# `pipeline_class` below imports it): `config.json` names it in `custom_pipelines`, so
# `transformers.pipeline(model=DIR, trust_remote_code=True)` finds it where hf_fairmtl is not installed.
PIPELINE_TASK = "fair-multitask-classification"
PIPELINE_SPEC = {"impl": "pipelines.FairMTLClassificationPipeline", "pt": ["AutoModel"], "type": "multimodal"}


def _suggest(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=3, cutoff=0.6)
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?" if close else ""


class FairMTLConfig(PretrainedConfig):
    """Configuration for [`FairMTLModel`]: tasks, protected attributes, encoder and heads.

    Args:
        tasks (`list[str]`): Task names; their order is the order of `labels[:, t]` and of `logits`.
        num_labels (`dict[str, int]`, *optional*): Classes per task (default 2 for every task).
            Stored as `task_num_labels` because `PretrainedConfig.num_labels` is a single integer.
        label_vocab (`dict[str, list[str]]`, *optional*): Class names per task, index = class id.
            Gives `num_labels` when that is not given. `fit_vocabularies(sources)` returns it.
        task_id2label (`dict[str, dict[int, str]]`, *optional*): The same names as per-task
            `id2label` maps (`{"sentiment": {0: "neg", 1: "pos"}}`), ids `0..C-1`; stored as `label_vocab`.
            Read back as `config.task_id2label` / `config.task_label2id`, which name every class of every task
            (`"0"`, `"1"`, ... where no names were given).
        task_label2id (`dict[str, dict[str, int]]`, *optional*): The inverse maps; checked against the names.
        protected_attributes (`list[str]`, *optional*): Attribute names; their order is the order of
            `group_labels[:, a]`.
        group_vocab (`dict[str, list[str]]`, *optional*): Group names per attribute, index = group id; required
            for every protected attribute (the metrics, losses and cards name and count groups by it).
        intersections (`list[list[str]]`, *optional*): Attribute combinations evaluated (and usable by
            fairness losses) as intersectional attributes named `"gender*race"`.
        encoder (`dict` or `str`, *optional*): A transformers encoder: a config dict with `model_type`
            (the encoder is built from it with random weights), or a name/path of a pretrained encoder
            (its config is resolved and stored; weights load in `FairMTLModel.from_encoder`).
            Leave `None` for the tabular encoder.
        num_features (`int`, *optional*): Width of the `features` vector of the tabular MLP encoder.
        tabular_hidden_sizes (`list[int]`, *optional*): Hidden widths of the tabular MLP encoder.
        head_hidden_size (`int`, *optional*): Hidden width of each task head; `None` for a linear head.
        classifier_dropout (`float`): Dropout before each task head.
        feature_encoding (`dict`, *optional*): Fitted encoding of raw tabular rows (written by the data
            adapters) so a checkpoint encodes raw rows the same way it was trained.
        postprocessing (`dict`, *optional*): Group-specific randomised thresholds per binary task, written by
            `hf_fairmtl.postprocessing.fit_postprocessing`: `{task: {attribute: {"constraint": ..., "groups":
            {group name: {"thresholds": [...], "weights": [...], "p_ignore": q, "constant": c}}}}}`, one single
            attribute per task. `FairMTLModel.predict_labels` applies them when `group_labels` are passed.
    """

    model_type = "fairmtl"

    def __init__(
        self,
        tasks: list[str] | None = None,
        num_labels: dict[str, int] | int | None = None,
        label_vocab: dict[str, list[str]] | None = None,
        protected_attributes: list[str] | None = None,
        group_vocab: dict[str, list[str]] | None = None,
        intersections: list[list[str]] | None = None,
        encoder: dict[str, Any] | str | None = None,
        num_features: int | None = None,
        tabular_hidden_sizes: list[int] | None = None,
        head_hidden_size: int | None = None,
        classifier_dropout: float = 0.1,
        feature_encoding: dict[str, Any] | None = None,
        postprocessing: dict[str, Any] | None = None,
        task_num_labels: dict[str, int] | None = None,
        encoder_name_or_path: str | None = None,
        task_id2label: Mapping[str, Mapping[int | str, str]] | None = None,
        task_label2id: Mapping[str, Mapping[str, int]] | None = None,
        **kwargs: Any,
    ) -> None:
        self.tasks = list(tasks or [])
        self.label_vocab = {task: list(names) for task, names in (label_vocab or {}).items()}
        if isinstance(num_labels, dict):
            task_num_labels = num_labels
        elif isinstance(num_labels, int):
            task_num_labels = dict.fromkeys(self.tasks, num_labels)
        if task_num_labels is None:
            task_num_labels = {}
        self._check_task_keys("num_labels", task_num_labels)
        self._merge_id2label(task_id2label, task_label2id)
        self.task_num_labels = {
            task: int(task_num_labels.get(task, len(self.label_vocab.get(task, ())) or 2)) for task in self.tasks
        }
        self.protected_attributes = list(protected_attributes or [])
        self.group_vocab = {attr: list(names) for attr, names in (group_vocab or {}).items()}
        self.intersections = [list(combo) for combo in (intersections or [])]
        self.encoder_name_or_path = encoder_name_or_path
        if isinstance(encoder, (str, os.PathLike)):
            self.encoder_name_or_path = str(encoder)
            encoder = _resolve_encoder_config(self.encoder_name_or_path)
        self.encoder = dict(encoder) if encoder is not None else None
        self.num_features = num_features
        self.tabular_hidden_sizes = list(tabular_hidden_sizes or [64, 64])
        self.head_hidden_size = head_hidden_size
        self.classifier_dropout = classifier_dropout
        self.feature_encoding = feature_encoding
        kwargs["custom_pipelines"] = _custom_pipelines(kwargs.get("custom_pipelines"))
        if not kwargs["custom_pipelines"]:
            del kwargs["custom_pipelines"]
        self.postprocessing = postprocessing
        super().__init__(**kwargs)
        # The model pads with its encoder's padding id; declaring it keeps Trainer from "aligning" the config with
        # the tokenizer (and warning about it) at every run.
        if self.encoder is not None and getattr(self, "pad_token_id", None) is None:
            self.pad_token_id = self.encoder.get("pad_token_id")
        self._validate()

    @classmethod
    def get_config_dict(
        cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """As `PretrainedConfig.get_config_dict`, but a folder without `config.json` is an error naming the file.

        (transformers returns an empty dict there, which would surface as "`tasks` is empty".)
        """
        subfolder = kwargs.get("subfolder") or ""
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        if not config_dict:
            path = os.path.join(str(pretrained_model_name_or_path), subfolder, CONFIG_FILE)
            raise OSError(
                f"No {CONFIG_FILE} found at {path}: a FairMTL checkpoint folder holds the {CONFIG_FILE} (and weights) "
                "that `save_pretrained` / `Trainer.save_model` write; check the path"
            )
        return config_dict, kwargs

    def to_dict(self) -> dict[str, Any]:
        """As `PretrainedConfig.to_dict`, always naming the shipped pipeline in `custom_pipelines`."""
        output = super().to_dict()
        output["custom_pipelines"] = {**(output.get("custom_pipelines") or {}), PIPELINE_TASK: dict(PIPELINE_SPEC)}
        return output

    @property
    def task_id2label(self) -> dict[str, dict[int, str]]:
        """Class id -> name per task (`label_vocab` names, `"0"`, `"1"`, ... where none were given)."""
        return {task: dict(enumerate(self.class_names(task))) for task in self.tasks}

    @property
    def task_label2id(self) -> dict[str, dict[str, int]]:
        """Class name -> id per task, the inverse of `task_id2label`."""
        return {task: {name: i for i, name in enumerate(self.class_names(task))} for task in self.tasks}

    def class_names(self, task: str) -> list[str]:
        """Names of a task's classes in id order (`label_vocab[task]`, else `"0"`, `"1"`, ...)."""
        if task not in self.task_num_labels:
            raise ValueError(f"Unknown task {task!r}, not in tasks {self.tasks}{_suggest(task, self.tasks)}")
        return list(self.label_vocab.get(task) or [str(i) for i in range(self.task_num_labels[task])])

    def group_label_ids(self, groups: Mapping[str, Any] | list[Any] | tuple[Any, ...] | None) -> list[int]:
        """`group_labels` ids `[A]` of one row, from `{attribute: group name or id}` or a list in attribute order.

        Attributes left out, `None` and negative ids are unknown (-1).

        Raises:
            ValueError: An unknown attribute or group name, an id outside the vocabulary, or a list of the wrong
                length.
        """
        attributes = self.protected_attributes
        if groups is None:
            return [-1] * len(attributes)
        if not isinstance(groups, Mapping):
            if len(groups) != len(attributes):
                raise ValueError(f"group_labels {list(groups)} must have one entry per attribute {attributes}")
            groups = dict(zip(attributes, groups, strict=True))
        unknown = [attr for attr in groups if attr not in attributes]
        if unknown:
            raise ValueError(
                f"group_labels names unknown protected attribute {unknown[0]!r}, not in protected_attributes "
                f"{attributes}{_suggest(unknown[0], attributes)}"
            )
        return [self._group_id(attr, groups.get(attr)) for attr in attributes]

    def _group_id(self, attr: str, value: Any) -> int:
        vocab = self.group_vocab[attr]
        if value is None or (isinstance(value, float) and value != value):
            return -1
        if isinstance(value, str):
            if value not in vocab:
                raise ValueError(
                    f"group_labels[{attr!r}] = {value!r} is not in group_vocab[{attr!r}] {vocab}"
                    f"{_suggest(value, vocab)}"
                )
            return vocab.index(value)
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"group_labels[{attr!r}] = {value!r}: give a group name of {vocab} or an integer id")
        if int(value) >= len(vocab):
            raise ValueError(f"group_labels[{attr!r}] = {value!r} is outside [0, {len(vocab)}) (groups {vocab})")
        return max(int(value), -1)

    def _check_task_keys(self, setting: str, mapping: Mapping[str, Any]) -> None:
        """A per-task setting may only name configured tasks (a typo is refused, not silently ignored)."""
        if not isinstance(mapping, Mapping):
            raise ValueError(f"`{setting}` must be a dict task name -> value, got {type(mapping).__name__}")
        unknown = [task for task in mapping if task not in self.tasks]
        if unknown:
            raise ValueError(
                f"`{setting}` names unknown task {unknown[0]!r}, not in tasks {self.tasks}"
                f"{_suggest(unknown[0], self.tasks)}"
            )

    def _merge_id2label(
        self,
        task_id2label: Mapping[str, Mapping[Any, str]] | None,
        task_label2id: Mapping[str, Mapping[str, int]] | None,
    ) -> None:
        """Fold `task_id2label` / `task_label2id` into `label_vocab` (the one stored form), refusing conflicts."""
        for setting, given in (("task_id2label", task_id2label), ("task_label2id", task_label2id)):
            self._check_task_keys(setting, given or {})
            for task, mapping in (given or {}).items():
                pairs = mapping.items() if setting == "task_id2label" else ((i, n) for n, i in mapping.items())
                try:
                    by_id = {int(i): str(name) for i, name in pairs}
                except (TypeError, ValueError):
                    raise ValueError(f"`{setting}[{task!r}]` must map integer class ids and names") from None
                if sorted(by_id) != list(range(len(by_id))) or len(set(by_id.values())) != len(by_id):
                    raise ValueError(
                        f"`{setting}[{task!r}]` must give distinct names to the ids 0..C-1, got {dict(mapping)}"
                    )
                names = [by_id[i] for i in range(len(by_id))]
                if self.label_vocab.get(task, names) != names:
                    raise ValueError(
                        f"`{setting}[{task!r}]` names {names} but label_vocab[{task!r}] is {self.label_vocab[task]}"
                    )
                self.label_vocab[task] = names

    @property
    def encoder_type(self) -> str:
        """`"transformer"` when a transformers encoder is configured, else `"tabular"`."""
        return "transformer" if self.encoder is not None else "tabular"

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    @property
    def group_attribute_names(self) -> list[str]:
        """Single attributes followed by intersectional ones (`"gender*race"`)."""
        return self.protected_attributes + [INTERSECTION_SEPARATOR.join(c) for c in self.intersections]

    def attribute_components(self, name: str) -> list[str]:
        """The single attributes an attribute name is made of (`"gender*race"` → `["gender", "race"]`)."""
        parts = name.split(INTERSECTION_SEPARATOR)
        unknown = [p for p in parts if p not in self.protected_attributes]
        if unknown:
            raise ValueError(
                f"Unknown protected attribute {unknown[0]!r} in {name!r}; "
                f"configured attributes: {self.protected_attributes}"
            )
        return parts

    def group_names(self, name: str) -> list[str]:
        """Group names of a single or intersectional attribute, in group-id order.

        An intersectional id is the mixed-radix number of its components' ids, first attribute most
        significant, so `"gender*race"` group `g * n_race + r` is named `"female*black"`.
        """
        names = [""]
        for part in self.attribute_components(name):
            vocab = self.group_vocab.get(part) or []
            if not vocab:
                raise ValueError(f"Protected attribute {part!r} has no group vocabulary in group_vocab")
            names = [f"{prefix}{INTERSECTION_SEPARATOR}{g}" if prefix else g for prefix in names for g in vocab]
        return names

    def num_groups(self, name: str) -> int:
        return len(self.group_names(name))

    def _validate(self) -> None:
        if not self.tasks:
            raise ValueError("FairMTLConfig needs at least one task: `tasks` is empty")
        seen: set[str] = set()
        for task in self.tasks:
            if not isinstance(task, str) or not task:
                raise ValueError(f"Task names must be non-empty strings, got {task!r}")
            if task in seen:
                raise ValueError(f"Duplicate task name {task!r} in `tasks`")
            seen.add(task)
        for task, count in self.task_num_labels.items():
            if count < 2:
                raise ValueError(f"Task {task!r} has {count} class(es); a classification task needs at least 2")
        for task, names in self.label_vocab.items():
            if task not in seen:
                raise ValueError(f"label_vocab names unknown task {task!r}; tasks are {self.tasks}")
            if len(names) != self.task_num_labels[task]:
                raise ValueError(
                    f"label_vocab[{task!r}] has {len(names)} names but task {task!r} has "
                    f"{self.task_num_labels[task]} classes"
                )
        if len(set(self.protected_attributes)) != len(self.protected_attributes):
            raise ValueError(f"Duplicate protected attribute in {self.protected_attributes}")
        for attr in self.protected_attributes:
            if INTERSECTION_SEPARATOR in attr:
                raise ValueError(f"Attribute name {attr!r} may not contain {INTERSECTION_SEPARATOR!r}")
        missing = [attr for attr in self.protected_attributes if attr not in self.group_vocab]
        if missing:
            raise ValueError(
                f"Protected attribute {missing[0]!r} has no group_vocab entry: name its groups in id order, e.g. "
                f"group_vocab={{{missing[0]!r}: ['female', 'male']}} (fit_vocabularies(sources) returns them)"
            )
        for attr, names in self.group_vocab.items():
            if attr not in self.protected_attributes:
                raise ValueError(
                    f"group_vocab names unknown protected attribute {attr!r}; "
                    f"protected_attributes are {self.protected_attributes}"
                )
            if len(set(names)) != len(names) or not names:
                raise ValueError(f"group_vocab[{attr!r}] must be a non-empty list of distinct names")
        for combo in self.intersections:
            if len(combo) < 2:
                raise ValueError(f"An intersection needs at least 2 attributes, got {combo}")
            self.group_names(INTERSECTION_SEPARATOR.join(combo))
        self._validate_postprocessing()
        if self.encoder is None and not self.num_features:
            raise ValueError("Set `encoder` (a transformers encoder) or `num_features` (the tabular encoder)")
        if self.encoder is not None and "model_type" not in self.encoder:
            raise ValueError("`encoder` config dict needs a `model_type` key (e.g. from BertConfig().to_dict())")

    def _validate_postprocessing(self) -> None:
        """`postprocessing` names configured binary tasks, one single attribute each, and known groups."""
        for task, entries in (self.postprocessing or {}).items():
            if task not in self.tasks or self.task_num_labels[task] != 2:
                raise ValueError(f"postprocessing names {task!r}, which is not a binary task of {self.tasks}")
            if len(entries) != 1:
                raise ValueError(
                    f"postprocessing[{task!r}] must hold thresholds for exactly one attribute, got {sorted(entries)}"
                )
            ((attr, entry),) = entries.items()
            if attr not in self.protected_attributes:
                raise ValueError(
                    f"postprocessing[{task!r}] names {attr!r}, not a single protected attribute of "
                    f"{self.protected_attributes}"
                )
            vocabulary = self.group_vocab.get(attr)
            for key in entry.get("groups", {}):
                if (vocabulary and key not in vocabulary) or (not vocabulary and not str(key).isdigit()):
                    raise ValueError(f"postprocessing[{task!r}][{attr!r}] has thresholds for unknown group {key!r}")


def pipeline_class() -> type:
    """The inference pipeline class, `FairMTLClassificationPipeline` (registered as `"fair-multitask-classification"`).

    This import is also what ships the pipeline: `save_pretrained` copies the relative imports of this file next to
    the weights, so `pipelines.py` (and the files it imports) land beside `config.json`, whose `custom_pipelines`
    names it.
    """
    from .pipelines import FairMTLClassificationPipeline

    return FairMTLClassificationPipeline


def _custom_pipelines(given: Mapping[str, Any] | None) -> dict[str, Any]:
    """The `custom_pipelines` attribute: the given entries, plus ours unless the installed package registered it.

    `transformers.pipeline` prefers a config's custom pipeline over its registry and then demands
    `trust_remote_code=True`; where `hf_fairmtl.pipelines` is imported (the task is registered by the package, not
    by a checkpoint's copy in `transformers_modules`) the registered class serves the task, so our entry is left
    out of the attribute. A config of the installed package built while `transformers.pipelines` is loaded (as in
    `pipeline("fair-multitask-classification", model=DIR)`) registers the package's pipeline first, so that call
    needs no `import hf_fairmtl.pipelines`. `to_dict` always writes our entry to `config.json`.
    """
    entries = dict(given or {})
    registry = getattr(sys.modules.get("transformers.pipelines"), "PIPELINE_REGISTRY", None)
    if registry is not None and PIPELINE_TASK not in registry.supported_tasks and __package__ == "hf_fairmtl":
        pipeline_class()  # transformers.pipeline is loading this config and the package is installed: register
    registered = registry.supported_tasks.get(PIPELINE_TASK, {}).get("impl") if registry is not None else None
    if registered is not None and not getattr(registered, "__module__", "").startswith("transformers_modules"):
        entries.pop(PIPELINE_TASK, None)
    else:
        entries[PIPELINE_TASK] = dict(PIPELINE_SPEC)
    return entries


def _resolve_encoder_config(name_or_path: str) -> dict[str, Any]:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(name_or_path).to_dict()
