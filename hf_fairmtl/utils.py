"""Small helpers shared across the package: model unwrapping and "did you mean" suggestions."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from torch import nn


def suggest_names(name: str, candidates: Iterable[str]) -> str:
    """`"; did you mean 'x'?"` when difflib finds close names (empty otherwise), so typos are fixed in one go."""
    close = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=3, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?"


def unwrap_model(model: nn.Module) -> nn.Module:
    """The `FairMTLModel` inside DDP/accelerate (`.module`) and PEFT (`get_base_model()`) wrappers.

    A bare model is returned as is. PEFT is not imported: a `PeftModel` is recognised by its method.
    """
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    get_base_model = getattr(model, "get_base_model", None)
    if callable(get_base_model):
        model = get_base_model()
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return model
