"""Group ids per protected attribute, single or intersectional, from the `group_labels` column."""

from __future__ import annotations

import numpy as np
import torch

from .configuration_fairmtl import FairMTLConfig

UNKNOWN_GROUP = -1


def attribute_group_ids(config: FairMTLConfig, group_labels, name: str):
    """Group id per row for attribute `name` (`"gender"` or intersectional `"gender*race"`).

    Args:
        config: The model config (attribute order and vocabularies).
        group_labels: `[B, A]` tensor or array, -1 = unknown.
        name: A single or intersectional attribute name.

    Returns:
        `[B]` of the same kind as `group_labels`; an intersectional id is the mixed-radix number of the
        component ids (see `FairMTLConfig.group_names`), and -1 where any component is unknown.
    """
    parts = config.attribute_components(name)
    if group_labels.shape[-1] != len(config.protected_attributes):
        raise ValueError(
            f"`group_labels` must have one column per protected attribute {config.protected_attributes}, "
            f"got shape {list(group_labels.shape)}"
        )
    ids = None
    unknown = None
    for part in parts:
        column = group_labels[:, config.protected_attributes.index(part)]
        missing = column < 0
        if ids is None:
            ids, unknown = column, missing
        else:
            ids = ids * config.num_groups(part) + column
            unknown = unknown | missing
    if isinstance(ids, torch.Tensor):
        return torch.where(unknown, torch.full_like(ids, UNKNOWN_GROUP), ids)
    return np.where(unknown, UNKNOWN_GROUP, ids)
