"""Configuration of a fairness-aware multi-task model.

This file is copied next to checkpoints by ``save_pretrained`` and loaded with
``trust_remote_code=True`` where ``hf_fairmtl`` is not installed, so it imports nothing
from ``hf_fairmtl``.
"""

from __future__ import annotations

import os
from typing import Any

from transformers import PretrainedConfig

INTERSECTION_SEPARATOR = "*"


class FairMTLConfig(PretrainedConfig):
    """Configuration for [`FairMTLModel`]: tasks, protected attributes, encoder and heads.

    Args:
        tasks (`list[str]`): Task names; their order is the order of `labels[:, t]` and of `logits`.
        num_labels (`dict[str, int]`, *optional*): Classes per task (default 2 for every task).
            Stored as `task_num_labels` because `PretrainedConfig.num_labels` is a single integer.
        label_vocab (`dict[str, list[str]]`, *optional*): Class names per task, index = class id.
            Gives `num_labels` when that is not given.
        protected_attributes (`list[str]`, *optional*): Attribute names; their order is the order of
            `group_labels[:, a]`.
        group_vocab (`dict[str, list[str]]`, *optional*): Group names per attribute, index = group id.
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
        self.postprocessing = postprocessing
        super().__init__(**kwargs)
        # The model pads with its encoder's padding id; declaring it keeps Trainer from "aligning" the config with
        # the tokenizer (and warning about it) at every run.
        if self.encoder is not None and getattr(self, "pad_token_id", None) is None:
            self.pad_token_id = self.encoder.get("pad_token_id")
        self._validate()

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


def _resolve_encoder_config(name_or_path: str) -> dict[str, Any]:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(name_or_path).to_dict()
