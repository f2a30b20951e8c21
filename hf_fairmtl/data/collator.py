"""Batch collation for multi-task rows with partial labels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .builder import check_max_length

# Keys the tokenizer pads; everything else numeric is stacked as is.
_TOKEN_KEYS = ("input_ids", "attention_mask", "token_type_ids", "special_tokens_mask")
_BUILD_HINT = (
    "tokenize the dataset with build_multitask_dataset(sources, config, tokenizer=tokenizer), or keep its raw "
    "`text` column (TrainingArguments(remove_unused_columns=False)) and pass DataCollatorForFairMTL(tokenizer)"
)


@dataclass
class DataCollatorForFairMTL:
    """Pads text per batch (or stacks tabular `features`) and stacks the task and group labels.

    Works on the rows `build_multitask_dataset` writes. Returns `labels` as a `LongTensor [B, T]`
    (-100 = no label), `group_labels` as a `LongTensor [B, A]` (-1 = unknown), `features` as a
    `FloatTensor [B, F]`, and the padded `input_ids`/`attention_mask`. String columns (`source`, `text`)
    are dropped. Rows that carry raw `text` but no `input_ids` are tokenized here, so an untokenized
    dataset can be used directly.

    Args:
        tokenizer: Pads (and if needed tokenizes) text rows; not needed for tabular rows.
        padding: Passed to `tokenizer.pad` (`True`/`"longest"`: pad to the longest row of the batch).
        max_length: Padding/truncation length for `"max_length"` padding or on-the-fly tokenization.
        pad_to_multiple_of: Pad lengths up to a multiple of this (e.g. 8 for tensor cores).
    """

    tokenizer: Any = None
    padding: bool | str = True
    max_length: int | None = None
    pad_to_multiple_of: int | None = None

    def __post_init__(self) -> None:
        check_max_length(self.max_length, self.tokenizer, "DataCollatorForFairMTL max_length")

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not rows:
            raise ValueError("DataCollatorForFairMTL got an empty batch")
        keys = list(rows[0].keys())
        batch: dict[str, torch.Tensor] = {}
        token_rows = [{k: row[k] for k in _TOKEN_KEYS if k in row} for row in rows]
        if "input_ids" not in keys and "features" not in keys:
            token_rows = self._tokenize(rows, keys)
        if token_rows and token_rows[0]:
            batch.update(self._pad_tokens(token_rows))
        for key in keys:
            if key in _TOKEN_KEYS or key in batch:
                continue
            values = [row[key] for row in rows]
            if key in ("labels", "group_labels"):
                batch[key] = _stack_ids(values, key)
            elif key == "features":
                batch[key] = _stack(values, torch.float32, key)
            elif _is_numeric(values[0]):
                batch[key] = _stack(values, None, key)
            # Strings (`source`, `text`) and other non-numeric columns cannot become tensors: dropped.
        return batch

    def _tokenize(self, rows: Sequence[Mapping[str, Any]], keys: list[str]) -> list[dict[str, Any]]:
        """Tokenize raw `text` rows; rows with no model input at all get a hint at how to make them."""
        if "text" not in keys:
            raise ValueError(
                f"Rows carry no model input (`input_ids`, `text` or `features`; keys: {keys}): {_BUILD_HINT}"
            )
        if self.tokenizer is None:
            raise ValueError(
                f"Rows carry raw `text` and no `input_ids`, and the collator has no tokenizer: {_BUILD_HINT}"
            )
        texts = [row["text"] for row in rows]
        bad = [i for i, text in enumerate(texts) if not isinstance(text, str)]
        if bad:
            raise ValueError(
                f"Row {bad[0]} of the batch has text {texts[bad[0]]!r} (source {rows[bad[0]].get('source', '?')!r}); "
                "every row needs a string (build_multitask_dataset names the source row)"
            )
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length, return_token_type_ids=False)
        return [{k: encoded[k][i] for k in ("input_ids", "attention_mask")} for i in range(len(rows))]

    def _pad_tokens(self, token_rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if self.tokenizer is not None:
            # max_length only means something for "max_length" padding (tokenizers warn otherwise).
            padded = self.tokenizer.pad(
                token_rows,
                padding=self.padding,
                max_length=self.max_length if self.padding == "max_length" else None,
                pad_to_multiple_of=self.pad_to_multiple_of,
                return_tensors="pt",
            )
            return dict(padded)
        lengths = {len(row["input_ids"]) for row in token_rows}
        if len(lengths) > 1:
            raise ValueError("Rows have `input_ids` of different lengths: pass a tokenizer to pad them")
        return {key: _stack([row[key] for row in token_rows], torch.long, key) for key in token_rows[0]}


def _is_numeric(value: Any) -> bool:
    if isinstance(value, (bool, int, float, np.number)):
        return True
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return value.dtype != object
    if isinstance(value, (list, tuple)):
        return all(isinstance(v, (bool, int, float, np.number)) for v in value)
    return False


def _stack_ids(values: list[Any], key: str) -> torch.Tensor:
    """`labels` / `group_labels` as a LongTensor; strings and non-integral numbers are refused, not cast."""
    stacked = _stack(values, None, key)
    missing = "-100" if key == "labels" else "-1"
    if stacked.dtype == torch.bool or not (stacked.is_floating_point() or stacked.dtype in _INTEGER_DTYPES):
        raise ValueError(f"`{key}` must hold integer ids, got {stacked.dtype}")
    if stacked.is_floating_point():
        bad = ~torch.isfinite(stacked) | (stacked != stacked.round())
        if bad.any():
            row, column = (int(i) for i in bad.nonzero()[0]) if stacked.dim() == 2 else (int(bad.nonzero()[0]), 0)
            raise ValueError(
                f"`{key}` value {stacked[bad][0].item()!r} (row {row} of the batch, column {column}) is not an integer "
                f"id; ids are not rounded: use class ids, {missing} for missing, or build_multitask_dataset with a "
                "label_vocab/group_vocab for category names"
            )
    return stacked.long()


_INTEGER_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def _stack(values: list[Any], dtype: torch.dtype | None, key: str) -> torch.Tensor:
    if isinstance(values[0], torch.Tensor):
        out = torch.stack(values)
        return out.to(dtype) if dtype is not None else out
    try:
        array = np.asarray(values)
    except ValueError as err:
        raise ValueError(f"Cannot stack `{key}` into one tensor (rows of different lengths?): {err}") from None
    if array.dtype.kind not in "biuf":
        example = next((v for v in _flatten(values) if not isinstance(v, (int, float, np.number))), array.flat[0])
        raise ValueError(
            f"Column `{key}` holds {example!r} ({type(example).__name__}), not numbers; map category names to ids "
            "with build_multitask_dataset(sources, config) (label_vocab / group_vocab), or drop the column"
        )
    return torch.tensor(array, dtype=dtype)


def _flatten(values: Any) -> Any:
    for value in values:
        if isinstance(value, (list, tuple)):
            yield from _flatten(value)
        else:
            yield value
