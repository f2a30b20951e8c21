"""Bad settings refused with an error naming the setting, column or file (issue 17; data-side cases live in
tests/test_data_builder.py and tests/test_collator.py, trainer arguments in tests/test_trainer.py)."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from transformers import AutoModel, Trainer, TrainingArguments

from hf_fairmtl import DataCollatorForFairMTL, FairMTLConfig, FairMTLModel

from .conftest import tiny_bert_dict


def test_num_labels_for_an_unknown_task_is_refused():
    with pytest.raises(
        ValueError, match=r"`num_labels` names unknown task 'topik', not in tasks .*did you mean 'topic'"
    ):
        FairMTLConfig(tasks=["sentiment", "topic"], num_labels={"topik": 3}, num_features=4)
    with pytest.raises(ValueError, match=r"`task_id2label` names unknown task 'sentimnt'"):
        FairMTLConfig(tasks=["sentiment"], task_id2label={"sentimnt": {0: "neg", 1: "pos"}}, num_features=4)
    # The right name is taken, so the typo was the only problem.
    assert FairMTLConfig(tasks=["sentiment", "topic"], num_labels={"topic": 3}, num_features=4).task_num_labels == {
        "sentiment": 2,
        "topic": 3,
    }


def test_attribute_without_group_vocab_is_refused_by_the_config():
    """Refused when the config is built, for every strategy (vanilla too), not later inside the trainer."""
    with pytest.raises(ValueError, match=r"Protected attribute 'race' has no group_vocab entry.*fit_vocabularies"):
        FairMTLConfig(
            tasks=["y"],
            protected_attributes=["gender", "race"],
            group_vocab={"gender": ["female", "male"]},
            num_features=4,
        )


def test_a_plain_trainer_gets_no_half_configured_model(tmp_path):
    """With the vocabulary given, vanilla training through a plain Trainer works on rows with groups."""
    config = FairMTLConfig(
        tasks=["y"], protected_attributes=["gender"], group_vocab={"gender": ["f", "m"]}, num_features=3
    )
    rows = Dataset.from_list(
        [{"features": [float(i), 1.0, 0.0], "labels": [i % 2], "group_labels": [i % 2]} for i in range(8)]
    )
    args = TrainingArguments(str(tmp_path), max_steps=2, report_to="none", use_cpu=True, per_device_train_batch_size=4)
    trainer = Trainer(model=FairMTLModel(config), args=args, train_dataset=rows, data_collator=DataCollatorForFairMTL())
    assert trainer.train().training_loss > 0


def test_task_id2label_must_match_the_classes():
    with pytest.raises(ValueError, match=r"`task_id2label\['y'\]` must give distinct names to the ids 0..C-1"):
        FairMTLConfig(tasks=["y"], task_id2label={"y": {1: "a", 2: "b"}}, num_features=4)
    with pytest.raises(ValueError, match=r"`task_label2id\['y'\]` names \['a', 'b'\] but label_vocab\['y'\] is"):
        FairMTLConfig(tasks=["y"], label_vocab={"y": ["b", "a"]}, task_label2id={"y": {"a": 0, "b": 1}}, num_features=4)
    with pytest.raises(ValueError, match=r"label_vocab\['y'\] has 2 names but task 'y' has 3 classes"):
        FairMTLConfig(tasks=["y"], task_id2label={"y": {0: "a", 1: "b"}}, num_labels={"y": 3}, num_features=4)


@pytest.mark.parametrize("load", [FairMTLModel.from_pretrained, FairMTLConfig.from_pretrained])
def test_loading_a_folder_without_config_json_names_the_file(load, tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(OSError, match=rf"No config.json found at {tmp_path}/config.json"):
        load(str(tmp_path))


def test_auto_model_on_a_folder_without_config_json_names_it(tmp_path):
    with pytest.raises((OSError, ValueError), match="config.json"):
        AutoModel.from_pretrained(str(tmp_path))


def test_text_model_without_input_ids_hints_at_tokenizing():
    model = FairMTLModel(FairMTLConfig(tasks=["y"], encoder=tiny_bert_dict()))
    with pytest.raises(ValueError, match=r"pass `input_ids`.*build_multitask_dataset\(sources, config, tokenizer="):
        model(labels=torch.tensor([[1]]))
