"""PEFT adapters (LoRA and the other PEFT methods) on the shared encoder of a [`FairMTLModel`].

A FairMTL model is not one of the architectures PEFT knows, so its defaults do not apply: PEFT cannot guess the
target modules from `model_type="fairmtl"`, and the task heads are new layers that must be trained fully and
saved with the adapter. The helpers here fill those gaps:

- `default_lora_config(model)`: a `LoraConfig` whose target modules are the encoder's Linear layers (PEFT's own
  choice for the encoder architecture, e.g. `query`/`value` for BERT; every Linear of the tabular MLP) and whose
  `modules_to_save` are the task heads.
- `prepare_peft_model(model, peft_config)`: what `FairMTLTrainer(peft_config=...)` calls, like TRL's trainers.
  Accepts any PEFT config (LoRA, IA3, LoHa, ...) and completes it the same way.
- `save_peft_model` / `load_peft_model`: an adapter folder that rebuilds its base model in a fresh process.

Example:
    ```python
    from hf_fairmtl import FairMTLModel
    from hf_fairmtl.peft_utils import default_lora_config, prepare_peft_model, save_peft_model, load_peft_model

    model = FairMTLModel.from_encoder(encoder_path, tasks=["sentiment", "topic"])
    peft_model = prepare_peft_model(model, default_lora_config(model, r=8))
    ...  # train
    save_peft_model(peft_model, "out/adapter")
    reloaded = load_peft_model("out/adapter")  # same logits; reloaded.merge_and_unload() is a plain FairMTLModel
    ```
"""

from __future__ import annotations

import copy
import os
import re
from typing import Any

from peft import PEFT_TYPE_TO_TUNER_MAPPING, LoraConfig, PeftConfig, PeftModel, get_peft_model
from peft.utils import constants as peft_constants
from peft.utils.other import ModulesToSaveWrapper
from torch import nn
from transformers import PretrainedConfig

from .configuration_fairmtl import FairMTLConfig
from .modeling_fairmtl import FairMTLModel

__all__ = [
    "ALL_LINEAR",
    "FAIRMTL_CONFIG_NAME",
    "complete_peft_config",
    "default_lora_config",
    "encoder_target_modules",
    "head_module_names",
    "is_peft_model",
    "load_peft_model",
    "prepare_peft_model",
    "save_peft_model",
    "task_head",
    "unwrap_fairmtl_model",
]

# Where the encoder sits inside FairMTLModel; adapter module names are relative to the FairMTLModel.
_ENCODER_PREFIX = "encoder."
# The FairMTL config saved next to an adapter. Not `config.json`: transformers would then read the folder as a
# full checkpoint instead of loading the adapter onto `base_model_name_or_path` (which it does without one).
FAIRMTL_CONFIG_NAME = "fairmtl_config.json"
ALL_LINEAR = "all-linear"


def is_peft_model(model: nn.Module) -> bool:
    """Whether `model` is a `peft.PeftModel` (of any task type)."""
    return isinstance(model, PeftModel)


def unwrap_fairmtl_model(model: nn.Module) -> FairMTLModel:
    """The [`FairMTLModel`] inside `model`: itself, or the base model of a `PeftModel`.

    With PEFT, the returned model's heads are `ModulesToSaveWrapper`s and its encoder Linear layers carry adapter
    layers; its `config` is the FairMTL config either way.
    """
    if is_peft_model(model):
        model = model.get_base_model()
    if not isinstance(model, FairMTLModel):
        raise TypeError(f"Expected a FairMTLModel or a PeftModel wrapping one, got {type(model).__name__}")
    return model


def task_head(model: nn.Module, task: str) -> nn.Module:
    """The trainable head of `task`, also under PEFT.

    PEFT wraps each head listed in `modules_to_save` in a `ModulesToSaveWrapper` holding a frozen original and a
    trainable copy per adapter; code that reads or copies a head (the L2T-FMT teacher's state, its look-ahead)
    needs the copy the forward pass uses, not the wrapper with both.
    """
    heads = unwrap_fairmtl_model(model).heads
    if task not in heads:
        raise KeyError(f"Unknown task {task!r}; tasks are {list(heads.keys())}")
    head = heads[task]
    if isinstance(head, ModulesToSaveWrapper) and head.active_adapters and not head.disable_adapters:
        return head.modules_to_save[head.active_adapters[0]]
    return head


def head_module_names(model: nn.Module) -> list[str]:
    """`modules_to_save` entries for the task heads: `["heads.<task>", ...]`.

    One entry per head rather than `"heads"`: PEFT can only wrap a module with a forward, not the `nn.ModuleDict`
    holding them. PEFT matches these as name suffixes, and `heads.<task>` is only a suffix of the head itself.
    """
    config = unwrap_fairmtl_model(model).config
    return [f"heads.{task}" for task in config.tasks]


def encoder_target_modules(
    model: nn.Module, peft_type: str = "LORA", names: list[str] | str | None = None
) -> list[str]:
    """Full names (relative to the FairMTLModel) of the encoder layers an adapter should wrap.

    Args:
        model: A [`FairMTLModel`] (or a `PeftModel` around one).
        peft_type: The PEFT method (`"LORA"`, `"IA3"`, ...); its default layers for the encoder architecture
            are taken from PEFT's own per-architecture table.
        names: Layers to match instead, as in PEFT's `target_modules`: names matched as suffixes (e.g.
            `["query", "key", "value"]`), one regex matched against the encoder's own module names, or
            `"all-linear"` (every Linear layer of the encoder).

    Returns:
        Exact module names such as `encoder.encoder.layer.0.attention.self.query`. Every Linear layer of the
        encoder (except an unused pooler) when PEFT has no defaults for the architecture (the tabular MLP, or an
        unknown encoder). The task heads are never included: they are trained in full through `modules_to_save`.
    """
    base = unwrap_fairmtl_model(model)
    if names is None:
        names = _peft_default_names(base.config, peft_type, "target")
    selected = []
    for name, module in base.named_modules():
        if not name.startswith(_ENCODER_PREFIX) or _is_adapter_internal(name):
            continue
        if names is None or names == ALL_LINEAR:
            # FairMTLModel mean-pools the last hidden states, so a pooler's output is never used: an adapter there
            # would get no gradient (and trip DDP's unused-parameter check).
            matched = isinstance(module, nn.Linear) and "pooler" not in name.split(".")
        elif isinstance(names, str):
            # PEFT's regex entries are written against the bare encoder's names, without our "encoder." prefix.
            matched = re.fullmatch(names, name[len(_ENCODER_PREFIX) :]) is not None
        else:
            matched = any(name == n or name.endswith(f".{n}") for n in names)
        if matched:
            selected.append(name)
    if not selected:
        linear = [n for n, m in base.named_modules() if n.startswith(_ENCODER_PREFIX) and isinstance(m, nn.Linear)]
        raise ValueError(
            f"No encoder module matches {names!r}; pass `target_modules` explicitly in the PEFT config "
            f"(encoder Linear layers: {linear[:6]}{' ...' if len(linear) > 6 else ''})"
        )
    return selected


def default_lora_config(
    model: nn.Module,
    r: int = 8,
    lora_alpha: int | None = None,
    lora_dropout: float = 0.05,
    target_modules: list[str] | str | None = None,
    **lora_kwargs: Any,
) -> LoraConfig:
    """A `LoraConfig` for a FairMTL model: LoRA on the encoder, task heads trained in full and saved.

    Args:
        model: A [`FairMTLModel`].
        r: LoRA rank.
        lora_alpha: LoRA scaling numerator; `2 * r` when not given (a common choice that keeps the update
            scale independent of `r`).
        lora_dropout: Dropout on the LoRA branch.
        target_modules: PEFT `target_modules` (names, a regex, or `"all-linear"`); by default the encoder layers
            from [`encoder_target_modules`].
        **lora_kwargs: Any other `LoraConfig` field (`use_dora`, `init_lora_weights`, `bias`, ...).

    Returns:
        A `LoraConfig` with `task_type=None` (PEFT's generic `PeftModel`, which passes every forward argument,
        `labels` and `group_labels` included, through to the FairMTL model).
    """
    modules_to_save = list(
        dict.fromkeys([*head_module_names(model), *(lora_kwargs.pop("modules_to_save", None) or [])])
    )
    return LoraConfig(
        r=r,
        lora_alpha=lora_alpha if lora_alpha is not None else 2 * r,
        lora_dropout=lora_dropout,
        target_modules=target_modules if target_modules is not None else encoder_target_modules(model, "LORA"),
        modules_to_save=modules_to_save,
        **lora_kwargs,
    )


def complete_peft_config(model: nn.Module, peft_config: PeftConfig) -> PeftConfig:
    """A copy of `peft_config` completed for a FairMTL model (the input is left unchanged).

    Fills `target_modules` (and IA3's `feedforward_modules`) with encoder layers when unset, and adds the task
    heads to `modules_to_save`. Raises for configs that cannot fit this model.
    """
    if peft_config.is_prompt_learning:
        raise ValueError(
            f"{type(peft_config).__name__} is a prompt-learning method: it prepends virtual tokens and needs a "
            "causal/seq2seq task_type. FairMTLModel supports the layer-adapter methods (LoRA, IA3, LoHa, ...)."
        )
    if getattr(peft_config, "task_type", None) is not None:
        raise ValueError(
            f"task_type={peft_config.task_type!r} makes PEFT wrap the model for a transformers head it does not "
            "have; leave task_type=None for FairMTLModel."
        )
    if not hasattr(peft_config, "modules_to_save"):
        raise ValueError(
            f"{type(peft_config).__name__} has no `modules_to_save`, so the task heads (new layers) could be "
            "neither trained nor saved with the adapter."
        )
    config = copy.deepcopy(peft_config)
    peft_type = str(getattr(config.peft_type, "value", config.peft_type))
    if getattr(config, "target_modules", None) is None and getattr(config, "target_parameters", None) is None:
        config.target_modules = encoder_target_modules(model, peft_type)
    elif getattr(config, "target_modules", None) == ALL_LINEAR:
        # PEFT's "all-linear" would also take the heads' layers; here it means every Linear of the encoder.
        config.target_modules = encoder_target_modules(model, peft_type, ALL_LINEAR)
    if hasattr(config, "feedforward_modules") and config.feedforward_modules is None:
        # IA3 treats feed-forward layers differently (scales their input) and needs them to be among the
        # targets; PEFT keeps a per-architecture table of them.
        names = _peft_default_names(unwrap_fairmtl_model(model).config, peft_type, "feedforward")
        feedforward = encoder_target_modules(model, peft_type, names) if names else []
        targets = config.target_modules
        config.feedforward_modules = [
            m
            for m in feedforward
            if (
                re.fullmatch(targets, m)
                if isinstance(targets, str)
                else any(m == t or m.endswith(f".{t}") for t in targets)
            )
        ]
    config.modules_to_save = list(dict.fromkeys([*head_module_names(model), *(config.modules_to_save or [])]))
    return config


def prepare_peft_model(
    model: nn.Module,
    peft_config: PeftConfig | None = None,
    adapter_name: str = "default",
    base_model_name_or_path: str | None = None,
) -> PeftModel:
    """Wrap a FairMTL model with a PEFT adapter; what the trainer calls when given `peft_config=`.

    Args:
        model: A [`FairMTLModel`], or a `PeftModel` around one (returned as is when `peft_config` is `None`).
        peft_config: Any PEFT layer-adapter config; completed by [`complete_peft_config`]. Defaults to
            [`default_lora_config`].
        adapter_name: Name of the adapter.
        base_model_name_or_path: Recorded in the adapter config so the adapter knows its base. Defaults to the
            model's own checkpoint (`model.name_or_path`) or, for a model built by `FairMTLModel.from_encoder`,
            the pretrained encoder it started from.

    Returns:
        A `PeftModel` whose trainable parameters are the adapter weights and the task heads.
    """
    if is_peft_model(model):
        if peft_config is None:
            return model
        raise ValueError(
            "The model already has a PEFT adapter; pass peft_config=None to train it, or merge_and_unload() first"
        )
    base = unwrap_fairmtl_model(model)
    peft_config = complete_peft_config(base, peft_config if peft_config is not None else default_lora_config(base))
    if base_model_name_or_path is None:
        base_model_name_or_path = base.name_or_path or base.config.encoder_name_or_path or None
    # get_peft_model warns when this differs from `model.name_or_path`, then overwrites it; the real value is set
    # after it (a `from_encoder` model has an empty name_or_path, its base is the pretrained encoder).
    peft_config.base_model_name_or_path = base.name_or_path or None
    # transformers renamed `is_gradient_checkpointing` (deprecated, warns) to `is_activation_checkpointing`.
    if hasattr(type(base), "is_activation_checkpointing"):
        checkpointing = base.is_activation_checkpointing
    else:
        checkpointing = base.is_gradient_checkpointing
    if checkpointing and base.config.encoder_type == "transformer":
        # Reentrant checkpointing needs an input that requires grad, and the embeddings are frozen under PEFT.
        base.encoder.enable_input_require_grads()
    peft_model = get_peft_model(base, peft_config, adapter_name=adapter_name)
    peft_model.peft_config[adapter_name].base_model_name_or_path = base_model_name_or_path
    return peft_model


def save_peft_model(model: PeftModel, save_directory: str | os.PathLike, **save_kwargs: Any) -> None:
    """Save the adapter, the task heads and the FairMTL config, so [`load_peft_model`] rebuilds the model.

    The folder holds PEFT's `adapter_config.json` / `adapter_model.safetensors` (adapter weights and trained
    heads) and `fairmtl_config.json` (tasks, groups, encoder), which the base checkpoint does not provide when the
    base is a plain pretrained encoder (a model from `FairMTLModel.from_encoder`). When the base is a saved
    FairMTL checkpoint, `transformers.AutoModel.from_pretrained(folder)` also loads the folder (base + adapter).

    Args:
        model: The `PeftModel` from [`prepare_peft_model`].
        save_directory: Output folder.
        **save_kwargs: Passed to `PeftModel.save_pretrained` (`is_main_process`, `selected_adapters`, ...).
    """
    if not is_peft_model(model):
        raise TypeError(f"save_peft_model expects a PeftModel, got {type(model).__name__}; use save_pretrained")
    model.save_pretrained(save_directory, **save_kwargs)
    if save_kwargs.get("is_main_process", True):
        unwrap_fairmtl_model(model).config.to_json_file(os.path.join(save_directory, FAIRMTL_CONFIG_NAME))


def load_peft_model(
    adapter_path: str | os.PathLike,
    base_model: FairMTLModel | str | os.PathLike | None = None,
    is_trainable: bool = False,
    adapter_name: str = "default",
    **from_pretrained_kwargs: Any,
) -> PeftModel:
    """Load a FairMTL adapter folder (from [`save_peft_model`] or `PeftModel.save_pretrained`) onto its base.

    Args:
        adapter_path: Folder (or Hub repo) with `adapter_config.json` and the adapter weights.
        base_model: The base model, or where to load it from. By default the adapter's
            `base_model_name_or_path`: a FairMTL checkpoint loads with `FairMTLModel.from_pretrained`; a plain
            pretrained encoder is combined with the `fairmtl_config.json` of the adapter folder through
            `FairMTLModel.from_encoder` (its random heads are replaced by the saved ones).
        is_trainable: Load the adapter for further training instead of inference.
        adapter_name: Name of the adapter.
        **from_pretrained_kwargs: Passed to the base model's `from_pretrained` (`revision`, `dtype`, ...).

    Returns:
        A `PeftModel` in eval mode unless `is_trainable`.
    """
    adapter_path = str(adapter_path)
    peft_config = PeftConfig.from_pretrained(adapter_path)
    if not isinstance(base_model, nn.Module):
        base_model = _load_base_model(
            adapter_path, base_model or peft_config.base_model_name_or_path, **from_pretrained_kwargs
        )
    model = PeftModel.from_pretrained(base_model, adapter_path, adapter_name=adapter_name, is_trainable=is_trainable)
    if not is_trainable:
        model.eval()
    return model


def _load_base_model(adapter_path: str, base_path: str | os.PathLike | None, **kwargs: Any) -> FairMTLModel:
    if base_path is None:
        base_path = _saved_fairmtl_config(adapter_path, **_hub_kwargs(kwargs)).encoder_name_or_path
        if base_path is None:
            raise ValueError(
                f"The adapter at {adapter_path} records no base model: pass `base_model` (the FairMTLModel the "
                "adapter was trained on, or the folder it was saved to)"
            )
    base_path = str(base_path)
    if (
        PretrainedConfig.get_config_dict(base_path, **_hub_kwargs(kwargs))[0].get("model_type")
        == FairMTLConfig.model_type
    ):
        return FairMTLModel.from_pretrained(base_path, **kwargs)
    # The base is the pretrained encoder itself: the task layout comes from the adapter folder.
    config_kwargs = _saved_fairmtl_config(adapter_path, **_hub_kwargs(kwargs)).to_dict()
    for key in ("encoder", "encoder_name_or_path", "model_type", "transformers_version", "auto_map", "architectures"):
        config_kwargs.pop(key, None)
    return FairMTLModel.from_encoder(base_path, **config_kwargs)


def _saved_fairmtl_config(adapter_path: str, **hub_kwargs: Any) -> FairMTLConfig:
    path = os.path.join(adapter_path, FAIRMTL_CONFIG_NAME)
    if not os.path.isdir(adapter_path):
        # A Hub repo id: fetch the file; one the repo lacks is reported below like a missing local file.
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError

        try:
            path = hf_hub_download(adapter_path, FAIRMTL_CONFIG_NAME, **hub_kwargs)
        except EntryNotFoundError:
            path = ""
    if not os.path.isfile(path):
        raise ValueError(
            f"{adapter_path} has no {FAIRMTL_CONFIG_NAME} (save with hf_fairmtl.peft_utils.save_peft_model) and its "
            "base model is not a FairMTL checkpoint: pass `base_model`"
        )
    return FairMTLConfig.from_json_file(path)


def _hub_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    keys = ("revision", "token", "cache_dir", "local_files_only")
    return {key: kwargs[key] for key in keys if key in kwargs}


def _peft_default_names(config: FairMTLConfig, peft_type: str, kind: str) -> list[str] | str | None:
    """PEFT's default layers for this encoder architecture (names or a regex), or None: every encoder Linear."""
    if config.encoder_type != "transformer":
        return None
    peft_type = peft_type.upper()
    # Most tuners expose their table as `target_module_mapping`; IA3 keeps its two tables in peft.utils.constants.
    table = (
        getattr(PEFT_TYPE_TO_TUNER_MAPPING.get(peft_type), "target_module_mapping", None) if kind == "target" else None
    )
    if table is None:
        table = getattr(peft_constants, f"TRANSFORMERS_MODELS_TO_{peft_type}_{kind.upper()}_MODULES_MAPPING", {})
    names = table.get(config.encoder["model_type"])
    return names if isinstance(names, str) or names is None else list(names)


def _is_adapter_internal(name: str) -> bool:
    # Layers PEFT itself added (lora_A/lora_B, the wrapped base_layer) are never targets of a new adapter.
    return any(part in name.split(".") for part in ("lora_A", "lora_B", "base_layer", "lora_dropout"))
