"""Batch collation for multi-task rows with partial labels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

# Keys the tokenizer pads; everything else numeric is stacked as is.
_TOKEN_KEYS = ("input_ids", "attention_mask", "token_type_ids", "special_tokens_mask")


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

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not rows:
            raise ValueError("DataCollatorForFairMTL got an empty batch")
        keys = list(rows[0].keys())
        batch: dict[str, torch.Tensor] = {}
        token_rows = [{k: row[k] for k in _TOKEN_KEYS if k in row} for row in rows]
        if "input_ids" not in keys and "text" in keys and "features" not in keys:
            if self.tokenizer is None:
                raise ValueError("Rows carry raw `text` and no `input_ids`: pass a tokenizer to DataCollatorForFairMTL")
            encoded = self.tokenizer(
                [row["text"] for row in rows],
                truncation=True,
                max_length=self.max_length,
                return_token_type_ids=False,
            )
            token_rows = [{k: encoded[k][i] for k in ("input_ids", "attention_mask")} for i in range(len(rows))]
        if token_rows and token_rows[0]:
            batch.update(self._pad_tokens(token_rows))
        for key in keys:
            if key in _TOKEN_KEYS or key in batch:
                continue
            values = [row[key] for row in rows]
            if key in ("labels", "group_labels"):
                batch[key] = _stack(values, torch.long, key)
            elif key == "features":
                batch[key] = _stack(values, torch.float32, key)
            elif _is_numeric(values[0]):
                batch[key] = _stack(values, None, key)
            # Strings (`source`, `text`) and other non-numeric columns cannot become tensors: dropped.
        return batch

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


def _stack(values: list[Any], dtype: torch.dtype | None, key: str) -> torch.Tensor:
    if isinstance(values[0], torch.Tensor):
        out = torch.stack(values)
        return out.to(dtype) if dtype is not None else out
    try:
        return torch.tensor(np.asarray(values), dtype=dtype)
    except ValueError as err:
        raise ValueError(f"Cannot stack `{key}` into one tensor (rows of different lengths?): {err}") from None
