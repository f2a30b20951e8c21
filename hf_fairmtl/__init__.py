"""hf_fairmtl: fairness-aware multi-task learning for Hugging Face Transformers."""

from transformers import AutoConfig, AutoModel

from .configuration_fairmtl import FairMTLConfig
from .data import DataCollatorForFairMTL, TaskSource, build_multitask_dataset, fit_vocabularies
from .modeling_fairmtl import FairMTLModel, FairMTLModelOutput
from .teacher import TeacherCallback
from .trainer import FairMTLTrainer, FairMTLTrainingArguments

__version__ = "0.1.0"

AutoConfig.register(FairMTLConfig.model_type, FairMTLConfig, exist_ok=True)
AutoModel.register(FairMTLConfig, FairMTLModel, exist_ok=True)
# save_pretrained then writes `auto_map` and copies both files next to the weights, so the checkpoint
# loads with trust_remote_code=True where hf_fairmtl is not installed.
FairMTLConfig.register_for_auto_class()
FairMTLModel.register_for_auto_class("AutoModel")

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
