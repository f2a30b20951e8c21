"""Train `adversarial`, `balanced` and `proxy_groups` a few steps; launched with 1 or 2 processes by the tests.

Usage (repository root on PYTHONPATH): python tests/distributed/debiasing_ddp.py OUTPUT_FILE, or under
`accelerate launch`. The global batch is 16 rows (8 per micro-batch, 2 accumulation steps) whatever the world
size; rank 0 writes each case's model, adversary and attribute-head parameters and the balanced running counts.
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

GLOBAL_MICRO_BATCH = 8
CASES = {
    "adversarial_eo": {"strategy": "adversarial", "adversary_eo": True, "adversary_schedule": "ganin"},
    "adversarial_transfer": {"strategy": "adversarial", "fairness_attributes": {"auxiliary": ["group"]}},
    "balanced_running": {"strategy": "balanced", "balanced_counts": "running"},
    "proxy_groups": {"strategy": "proxy_groups", "fairness_loss": "eps_deo"},
}


def train_case(overrides: dict, train: Dataset, world_size: int) -> FairMTLTrainer:
    torch.manual_seed(0)
    args = FairMTLTrainingArguments(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=GLOBAL_MICRO_BATCH // world_size,
        gradient_accumulation_steps=2,
        max_steps=4,
        learning_rate=1e-2,
        adversary_lr=1e-2,
        logging_steps=2,
        train_sampling_strategy="sequential",  # the same global batches whatever the world size
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
        **overrides,
    )
    trainer = FairMTLTrainer(model=FairMTLModel(tabular_config()), args=args, train_dataset=train)
    trainer.train()
    return trainer


def main(output_file: str) -> None:
    torch.set_num_threads(1)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rows = biased_rows(GLOBAL_MICRO_BATCH * 8, seed=41)
    for i, row in enumerate(rows):  # a third of the rows without a known group
        if i % 3 == 0:
            row["group_labels"] = [-1]
    train = Dataset.from_list(rows)
    results = {}
    for case_id, overrides in CASES.items():
        trainer = train_case(overrides, train, world_size)
        state = {f"model.{name}": p.detach().clone() for name, p in trainer.model.named_parameters()}
        for kind in ("adversaries", "heads"):  # adversarial's group classifiers, proxy_groups' attribute heads
            modules = getattr(trainer.strategy, kind, None)
            if modules is not None:
                state.update({f"{kind}.{name}": p.detach().clone() for name, p in modules.named_parameters()})
        for key, counts in getattr(trainer.strategy, "counts", {}).items():
            state[f"counts.{key}"] = counts.clone()
        results[case_id] = state
    if int(os.environ.get("RANK", "0")) == 0:
        torch.save(results, output_file)


if __name__ == "__main__":
    main(sys.argv[1])
    shut_down_process_group()
