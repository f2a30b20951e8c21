"""Fairness losses: a registry of differentiable group-fairness objectives.

```python
from hf_fairmtl.losses import build_fairness_loss

loss_fn = build_fairness_loss("eps_deo", num_groups=2, target_epsilon=0.1)
loss = loss_fn(logits, labels, groups)  # logits [B, C], labels [B] (-100 = missing), groups [B] (-1 = unknown)
```

Registered: `robust_eo` (L2T-FMT robust log-loss), `eps_deo` (ε-differential equalized odds hinge),
`loss_gap_eo` (Shen et al. 2022 loss difference), `dp_gap` (soft demographic-parity gap). Add one with
`@register_fairness_loss("name")` on a [`FairnessLoss`] subclass. All are exact under DDP (see
`hf_fairmtl.losses.distributed`). The task loss is `masked_cross_entropy`, re-exported from the model file.
"""

from ..modeling_fairmtl import masked_cross_entropy
from .base import (
    CONDITIONS,
    FAIRNESS_LOSSES,
    FairnessLoss,
    GroupedBatch,
    build_fairness_loss,
    register_fairness_loss,
    stacked_fairness_loss,
)
from .distributed import all_reduce_sum
from .dp_gap import DPGapLoss
from .eps_deo import EpsDEOLoss
from .loss_gap_eo import LossGapEOLoss
from .robust_eo import RobustEOLoss

__all__ = [
    "CONDITIONS",
    "FAIRNESS_LOSSES",
    "DPGapLoss",
    "EpsDEOLoss",
    "FairnessLoss",
    "GroupedBatch",
    "LossGapEOLoss",
    "RobustEOLoss",
    "all_reduce_sum",
    "build_fairness_loss",
    "masked_cross_entropy",
    "register_fairness_loss",
    "stacked_fairness_loss",
]
