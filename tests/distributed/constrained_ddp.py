"""Train FairMTLTrainer with `strategy="constrained"` for a few steps; launched with 1 or 2 processes by the tests.

Usage (repository root on PYTHONPATH): python tests/distributed/constrained_ddp.py OUTPUT_PREFIX, or the same under
`accelerate launch`/`torchrun`. The global batch is 16 rows whatever the world size; every rank writes its
multipliers after each optimizer step, its final multipliers and parameters to `OUTPUT_PREFIX.rank{r}.pt`.
"""

from __future__ import annotations

import os
import sys
import tempfile

import torch
from datasets import Dataset
from transformers import TrainerCallback

from hf_fairmtl import FairMTLModel
from hf_fairmtl.trainer import FairMTLTrainer, FairMTLTrainingArguments
from tests.launching import shut_down_process_group
from tests.synthetic import biased_rows, tabular_config

GLOBAL_BATCH = 16


class MultiplierHistory(TrainerCallback):
    """The strategy's multipliers after every optimizer step (registered after the strategy's own callback)."""

    def __init__(self, strategy) -> None:
        self.strategy = strategy
        self.history: list[torch.Tensor] = []

    def on_step_end(self, args, state, control, **kwargs) -> None:
        self.history.append(self.strategy.multipliers.detach().cpu().clone())


def main(output_prefix: str) -> None:
    torch.set_num_threads(1)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    rows = biased_rows(GLOBAL_BATCH * 8, seed=21, bias=3.0)
    torch.manual_seed(0)
    args = FairMTLTrainingArguments(
        output_dir=tempfile.mkdtemp(),
        strategy="constrained",
        fairness_target='{"target": 0.2, "auxiliary": 0.1}',
        constraint_window=3,
        multiplier_lr=2.0,
        per_device_train_batch_size=GLOBAL_BATCH // world_size,
        max_steps=8,
        learning_rate=1e-2,
        logging_steps=1,
        train_sampling_strategy="sequential",  # the same global batches whatever the world size
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    trainer = FairMTLTrainer(model=FairMTLModel(tabular_config()), args=args, train_dataset=Dataset.from_list(rows))
    history = MultiplierHistory(trainer.strategy)
    trainer.add_callback(history)
    trainer.train()
    torch.save(
        {
            "world": world_size,
            "history": torch.stack(history.history),
            "multipliers": trainer.strategy.multipliers.cpu().clone(),
            "window_counts": trainer.strategy.window_counts.cpu().clone(),
            "params": {name: p.detach().clone() for name, p in trainer.model.named_parameters()},
        },
        f"{output_prefix}.rank{rank}.pt",
    )


if __name__ == "__main__":
    main(sys.argv[1])
    shut_down_process_group()
