"""PEFT adapters on FairMTL models: targets, training, save/reload in a fresh process, merging."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import peft
import pytest
import torch
from transformers import BertConfig, BertModel

from hf_fairmtl import FairMTLConfig, FairMTLModel
from hf_fairmtl.peft_utils import (
    FAIRMTL_CONFIG_NAME,
    complete_peft_config,
    default_lora_config,
    encoder_target_modules,
    load_peft_model,
    prepare_peft_model,
    save_peft_model,
    task_head,
    unwrap_fairmtl_model,
)

from .conftest import TINY_VOCAB_SIZE, tiny_bert_dict

REPO_ROOT = Path(__file__).resolve().parents[1]


def text_batch(config: FairMTLConfig, batch_size: int = 8, seq_len: int = 7, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.stack(
        [torch.randint(0, config.task_num_labels[t], (batch_size,), generator=generator) for t in config.tasks], 1
    )
    labels[::3, 1] = -100  # some rows lack the second task's label, as in a multi-source dataset
    return {
        "input_ids": torch.randint(1, TINY_VOCAB_SIZE, (batch_size, seq_len), generator=generator),
        "attention_mask": torch.ones(batch_size, seq_len, dtype=torch.long),
        "labels": labels,
        "group_labels": torch.randint(-1, 2, (batch_size, len(config.protected_attributes)), generator=generator),
    }


def tabular_batch(config: FairMTLConfig, batch_size: int = 16, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {
        "features": torch.randn(batch_size, config.num_features, generator=generator),
        "labels": torch.randint(0, 2, (batch_size, config.num_tasks), generator=generator),
        "group_labels": torch.randint(0, 2, (batch_size, len(config.protected_attributes)), generator=generator),
    }


def train_steps(model: torch.nn.Module, batch: dict, steps: int = 4) -> None:
    """A plain torch loop on the model's own loss (the trainer integration is tested with the trainer)."""
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    for _ in range(steps):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def logits_of(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, ...]:
    model.eval()
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "group_labels")}
    with torch.no_grad():
        return tuple(t.clone() for t in model(**inputs).logits)


def snapshot(model: torch.nn.Module) -> dict[str, tuple[bool, torch.Tensor]]:
    return {name: (p.requires_grad, p.detach().clone()) for name, p in model.named_parameters()}


def assert_only_trainable_changed(before: dict, model: torch.nn.Module) -> set[str]:
    """Every trainable tensor moved, every frozen one is bit-identical; returns the trainable names."""
    after = dict(model.named_parameters())
    assert before.keys() == after.keys()
    trainable = {name for name, (grad, _) in before.items() if grad}
    for name, (grad, value) in before.items():
        if grad:
            assert not torch.equal(value, after[name]), f"trainable {name} did not change"
        else:
            assert torch.equal(value, after[name]), f"frozen {name} changed"
    return trainable


def assert_same_logits(got, expected, atol: float = 0.0) -> None:
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=0, atol=atol)


@pytest.fixture
def saved_text_base(tmp_path, text_config) -> Path:
    """A FairMTL checkpoint (random tiny BERT) the adapter is trained on and reloaded onto."""
    torch.manual_seed(0)
    FairMTLModel(text_config).save_pretrained(tmp_path / "base")
    return tmp_path / "base"


def test_default_lora_config_targets_encoder_and_saves_heads(text_config, tabular_config):
    model = FairMTLModel(text_config)
    config = default_lora_config(model, r=4)
    assert config.target_modules == {
        "encoder.encoder.layer.0.attention.self.query",
        "encoder.encoder.layer.0.attention.self.value",
    }
    assert config.modules_to_save == ["heads.sentiment", "heads.topic"]
    assert config.lora_alpha == 8 and config.task_type is None

    tabular = FairMTLModel(tabular_config)
    # The tabular MLP has no PEFT defaults: every Linear of the encoder, none of the heads.
    assert encoder_target_modules(tabular) == ["encoder.layers.0"]
    # "all-linear" means the encoder's Linear layers, not the heads' (and not BERT's unused pooler).
    completed = complete_peft_config(model, peft.LoraConfig(target_modules="all-linear"))
    assert not any(name.startswith("heads") or "pooler" in name for name in completed.target_modules)
    assert len(completed.target_modules) == 6  # q, k, v, attention output, intermediate, output


def test_lora_text_train_save_reload_in_fresh_process_and_merge(tmp_path, text_config, saved_text_base):
    base = FairMTLModel.from_pretrained(saved_text_base)
    peft_model = prepare_peft_model(base, default_lora_config(base, r=4, lora_dropout=0.0))
    assert peft_model.peft_config["default"].base_model_name_or_path == str(saved_text_base)
    batch = text_batch(text_config)

    before = snapshot(peft_model)
    train_steps(peft_model, batch)
    trainable = assert_only_trainable_changed(before, peft_model)
    assert any("lora_A" in name for name in trainable) and any("lora_B" in name for name in trainable)
    assert {name for name in trainable if "lora_" not in name} == {
        f"base_model.model.heads.{task}.modules_to_save.default.out_proj.{kind}"
        for task in text_config.tasks
        for kind in ("weight", "bias")
    }
    # The head the forward pass uses is the trained copy, also through task_head().
    assert task_head(peft_model, "topic") is peft_model.base_model.model.heads["topic"].modules_to_save["default"]

    probe = text_batch(text_config, batch_size=5, seed=1)
    expected = logits_of(peft_model, probe)
    adapter_dir = tmp_path / "adapter"
    save_peft_model(peft_model, adapter_dir)
    assert {"adapter_config.json", "adapter_model.safetensors", FAIRMTL_CONFIG_NAME} <= set(os.listdir(adapter_dir))
    torch.save({"inputs": probe, "logits": expected}, tmp_path / "expected.pt")

    # A fresh interpreter: nothing shared with this process but the files.
    script = textwrap.dedent(
        f"""
        import json, sys
        import torch
        torch.set_num_threads(1)
        from peft import PeftModel
        from transformers import AutoModel
        from hf_fairmtl import FairMTLModel
        from hf_fairmtl.peft_utils import load_peft_model

        saved = torch.load({str(tmp_path / "expected.pt")!r})
        inputs = {{k: v for k, v in saved["inputs"].items() if k not in ("labels", "group_labels")}}
        loaded = {{
            "load_peft_model": load_peft_model({str(adapter_dir)!r}),
            "PeftModel.from_pretrained": PeftModel.from_pretrained(
                FairMTLModel.from_pretrained({str(saved_text_base)!r}), {str(adapter_dir)!r}
            ),
            "AutoModel.from_pretrained": AutoModel.from_pretrained({str(adapter_dir)!r}),
        }}
        result = {{}}
        for name, model in loaded.items():
            model.eval()
            with torch.no_grad():
                logits = model(**inputs).logits
            result[name] = all(torch.equal(a, b) for a, b in zip(logits, saved["logits"], strict=True))
        print(json.dumps(result))
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result == {"load_peft_model": True, "PeftModel.from_pretrained": True, "AutoModel.from_pretrained": True}

    merged = peft_model.merge_and_unload()
    assert type(merged) is FairMTLModel
    assert not any("lora_" in name or "modules_to_save" in name for name, _ in merged.named_parameters())
    assert_same_logits(logits_of(merged, probe), expected, atol=1e-5)
    # The merged model is a plain checkpoint again.
    merged.save_pretrained(tmp_path / "merged")
    assert_same_logits(logits_of(FairMTLModel.from_pretrained(tmp_path / "merged"), probe), expected, atol=1e-5)


def test_lora_tabular_linear_layers(tmp_path, tabular_config):
    torch.manual_seed(0)
    FairMTLModel(tabular_config).save_pretrained(tmp_path / "base")
    base = FairMTLModel.from_pretrained(tmp_path / "base")
    peft_model = prepare_peft_model(base, default_lora_config(base, r=2, lora_dropout=0.0))
    assert peft_model.peft_config["default"].target_modules == {"encoder.layers.0"}
    batch = tabular_batch(tabular_config)

    before = snapshot(peft_model)
    train_steps(peft_model, batch)
    trainable = assert_only_trainable_changed(before, peft_model)
    assert {name.split(".modules_to_save")[0] for name in trainable if "lora_" not in name} == {
        "base_model.model.heads.income",
        "base_model.model.heads.employment",
    }
    assert any(name.startswith("base_model.model.encoder.layers.0.lora_A") for name in trainable)

    probe = tabular_batch(tabular_config, batch_size=6, seed=3)
    expected = logits_of(peft_model, probe)
    save_peft_model(peft_model, tmp_path / "adapter")
    assert_same_logits(logits_of(load_peft_model(tmp_path / "adapter"), probe), expected)
    assert_same_logits(logits_of(peft_model.merge_and_unload(), probe), expected, atol=1e-5)


def test_adapter_on_pretrained_encoder_reloads_from_encoder_and_saved_config(tmp_path):
    """A `from_encoder` model has no FairMTL checkpoint: the adapter folder carries the task layout."""
    BertModel(BertConfig(**tiny_bert_dict())).save_pretrained(tmp_path / "encoder")
    model = FairMTLModel.from_encoder(
        str(tmp_path / "encoder"),
        tasks=["toxicity", "sentiment"],
        protected_attributes=["dialect"],
        group_vocab={"dialect": ["aae", "sae"]},
    )
    peft_model = prepare_peft_model(model, default_lora_config(model, r=2, lora_dropout=0.0))
    assert peft_model.peft_config["default"].base_model_name_or_path == str(tmp_path / "encoder")
    batch = text_batch(unwrap_fairmtl_model(peft_model).config)
    train_steps(peft_model, batch, steps=2)
    expected = logits_of(peft_model, batch)
    save_peft_model(peft_model, tmp_path / "adapter")

    reloaded = load_peft_model(tmp_path / "adapter")
    assert unwrap_fairmtl_model(reloaded).config.tasks == ["toxicity", "sentiment"]
    assert_same_logits(logits_of(reloaded, batch), expected)


def test_other_peft_methods_are_completed_for_the_encoder(text_config):
    model = FairMTLModel(text_config)
    ia3 = complete_peft_config(model, peft.IA3Config())
    # PEFT's IA3 defaults for BERT, placed on the encoder; feed-forward layers are among the targets.
    assert {name.rsplit(".", 1)[-1] for name in ia3.target_modules} == {"key", "value", "dense"}
    assert ia3.feedforward_modules and set(ia3.feedforward_modules) <= set(ia3.target_modules)
    assert ia3.modules_to_save == ["heads.sentiment", "heads.topic"]
    peft_model = prepare_peft_model(model, peft.LoHaConfig(r=2))
    batch = text_batch(text_config)
    before = snapshot(peft_model)
    train_steps(peft_model, batch, steps=2)
    assert any("hada_" in name for name in assert_only_trainable_changed(before, peft_model))


def test_prepare_peft_model_rejects_configs_that_cannot_fit(text_config):
    model = FairMTLModel(text_config)
    with pytest.raises(ValueError, match="prompt-learning"):
        prepare_peft_model(model, peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    with pytest.raises(ValueError, match="task_type"):
        prepare_peft_model(model, peft.LoraConfig(task_type="SEQ_CLS"))
    peft_model = prepare_peft_model(model)
    assert prepare_peft_model(peft_model) is peft_model  # already wrapped, nothing to add
    with pytest.raises(ValueError, match="already has a PEFT adapter"):
        prepare_peft_model(peft_model, peft.LoraConfig())
