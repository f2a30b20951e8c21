"""L2T-FMT (Roy & Ntoutsi, 2022) on ACS PUMS person records through folktables: five tasks per person.

Tasks (same definitions as the folktables problems): employment, income > 50k, health insurance, travel
time > 20 min, income below 250 % of the poverty line. Protected attribute: sex (race is evaluated too).
Methods, as in the paper's Table 1: Vanilla MTL (accuracy + GradNorm), MTA-F, G-FMT, L2T-FMT (the teacher
picks accuracy or fairness loss per task, GradNorm weights), and single-task models (STL) as the reference
of ARA = mean_t Acc_MTL / Acc_STL (higher is better) and AREO = mean_t EO_MTL / EO_STL (lower is better).

ACS PUMS cannot ship with the package. Either point `--root_dir` at files you have, laid out the way
folktables reads them (`{root_dir}/{year}/1-Year/psam_p{state FIPS}.csv`), or pass `--download` (online)
to let folktables fetch them from census.gov into `--root_dir`.

    python examples/acs_l2t_fmt.py --download --states CA       # 50,000 random Californians (--max_rows)
    python examples/acs_l2t_fmt.py --root_dir data --max_rows 0  # every person record of your files
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 examples/acs_l2t_fmt.py --root_dir data
"""

from __future__ import annotations

import argparse
import dataclasses

from transformers import set_seed

from hf_fairmtl import FairMTLConfig, FairMTLModel
from hf_fairmtl.data import build_multitask_dataset, load_acs_sources
from hf_fairmtl.experiments import (
    RunInfo,
    method_dir,
    save_method_result,
    save_trainer_result,
    summarize_run,
    write_run_info,
)
from hf_fairmtl.metrics import relative_scores
from hf_fairmtl.trainer import FairMTLTrainer, FairMTLTrainingArguments

# The paper's methods. All use the robust log-loss F_t = max_g NLL(positives of g) + max_g NLL(negatives of g).
METHODS = {
    "vanilla+gradnorm": {"strategy": "vanilla", "gradnorm": True},
    "mtaf": {"strategy": "mtaf"},
    "g-fmt": {"strategy": "greedy", "gradnorm": True},
    "l2t-fmt": {"strategy": "teacher", "gradnorm": True},
}
STL = "stl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root_dir", default="data", help="folktables data folder.")
    parser.add_argument("--download", action="store_true", help="Download missing state files (needs internet).")
    parser.add_argument("--states", nargs="+", default=["CA"])
    parser.add_argument("--year", type=int, default=2018)
    parser.add_argument("--max_rows", type=int, default=50000, help="Person records to keep (0: all).")
    parser.add_argument("--max_steps", type=int, default=500, help="Optimizer steps per model.")
    parser.add_argument("--attribute", default="sex", choices=["sex", "race"], help="Attribute the losses use.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--output_dir", default="runs/acs_l2t_fmt")
    args = parser.parse_args()

    # 1. Data: one row per person with all five labels (-100 where the census leaves the variable blank).
    splits = load_acs_sources(
        root_dir=args.root_dir,
        states=args.states,
        year=args.year,
        download=args.download,
        max_rows=args.max_rows or None,
        race_grouping="binary",  # white / non-white, as most fairness studies of ACS do
    )
    config = FairMTLConfig(**splits.config_kwargs(), tabular_hidden_sizes=[128, 64])
    train = build_multitask_dataset(splits.train_sources, config)
    test = build_multitask_dataset(splits.test_sources, config)
    common = {
        "per_device_train_batch_size": 256,
        "per_device_eval_batch_size": 2048,
        "learning_rate": 1e-3,
        "max_steps": args.max_steps,
        "logging_steps": 25,
        "save_strategy": "no",
        "report_to": "none",
        "fairness_loss": "robust_eo",
        "fairness_attributes": dict.fromkeys(config.tasks, [args.attribute]),
        # The teacher scores its look-ahead on the trainer's eval_dataset: a part of the training rows.
        "teacher_interval": 10,
    }
    parts = train.train_test_split(test_size=min(1024, len(train) // 5), seed=0)
    train, validation = parts["train"], parts["test"]

    for seed in args.seeds:
        # 2. The multi-task methods.
        mtl = {}
        for name, settings in METHODS.items():
            set_seed(seed)
            training_args = FairMTLTrainingArguments(
                output_dir=str(method_dir(args.output_dir, name, seed)), seed=seed, **common, **settings
            )
            trainer = FairMTLTrainer(
                model=FairMTLModel(config), args=training_args, train_dataset=train, eval_dataset=validation
            )
            trainer.train()
            mtl[name] = trainer.evaluate(test)
            save_trainer_result(args.output_dir, name, seed, trainer, mtl[name])

        # 3. STL: one fair model per task (accuracy + robust log-loss), trained on that task's labels only.
        stl: dict[str, float] = {}
        for task in config.tasks:
            set_seed(seed)
            task_config = FairMTLConfig(**{**splits.config_kwargs(), "tasks": [task]}, tabular_hidden_sizes=[128, 64])
            only = [dataclasses.replace(s, tasks={task: s.tasks[task]}) for s in splits.train_sources]
            held_out = [dataclasses.replace(s, tasks={task: s.tasks[task]}) for s in splits.test_sources]
            training_args = FairMTLTrainingArguments(
                output_dir=str(method_dir(args.output_dir, f"{STL}-{task}", seed)),
                seed=seed,
                strategy="weighted",
                **{**common, "fairness_attributes": {task: [args.attribute]}},
            )
            trainer = FairMTLTrainer(
                model=FairMTLModel(task_config),
                args=training_args,
                train_dataset=build_multitask_dataset(only, task_config),
            )
            trainer.train()
            metrics = trainer.evaluate(build_multitask_dataset(held_out, task_config))
            stl.update({k: v for k, v in metrics.items() if k.startswith(f"eval_{task}_")})
        if trainer.is_world_process_zero():
            save_method_result(args.output_dir, STL, seed, stl)
            # 4. ARA / AREO against STL (paper Table 1).
            print(f"\nseed {seed}: relative to STL ({args.attribute})")
            reference = task_figures(stl, config.tasks, args.attribute)
            for name, metrics in mtl.items():
                try:
                    scores = relative_scores(task_figures(metrics, config.tasks, args.attribute), reference)
                    print(f"  {name:<18} ARA {scores['ARA']:.3f}   AREO {scores['AREO']:.3f}")
                except ValueError as error:  # e.g. an STL model with EO violation 0 on a tiny test set
                    print(f"  {name:<18} ARA/AREO undefined: {error}")

    # 5. Table and report, written and printed once (by the main process) under `accelerate launch`.
    if trainer.is_world_process_zero():
        write_run_info(args.output_dir, RunInfo.from_config(config, [*METHODS, STL], args.seeds))
        print(summarize_run(args.output_dir))


def task_figures(metrics: dict, tasks: list[str], attribute: str) -> dict[str, dict[str, float]]:
    """Per task accuracy, EO violation and collapse flag: the input of `relative_scores`."""
    return {
        task: {
            "accuracy": metrics[f"eval_{task}_accuracy"],
            "eo_violation": metrics[f"eval_{task}_{attribute}_eo_violation"],
            "collapsed": metrics.get(f"eval_{task}_collapsed", 0.0),
        }
        for task in tasks
    }


if __name__ == "__main__":
    main()
