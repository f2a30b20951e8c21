"""Train every contract case (tests/contract_cases.py) for a few steps; launched with 1 or 2 processes.

Usage (repository root on PYTHONPATH): python tests/distributed/contract_ddp.py OUTPUT_FILE, or under
`accelerate launch`. The global batch is 16 rows whatever the world size; rank 0 writes each case's final
parameters and task weights to OUTPUT_FILE.
"""

from __future__ import annotations

import os
import sys
import tempfile

import torch
from datasets import Dataset

from hf_fairmtl import FairMTLModel
from hf_fairmtl.trainer import FairMTLTrainer, FairMTLTrainingArguments
from tests.contract_cases import contract_cases
from tests.launching import shut_down_process_group
from tests.synthetic import biased_rows, tabular_config

GLOBAL_BATCH = 16


def train_case(overrides: dict, train: Dataset, heldout: Dataset, world_size: int) -> FairMTLTrainer:
    torch.manual_seed(0)
    args = FairMTLTrainingArguments(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=GLOBAL_BATCH // world_size,
        per_device_eval_batch_size=8,
        max_steps=4,
        learning_rate=1e-2,
        logging_steps=2,
        teacher_interval=2,
        teacher_heldout_size=32,
        train_sampling_strategy="sequential",  # the same global batches whatever the world size
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
        **overrides,
    )
    trainer = FairMTLTrainer(model=FairMTLModel(tabular_config()), args=args, train_dataset=train, eval_dataset=heldout)
    trainer.train()
    return trainer


def main(output_file: str) -> None:
    torch.set_num_threads(1)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    train = Dataset.from_list(biased_rows(GLOBAL_BATCH * 4, seed=31))
    heldout = Dataset.from_list(biased_rows(32, seed=32))
    results = {}
    for case_id, overrides in contract_cases():
        trainer = train_case(overrides, train, heldout, world_size)
        results[case_id] = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
        results[case_id]["task_weights"] = trainer.weighting.task_weights.clone()
    if int(os.environ.get("RANK", "0")) == 0:
        torch.save(results, output_file)


if __name__ == "__main__":
    main(sys.argv[1])
    shut_down_process_group()
