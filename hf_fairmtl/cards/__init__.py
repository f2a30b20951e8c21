"""Fairness model cards and Hub pushes.

- [`render`]: the model card (per-task accuracy, balanced accuracy and collapse flag, per-attribute gaps and
  per-group rates parsed from `trainer.evaluate()` metrics, the teacher's decisions, settings, citations of the
  registered strategy, loss and weighting), `write_model_card` for `Trainer.create_model_card`.
- [`push`]: [`push_model_to_hub`], a full model or a PEFT adapter with its card, in one commit.
"""

from .push import push_model_to_hub
from .render import (
    DEFAULT_TAGS,
    describe_component,
    is_adapter_model,
    last_eval_metrics,
    parse_eval_metrics,
    render_model_card,
    save_model_card,
    write_model_card,
)

__all__ = [
    "DEFAULT_TAGS",
    "describe_component",
    "is_adapter_model",
    "last_eval_metrics",
    "parse_eval_metrics",
    "push_model_to_hub",
    "render_model_card",
    "save_model_card",
    "write_model_card",
]
