"""`--postprocess`: group thresholds fitted on the validation rows, scored on the held-out rows (`<method>+thresholds`).

Post-processing needs each row's group at prediction time, so it applies to binary tasks whose validation rows
carry a known group of a single protected attribute; other tasks (a transfer target without demographics,
multi-class tasks) keep the model's argmax and are reported unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..metrics.keys import EVAL_PREFIX, with_prefix
from ..postprocessing import fit_postprocessing, predict_scores

THRESHOLDS_SUFFIX = "thresholds"
POSTPROCESS_CONSTRAINTS = ("equalized_odds", "demographic_parity")


def postprocessable(config, validation) -> dict[str, str]:
    """Task -> the single attribute its thresholds are fitted for.

    Binary tasks whose validation rows have at least two known groups, each with positives and negatives (a
    group's rates are undefined otherwise); the first such attribute in `protected_attributes` order.
    """
    group_labels = np.asarray(validation["group_labels"]).reshape(len(validation), -1)
    labels = np.asarray(validation["labels"]).reshape(len(validation), -1)
    chosen = {}
    for t, task in enumerate(config.tasks):
        if config.task_num_labels[task] != 2:
            continue
        for a, attr in enumerate(config.protected_attributes):
            rows = (labels[:, t] >= 0) & (group_labels[:, a] >= 0)
            groups = np.unique(group_labels[rows, a])
            both_classes = all(len(np.unique(labels[rows & (group_labels[:, a] == group), t])) == 2 for group in groups)
            if len(groups) >= 2 and both_classes:
                chosen[task] = attr
                break
    return chosen


def thresholds_metrics(
    trainer: Any, validation: Any, test: Any, constraint: str, objective: str, seed: int
) -> dict[str, float] | None:
    """Fit group thresholds on `validation`, predict `test` through `model.predict_labels`, return `eval_*` metrics.

    Returns `None` when no task can be post-processed. The fitted thresholds stay in `model.config.postprocessing`,
    so a model saved afterwards applies them when `group_labels` are passed.
    """
    model = trainer.model
    chosen = postprocessable(model.config, validation)
    if not chosen:
        return None
    fit_postprocessing(trainer, validation, constraint, tasks=list(chosen), attribute=chosen, objective=objective)
    scored = predict_scores(model, test, trainer.data_collator)
    logits = tuple(torch.as_tensor(part) for part in scored["logits"])
    generator = torch.Generator().manual_seed(seed)
    decided = model.predict_labels(logits, torch.as_tensor(scored["group_labels"]), generator=generator)
    # compute_metrics reads decisions from logits: one-hot logits carry the post-processed class.
    one_hot = tuple(
        torch.nn.functional.one_hot(labels, part.shape[1]).float().numpy()
        for labels, part in zip(decided, logits, strict=True)
    )
    metrics = trainer.compute_metrics((one_hot, (scored["labels"], scored["group_labels"])))
    return {with_prefix(key, EVAL_PREFIX): value for key, value in metrics.items()}
