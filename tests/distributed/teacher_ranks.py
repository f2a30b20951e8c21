"""Train with the L2T-FMT teacher and save what every rank decided; launched with 1 or 2 processes by the tests.

Usage: python tests/distributed/teacher_ranks.py OUTPUT_DIR   (or under `torchrun --nproc_per_node 2`)
The global batch is 32 rows whatever the world size (sequential sampling), the teacher steps every 2 optimizer
steps with ε-greedy exploration on. Each rank writes `OUTPUT_DIR/rank{r}.pt`: its action history, the trainer's
current actions, the teacher's DQN weights and running bests.
"""

from __future__ import annotations

import os
import sys
import tempfile

import torch
from datasets import Dataset

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from hf_fairmtl import FairMTLModel  # noqa: E402
from hf_fairmtl.trainer import FairMTLTrainer, FairMTLTrainingArguments  # noqa: E402
from tests.launching import shut_down_process_group  # noqa: E402
from tests.synthetic import biased_rows, tabular_config  # noqa: E402

GLOBAL_BATCH = 32
STEPS = 12


def main(output_dir: str) -> None:
    torch.set_num_threads(1)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    torch.manual_seed(0)
    model = FairMTLModel(tabular_config())
    args = FairMTLTrainingArguments(
        output_dir=tempfile.mkdtemp(),
        strategy="teacher",
        gradnorm=True,
        per_device_train_batch_size=GLOBAL_BATCH // world_size,
        max_steps=STEPS,
        learning_rate=1e-2,
        logging_steps=4,
        train_sampling_strategy="sequential",  # the same global batches whatever the world size
        teacher_interval=2,
        teacher_epsilon=0.3,  # exploration on: its draws must agree across ranks too
        teacher_heldout_size=64,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    trainer = FairMTLTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(biased_rows(GLOBAL_BATCH * STEPS, seed=21)),
        eval_dataset=Dataset.from_list(biased_rows(80, seed=22)),
    )
    trainer.train()
    callback = trainer.teacher_callback
    state = callback.state_dict()["teacher"]
    torch.save(
        {
            "world": world_size,
            "rank": rank,
            "history": callback.action_history,
            "task_actions": list(trainer.task_actions),
            "dqn": state["dqn"],
            "best_accuracy": state["best_accuracy"],
            "best_eo_violation": state["best_eo_violation"],
            "params": {name: p.detach().clone() for name, p in trainer.model.named_parameters()},
        },
        os.path.join(output_dir, f"rank{rank}.pt"),
    )


if __name__ == "__main__":
    main(sys.argv[1])
    shut_down_process_group()
