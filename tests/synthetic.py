"""Synthetic multi-task data where a protected group leaks into the labels, built so fairness losses must act."""

from __future__ import annotations

import numpy as np
import torch
from datasets import Dataset

from hf_fairmtl import FairMTLConfig

from .conftest import TINY_VOCAB_SIZE

NUM_FEATURES = 6


def biased_rows(
    num_rows: int,
    seed: int,
    tasks: tuple[str, ...] = ("target", "auxiliary"),
    biased: tuple[bool, ...] | None = None,
    with_groups: bool = True,
    label_tasks: tuple[str, ...] | None = None,
    bias: float = 1.5,
) -> list[dict]:
    """Tabular rows: the group shifts each biased task's base rate and leaks through feature 0.

    Every task t has its own latent signal z_t (features 1..), and `y_t = 1[z_t + bias·(g − ½) + noise > 0]`
    for a biased task (`bias = 0` for an unbiased one). Feature 0 is `g` plus noise, so a model that
    uses it predicts differently for the two groups at equal true labels: an equalized-odds gap.
    """
    rng = np.random.default_rng(seed)
    biased = biased if biased is not None else (True,) * len(tasks)
    label_tasks = tasks if label_tasks is None else label_tasks
    groups = rng.integers(0, 2, num_rows)
    latent = rng.normal(size=(num_rows, len(tasks)))
    features = rng.normal(size=(num_rows, NUM_FEATURES)) * 0.3
    features[:, 0] = groups + rng.normal(scale=0.3, size=num_rows)
    for t in range(len(tasks)):
        features[:, 1 + t % (NUM_FEATURES - 1)] += latent[:, t]
    rows = []
    for i in range(num_rows):
        labels = []
        for t, task in enumerate(tasks):
            shift = bias * (groups[i] - 0.5) if biased[t] else 0.0
            label = int(latent[i, t] + shift + rng.normal(scale=0.3) > 0)
            labels.append(label if task in label_tasks else -100)
        rows.append(
            {
                "features": features[i].astype(np.float32).tolist(),
                "labels": labels,
                "group_labels": [int(groups[i]) if with_groups else -1],
            }
        )
    return rows


def tabular_config(tasks: tuple[str, ...] = ("target", "auxiliary"), hidden: int = 32) -> FairMTLConfig:
    return FairMTLConfig(
        tasks=list(tasks),
        protected_attributes=["group"],
        group_vocab={"group": ["a", "b"]},
        num_features=NUM_FEATURES,
        tabular_hidden_sizes=[hidden, hidden],
        classifier_dropout=0.0,
    )


def transfer_datasets(seed: int, num_rows: int = 1200) -> tuple[Dataset, Dataset]:
    """Train: target rows without demographics + auxiliary rows with them; eval: held-out target rows with groups."""
    target_rows = biased_rows(num_rows, seed, with_groups=False, label_tasks=("target",))
    auxiliary_rows = biased_rows(num_rows, seed + 1000, label_tasks=("auxiliary",))
    heldout = biased_rows(600, seed + 2000, label_tasks=("target",))
    return Dataset.from_list(target_rows + auxiliary_rows), Dataset.from_list(heldout)


def text_rows(num_rows: int, seed: int, num_tasks: int = 2) -> list[dict]:
    """Token rows: token 1/2 marks the group, and it also shifts the labels (a leak the encoder can read)."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(num_rows):
        group = int(torch.randint(0, 2, (1,), generator=generator))
        length = int(torch.randint(4, 10, (1,), generator=generator))
        input_ids = torch.randint(3, TINY_VOCAB_SIZE, (length,), generator=generator)
        input_ids[0] = 1 + group
        labels = [int((input_ids[1 + t] % 2 == 0) or (group == 1 and t == 0)) for t in range(num_tasks)]
        rows.append({"input_ids": input_ids.tolist(), "labels": labels, "group_labels": [group]})
    return rows
