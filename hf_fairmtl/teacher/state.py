"""The DQN's per-task state: a task head's weights through a fixed random projection, plus head statistics."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def random_projection(in_features: int, out_features: int, seed: int) -> torch.Tensor:
    """A fixed Gaussian projection `[in_features, out_features]` with entries N(0, 1/out_features).

    The 1/out_features variance (Johnson-Lindenstrauss scaling) keeps `‖x P‖ ≈ ‖x‖`, so the DQN input has the
    scale of the head weights whatever the head size. Drawn from its own generator: building it never moves
    the global RNG (the student's dropout stream stays the same with or without a teacher).
    """
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(in_features, out_features, generator=generator) / math.sqrt(out_features)


def task_state(
    flat_params: torch.Tensor,
    projection: torch.Tensor,
    num_statistics: int,
    statistics: Sequence[float] | torch.Tensor | None = None,
) -> torch.Tensor:
    """State vector `[state_size + num_statistics]` of one task.

    Args:
        flat_params: The task head's flattened trainable weights `[P_t]`.
        projection: The rows of the shared projection for this head, `[P_t, state_size]`.
        num_statistics: Number of statistics appended (0 = weights only, the paper's state).
        statistics: The head's held-out statistics (accuracy, EO violation); NaN is written as 0, `None` as zeros.

    Raises:
        ValueError: When the parameter or statistic counts do not match.
    """
    count = projection.shape[0]
    if flat_params.numel() != count:
        raise ValueError(f"The head has {count} trainable parameters, got {flat_params.numel()}")
    projected = flat_params.reshape(-1).to(projection) @ projection
    if num_statistics == 0:
        return projected
    stats = torch.as_tensor(statistics if statistics is not None else [0.0] * num_statistics)
    stats = torch.nan_to_num(stats.to(projected).reshape(-1), nan=0.0)
    if stats.numel() != num_statistics:
        raise ValueError(f"Expected {num_statistics} statistics, got {stats.numel()}")
    return torch.cat([projected, stats])
