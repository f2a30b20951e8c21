"""Inference pipeline `"fair-multitask-classification"`: every task's label name and score from raw input.

```python
from transformers import pipeline
import hf_fairmtl.pipelines  # registers the task (a checkpoint's own copy does so under trust_remote_code)

pipe = pipeline("fair-multitask-classification", model="path/to/checkpoint")  # or a model object + tokenizer=
pipe("She is a nurse.")
# {"occupation": {"label": "nurse", "score": 0.81}, "stereotype": {"label": "1", "score": 0.64}}
pipe(["one", "two"], batch_size=16, top_k=None)  # per task: every class, the prediction first
pipe({"text": "She is a nurse.", "group_labels": {"gender": "female"}})  # group thresholds, if fitted
pipe(census_frame)  # tabular checkpoint: raw rows (a DataFrame or dicts), encoded as in training
```

Inputs: a string (text models), a dict of raw column values (tabular models: encoded with the checkpoint's
`config.feature_encoding`; `{"features": [...]}` passes an encoded vector), a list of either, or a pandas
DataFrame (one input per row). `group_labels` (a per-input key, or the call argument: one entry per input) maps
protected attributes to group names or ids; then the predicted label of a task with fitted group thresholds
comes from `model.predict_labels` (randomised rules: one uniform draw per row, from a generator seeded with the
call's `seed`, else from torch's global generator). Scores are always the softmax probabilities.

This file is copied next to checkpoints (`configuration_fairmtl.pipeline_class` imports it) and loaded with
``trust_remote_code=True`` where ``hf_fairmtl`` is not installed, so it imports nothing from ``hf_fairmtl`` except
its sibling shipped files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sized
from typing import Any

import torch
from torch.utils.data import DataLoader
from transformers import AutoModel, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.pt_utils import PipelineDataset, PipelineIterator

from .configuration_fairmtl import PIPELINE_TASK
from .feature_encoding import encode_features

try:  # optional: only DataFrame inputs need it
    import pandas as pd
except ImportError:  # pragma: no cover - pandas is a dependency of hf_fairmtl itself
    pd = None

UNSET = ""


class FairMTLClassificationPipeline(Pipeline):
    """Predicts every task of a `FairMTLModel` (text or tabular) with class names and softmax scores.

    Call arguments:
        top_k (`int` or `None`): Unset: one `{"label", "score"}` dict per task. An int: a list of that many
            classes per task; `None`: every class. Lists hold the prediction first, then the others by score.
        max_length (`int`): Truncation length of text inputs (default: the encoder's position limit).
        group_labels: Per input, `{attribute: group name or id}` (or a list in `protected_attributes` order).
        seed (`int`): Seeds the draws of randomised group thresholds, so a call's predictions are reproducible
            (default: torch's global generator).
        batch_size, num_workers, device: As for every pipeline.
    """

    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = None  # text checkpoints ship one; tabular ones have none

    def _sanitize_parameters(
        self, top_k: int | None | str = UNSET, max_length: int | None = None, seed: int | None = None
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        if (
            top_k is not UNSET
            and top_k is not None
            and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1)
        ):
            raise ValueError(f"top_k must be a positive integer or None (every class), got {top_k!r}")
        if max_length is not None and (
            isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2
        ):
            raise ValueError(
                f"max_length must be an integer >= 2 (room for a token besides [CLS]/[SEP]), got {max_length!r}"
            )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        preprocess = {"max_length": max_length} if max_length is not None else {}
        postprocess = {"top_k": top_k} if top_k is not UNSET else {}
        # One generator per call, shared by its batches: the same call with the same seed draws the same.
        forward = {"generator": torch.Generator().manual_seed(seed)} if seed is not None else {}
        return preprocess, forward, postprocess

    def __call__(self, inputs: Any, group_labels: Any = None, **kwargs: Any) -> Any:
        """Predict one input, a list of inputs, a DataFrame (one input per row), or a dataset/generator."""
        if pd is not None and isinstance(inputs, pd.DataFrame):
            inputs = [_clean_row(row) for row in inputs.to_dict(orient="records")]
        if group_labels is not None:
            inputs = _attach_groups(inputs, group_labels)
        return super().__call__(inputs, **kwargs)

    def preprocess(self, inputs: Any, max_length: int | None = None) -> dict[str, torch.Tensor]:
        row = dict(inputs) if isinstance(inputs, Mapping) else {"text": inputs}
        groups = self.model.config.group_label_ids(row.pop("group_labels", None))
        if self.model.config.encoder_type == "tabular":
            model_inputs = {"features": self._features(row)}
        else:
            model_inputs = self._tokens(row, max_length)
        model_inputs["group_labels"] = torch.tensor([groups], dtype=torch.long)
        return model_inputs

    def _tokens(self, row: dict[str, Any], max_length: int | None) -> dict[str, torch.Tensor]:
        text = row.get("text")
        if set(row) != {"text"} or not isinstance(text, str):
            raise ValueError(
                "This checkpoint has a text encoder: give a string or {'text': str, 'group_labels': ...} per input, "
                f"got {_describe(row)}"
            )
        if self.tokenizer is None:
            raise ValueError(
                "This checkpoint has a text encoder but no tokenizer was found next to it: pass "
                "pipeline(..., tokenizer=...) or save one with tokenizer.save_pretrained(checkpoint_dir)"
            )
        limit = max_length or (self.model.config.encoder or {}).get("max_position_embeddings")
        return dict(
            self.tokenizer(text, truncation=True, max_length=limit, return_tensors="pt", return_token_type_ids=False)
        )

    def _features(self, row: dict[str, Any]) -> torch.Tensor:
        config = self.model.config
        if "features" in row:
            vector = torch.as_tensor(row["features"], dtype=torch.float32).reshape(1, -1)
        elif config.feature_encoding:
            vector = torch.from_numpy(encode_features({k: [v] for k, v in row.items()}, config.feature_encoding))
        else:
            raise ValueError(
                "This tabular checkpoint stores no feature_encoding, so raw rows cannot be encoded: give "
                f"{{'features': [{config.num_features} floats]}} per input"
            )
        if vector.shape[1] != config.num_features:
            raise ValueError(f"`features` must hold {config.num_features} values, got {vector.shape[1]}")
        return vector

    def _forward(
        self, model_inputs: dict[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        groups = model_inputs.pop("group_labels")
        logits = self.model(**model_inputs).logits
        predictions = [task_logits.argmax(-1) for task_logits in logits]
        # `predict_labels` (group-specific thresholds, `config.postprocessing`) is an optional model method:
        # checkpoints whose model code predates it simply get the argmax.
        predict_labels = getattr(self.model, "predict_labels", None)
        if predict_labels is not None and bool((groups >= 0).any()):
            predictions = list(predict_labels(logits, group_labels=groups, generator=generator))
        outputs = {"predictions": torch.stack([p.long() for p in predictions], dim=-1)}
        for t, task_logits in enumerate(logits):
            outputs[f"scores_{t}"] = task_logits.float().softmax(-1)
        return outputs

    def postprocess(self, model_outputs: dict[str, torch.Tensor], top_k: int | None | str = UNSET) -> dict[str, Any]:
        config = self.model.config
        predictions = model_outputs["predictions"].reshape(-1).tolist()
        result: dict[str, Any] = {}
        for t, task in enumerate(config.tasks):
            scores = model_outputs[f"scores_{t}"].reshape(-1)
            names = config.class_names(task)
            predicted = int(predictions[t])
            if top_k is UNSET:
                result[task] = {"label": names[predicted], "score": float(scores[predicted])}
                continue
            order = [predicted] + [i for i in scores.argsort(descending=True).tolist() if i != predicted]
            result[task] = [{"label": names[i], "score": float(scores[i])} for i in order[: top_k or len(order)]]
        return result

    def get_iterator(
        self,
        inputs: Any,
        num_workers: int,
        batch_size: int,
        preprocess_params: dict[str, Any],
        forward_params: dict[str, Any],
        postprocess_params: dict[str, Any],
    ) -> Any:
        if self.tokenizer is not None or batch_size == 1:
            return super().get_iterator(
                inputs, num_workers, batch_size, preprocess_params, forward_params, postprocess_params
            )
        # Tabular rows are fixed-width tensors: the base loader's padding collate needs a tokenizer, so they are
        # concatenated instead; the rest is the base iterator chain.
        if isinstance(inputs, Sized):
            dataset = PipelineDataset(inputs, self.preprocess, preprocess_params)
        else:
            dataset = PipelineIterator(inputs, self.preprocess, preprocess_params)
            num_workers = min(num_workers, 1)
        loader = DataLoader(dataset, num_workers=num_workers, batch_size=batch_size, collate_fn=_concatenate)
        model_iterator = PipelineIterator(loader, self.forward, forward_params, loader_batch_size=batch_size)
        return PipelineIterator(model_iterator, self.postprocess, postprocess_params)


def predict_table(
    pipe: FairMTLClassificationPipeline,
    frame: Any,
    text_column: str = "text",
    group_columns: Mapping[str, str] | None = None,
    batch_size: int = 32,
    source: str = "the input table",
    seed: int | None = None,
) -> Any:
    """Predict every row of a table: one `{task}_label` and one `{task}_score` column per task, rows in order.

    Args:
        pipe: A `FairMTLClassificationPipeline`.
        frame: A `pandas.DataFrame`: a `text_column` for text models, the raw feature columns for tabular ones.
        text_column: The text column (text models).
        group_columns: Protected attribute -> column holding its group names, for group-threshold predictions.
        batch_size: Rows per forward pass.
        source: Names the table in errors (e.g. the CSV path).
        seed: Seeds the draws of randomised group thresholds (see the pipeline's `seed`).

    Raises:
        ValueError: A missing column or a missing text, naming `source`, the column and the row.
    """
    config = pipe.model.config
    group_columns = dict(group_columns or {})
    for column in [*group_columns.values(), *([text_column] if config.encoder_type != "tabular" else [])]:
        if column not in frame.columns:
            raise ValueError(f"{source} has no column {column!r} (columns: {list(frame.columns)})")
    if config.encoder_type == "tabular":
        inputs = [_clean_row(row) for row in frame.to_dict(orient="records")]
    else:
        texts = frame[text_column]
        missing = [int(i) for i in (~texts.map(lambda t: isinstance(t, str))).to_numpy().nonzero()[0]]
        if missing:
            raise ValueError(
                f"{source}: text column {text_column!r} is empty at row {missing[0]} (0-based, header excluded)"
            )
        inputs = texts.tolist()
    groups = None
    if group_columns:
        values = {attr: frame[column].tolist() for attr, column in group_columns.items()}
        groups = [{attr: _none_if_missing(v[i]) for attr, v in values.items()} for i in range(len(frame))]
    outputs = pipe(inputs, group_labels=groups, batch_size=batch_size, seed=seed) if inputs else []
    columns: dict[str, list[Any]] = {}
    for task in config.tasks:
        columns[f"{task}_label"] = [row[task]["label"] for row in outputs]
        columns[f"{task}_score"] = [row[task]["score"] for row in outputs]
    return pd.DataFrame(columns, index=frame.index)


def _none_if_missing(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and value != value) else value


def _concatenate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.cat([item[key] for item in items]) for key in items[0]}


def _clean_row(row: dict[str, Any]) -> dict[str, Any]:
    """A DataFrame record with its column names as strings (numbers as column names would not match)."""
    return {str(key): value for key, value in row.items()}


def _describe(row: dict[str, Any]) -> str:
    if set(row) == {"text"}:
        return f"text={row['text']!r}"
    return f"keys {sorted(row)}"


def _attach_groups(inputs: Any, group_labels: Any) -> Any:
    """Put the call's `group_labels` into the inputs: one entry per input (or one for a single input)."""

    def attach(item: Any, groups: Any) -> dict[str, Any]:
        row = dict(item) if isinstance(item, Mapping) else {"text": item}
        row["group_labels"] = groups
        return row

    if isinstance(inputs, list):
        if not isinstance(group_labels, (list, tuple)) or len(group_labels) != len(inputs):
            raise ValueError(
                f"group_labels must give one entry per input ({len(inputs)} inputs), got {group_labels!r:.200}"
            )
        return [attach(item, groups) for item, groups in zip(inputs, group_labels, strict=True)]
    return attach(inputs, group_labels)


# Registered once per process: by the package on import, or by a checkpoint's copy where hf_fairmtl is absent.
if PIPELINE_TASK not in PIPELINE_REGISTRY.supported_tasks:
    PIPELINE_REGISTRY.register_pipeline(
        PIPELINE_TASK, pipeline_class=FairMTLClassificationPipeline, pt_model=AutoModel, type="multimodal"
    )
