"""Train FairMTLTrainer (weighted + GradNorm) for a few steps; launched with 1 or 2 processes by the tests.

Usage (repository root on PYTHONPATH): python tests/distributed/trainer_ddp.py OUTPUT_FILE, or the same under
`accelerate launch`/`torchrun`.
The global batch is 16 rows whatever the world size; rank 0 writes the final parameters, GradNorm weights and
the logged losses to OUTPUT_FILE.
"""

from __future__ import annotations

import os
import sys
import tempfile

import torch
from datasets import Dataset

from hf_fairmtl import FairMTLModel
from hf_fairmtl.trainer import FairMTLTrainer, FairMTLTrainingArguments
from tests.launching import shut_down_process_group
from tests.synthetic import biased_rows, tabular_config

GLOBAL_BATCH = 16


def main(output_file: str) -> None:
    torch.set_num_threads(1)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rows = biased_rows(GLOBAL_BATCH * 6, seed=11, tasks=("target", "auxiliary", "unlabelled"))
    for row in rows:  # a task with no label anywhere: its head gets no loss (DDP must not complain)
        row["labels"][2] = -100
    torch.manual_seed(0)
    model = FairMTLModel(tabular_config(tasks=("target", "auxiliary", "unlabelled")))
    args = FairMTLTrainingArguments(
        output_dir=tempfile.mkdtemp(),
        strategy="weighted",
        gradnorm=True,
        per_device_train_batch_size=GLOBAL_BATCH // world_size,
        per_device_eval_batch_size=8,
        max_steps=6,
        learning_rate=1e-2,
        logging_steps=1,
        train_sampling_strategy="sequential",  # the same global batches whatever the world size
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    # An odd-sized evaluation set: the last batch is padded across ranks, and the padding must not be counted.
    heldout = Dataset.from_list(biased_rows(37, seed=12, tasks=("target", "auxiliary", "unlabelled")))
    trainer = FairMTLTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), eval_dataset=heldout)
    trainer.train()
    metrics = trainer.evaluate()
    if trainer.is_world_process_zero():
        params = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
        logged = [entry for entry in trainer.state.log_history if "loss" in entry]
        torch.save(
            {
                "params": params,
                "gradnorm": trainer.weighting.task_weights.clone(),
                "logs": logged,
                "metrics": metrics,
                "world": world_size,
            },
            output_file,
        )


if __name__ == "__main__":
    main(sys.argv[1])
    shut_down_process_group()
