"""`hf-fairmtl`: one-line errors naming the culprit, config files, train → evaluate → report, the default run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hf_fairmtl.cli import main, parse_arguments
from hf_fairmtl.experiments import METRICS_FILE, describe_method, method_arguments, method_dir, parse_method
from hf_fairmtl.strategies import STRATEGIES
from hf_fairmtl.weighting import WEIGHTINGS

REPO = Path(__file__).resolve().parents[1]
TASKS = '{"target": "target", "auxiliary": "auxiliary"}'
ATTRIBUTES = '{"gender": "gender"}'


def write_tables(folder: Path, seed: int = 0) -> dict[str, Path]:
    """A transfer setting as CSV files: target rows without a gender column, auxiliary rows with one."""
    rng = np.random.default_rng(seed)

    def table(n: int, tasks: tuple[str, ...], with_gender: bool) -> pd.DataFrame:
        group = rng.integers(0, 2, n)
        latent = rng.normal(size=(n, 2))
        frame = pd.DataFrame(
            {
                "x1": group + rng.normal(scale=0.3, size=n),  # the group leaks into the inputs
                "x2": latent[:, 0] + rng.normal(scale=0.3, size=n),
                "x3": latent[:, 1] + rng.normal(scale=0.3, size=n),
                "colour": rng.choice(["red", "green", "blue"], n),
            }
        )
        for t, task in enumerate(("target", "auxiliary")):
            if task in tasks:
                frame[task] = (latent[:, t] + 1.5 * (group - 0.5) > 0).astype(int)
        if with_gender:
            frame["gender"] = np.where(group == 1, "male", "female")
        return frame

    paths = {"target": folder / "target.csv", "auxiliary": folder / "auxiliary.csv", "test": folder / "test.csv"}
    table(160, ("target",), False).to_csv(paths["target"], index=False)
    table(160, ("auxiliary",), True).to_csv(paths["auxiliary"], index=False)
    table(120, ("target", "auxiliary"), True).to_csv(paths["test"], index=False)
    return paths


def file_flags(paths: dict[str, Path], tasks: str = TASKS) -> list[str]:
    return [
        "--train_files",
        str(paths["target"]),
        str(paths["auxiliary"]),
        "--test_files",
        str(paths["test"]),
        "--task_columns",
        tasks,
        "--attribute_columns",
        ATTRIBUTES,
        "--feature_columns",
        "x1",
        "x2",
        "x3",
        "--categorical_columns",
        "colour",
    ]


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> dict[str, Path]:
    return write_tables(tmp_path_factory.mktemp("tables"))


def run_main_error(argv: list[str]) -> str:
    """The message `main` exits with (it must exit non-zero, never return)."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    message = exit_info.value.code
    assert isinstance(message, str), f"expected an error message, got exit code {message!r}"
    return message


@pytest.mark.parametrize(
    ("extra", "culprit"),
    [
        (["--task_columns", '{"target": "targt"}'], "'targt'"),  # missing column
        (["--feature_columns", "x9"], "'x9'"),  # missing input column
        (["--fairness_attributes", '{"nope": ["gender"]}'], "'nope'"),  # unknown task
        (["--fairness_weight", '{"nope": 1.0}'], "'nope'"),  # unknown task
        (["--fairness_attributes", '{"target": ["gendr"]}'], "'gendr'"),  # unknown attribute
        (["--strategy", "foo"], "'foo'"),  # unknown strategy
        (["--methods", "vanilla", "teachr"], "'teachr'"),  # unknown method
        (["--fairness_loss", "nope"], "'nope'"),  # unknown fairness loss
        (["--bogus_flag", "1"], "--bogus_flag"),
        (["--fairness_weight", "{not json"], "fairness_weight"),
        (["--max_length", "1"], "--max_length"),  # used to disable truncation silently
        (["--max_length", "-1"], "--max_length"),  # used to raise an OverflowError with a traceback
        (["--methods", "vanilla+gradnrm"], "'gradnrm'"),  # unknown weighting of a method
    ],
)
def test_bad_train_input_exits_with_one_line_naming_it(extra, culprit, tables, tmp_path) -> None:
    flags = file_flags(tables)
    if extra[0] in flags:  # replace a flag's value instead of giving it twice
        index = flags.index(extra[0])
        end = index + 1
        while end < len(flags) and not flags[end].startswith("--"):
            end += 1
        flags[index:end] = extra
    else:
        flags += extra
    message = run_main_error(["train", *flags, "--max_steps", "1", "--output_dir", str(tmp_path / "run")])
    assert message.startswith("hf-fairmtl: error: ")
    assert "\n" not in message and culprit in message, message


@pytest.mark.parametrize(
    ("argv", "culprit"),
    [
        (["trian"], "'trian'"),
        (["train", "--dataset", "censis"], "'censis'"),
        (["train", "--dataset", "bug_transfer", "--tasks", "stereotype"], "--tasks"),
        (["report", "/nonexistent/run"], "/nonexistent/run"),
        (["evaluate"], "--model_name_or_path"),
        (["evaluate", "--model_name_or_path", "/nonexistent/model"], "/nonexistent/model"),
        (["train", "--methods", "vanilla", "--strategy", "weighted"], "--methods"),
    ],
)
def test_bad_command_input_exits_with_one_line(argv, culprit) -> None:
    message = run_main_error(argv)
    assert message.startswith("hf-fairmtl: error: ") and "\n" not in message and culprit in message, message


def test_train_fits_group_vocabularies_on_training_files_only(tables, tmp_path) -> None:
    """A group that only the held-out file has is refused (as the API refuses it), naming attribute and value."""
    test = pd.read_csv(tables["test"])
    test.loc[:4, "gender"] = "nonbinary"
    test_file = tmp_path / "test_new_group.csv"
    test.to_csv(test_file, index=False)
    flags = file_flags({**tables, "test": test_file})
    message = run_main_error(["train", *flags, "--max_steps", "1", "--output_dir", str(tmp_path / "run")])
    assert "'gender'" in message and "'nonbinary'" in message and "training" in message and "\n" not in message


def test_methods_are_strategy_plus_registered_weighting() -> None:
    assert parse_method("teacher+gradnorm") == ("teacher", "gradnorm")
    assert parse_method("vanilla") == ("vanilla", None)
    assert parse_method("mtaf+uncertainty") == ("mtaf", "uncertainty")
    args = method_arguments({}, "teacher+gradnorm", 0, "unused")
    assert args.strategy == "teacher" and args.weighting == "gradnorm" and args.gradnorm  # the alias holds
    assert method_arguments({}, "vanilla+dwa", 0, "unused").weighting == "dwa"
    # The report's one-line description is read from the registered classes.
    described = describe_method(args)
    assert STRATEGIES["teacher"].title in described and WEIGHTINGS["gradnorm"].title in described
    assert "accuracy losses only" in describe_method(method_arguments({}, "vanilla", 0, "unused"))
    with pytest.raises(ValueError, match="'greedy'"):
        parse_method("gredy+dwa")  # a close match is suggested


def test_config_file_errors_name_the_key(tmp_path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("dataset: census\nlearning_rat: 0.1\n")
    message = run_main_error(["train", str(config)])
    assert "'learning_rat'" in message and "learning_rate" in message, message  # named, with a suggestion


def test_console_script_error_is_one_line_without_traceback(tmp_path) -> None:
    """The real process: exit status 1 and exactly one line on stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "hf_fairmtl.cli", "train", "--strategy", "nonsense"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=120,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "'nonsense'" in lines[0] and "Traceback" not in result.stderr, result.stderr


def test_config_file_sets_flags_and_command_line_overrides(tmp_path) -> None:
    config = tmp_path / "experiment.yaml"
    config.write_text(
        "dataset: census\n"
        "methods: [vanilla, teacher+gradnorm]\n"
        "seeds: 3\n"  # a scalar for a list flag means one value
        "learning_rate: 0.002\n"
        "fairness_weight: {income: 2.0}\n"
        "max_rows: 500\n"
    )
    data, model, experiment, training = parse_arguments("train", [str(config), "--max_rows", "100"])
    assert data.dataset == "census" and data.max_rows == 100  # the flag wins over the file
    assert experiment.methods == ["vanilla", "teacher+gradnorm"] and experiment.seeds == [3]
    assert training["learning_rate"] == 0.002 and training["fairness_weight"] == {"income": 2.0}
    assert training["strategy"] is None and training["max_steps"] is None  # "not given" stays visible
    json_config = tmp_path / "experiment.json"
    json_config.write_text(json.dumps({"dataset": "acs", "acs_states": "AL", "gradnorm": True}))
    data, _, _, training = parse_arguments("train", ["--config", str(json_config)])
    assert data.dataset == "acs" and data.acs_states == ["AL"] and training["gradnorm"] is True


def test_help_exits_zero(capsys) -> None:
    assert main(["--help"]) == 0
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--fairness_loss" in out and "--methods" in out and "--per_device_train_batch_size" in out


def test_train_evaluate_report_on_files(tables, tmp_path, capsys) -> None:
    run_dir = tmp_path / "run"
    common = file_flags(tables)
    argv = ["train", *common, "--methods", "vanilla", "weighted", "--max_steps", "4", "--logging_steps", "2"]
    argv += ["--output_dir", str(run_dir), "--save_model", "--disable_tqdm", "true"]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "EO violation" in table and "weighted" in table and "target" in table
    for method in ("vanilla", "weighted"):
        text = (method_dir(run_dir, method, 42) / METRICS_FILE).read_text()
        json.loads(text, parse_constant=lambda constant: pytest.fail(f"metrics.json holds {constant}"))
        assert "eval_target_collapsed" in text and "eval_target_balanced_accuracy" in text
    assert (run_dir / "report.md").is_file()

    # The saved model evaluated on the same held-out file gives the metrics the run recorded.
    model_dir = method_dir(run_dir, "weighted", 42) / "model"
    assert main(["evaluate", "--model_name_or_path", str(model_dir), *common, "--disable_tqdm", "true"]) == 0
    evaluated = json.loads((model_dir / "eval_results.json").read_text())
    recorded = json.loads((method_dir(run_dir, "weighted", 42) / METRICS_FILE).read_text())
    for key in ("eval_target_accuracy", "eval_target_gender_eo_violation", "eval_auxiliary_gender_tpr_gap"):
        assert evaluated[key] == pytest.approx(recorded[key])

    # A model evaluated on data with a task it does not have: a one-line error naming the task.
    message = run_main_error(
        ["evaluate", "--model_name_or_path", str(model_dir), *file_flags(tables, '{"colour": "colour"}')]
    )
    assert "'colour'" in message and "\n" not in message

    assert main(["report", str(run_dir), "--output", str(tmp_path / "copy" / "report.md")]) == 0
    assert (tmp_path / "copy" / "plots" / "accuracy_eo.png").is_file()


def test_default_train_smoke(tmp_path) -> None:
    """`hf-fairmtl train` with no dataset: packaged MiniLM + BUG, the three default methods, tiny override."""
    result = subprocess.run(
        [sys.executable, "-m", "hf_fairmtl.cli", "train", "--max_steps", "2", "--max_rows", "64"]
        + ["--teacher_interval", "1", "--max_length", "24"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "runs" / "default"
    for method in ("vanilla", "weighted", "teacher+gradnorm"):
        assert f"{method} " in result.stdout
        metrics = json.loads((method_dir(run_dir, method, 42) / METRICS_FILE).read_text())
        assert "eval_occupation_gender_eo_violation" in metrics and "eval_stereotype_accuracy" in metrics
    assert (method_dir(run_dir, "teacher+gradnorm", 42) / "teacher_actions.json").is_file()
    assert "occupation" in result.stdout and "TPR gap" in result.stdout and "FPR gap" in result.stdout
    assert (run_dir / "report.md").is_file() and (run_dir / "plots" / "teacher_actions.png").is_file()


def test_train_under_accelerate_launch_with_two_processes(tmp_path) -> None:
    """The same CLI under `accelerate launch` (2 gloo processes): one table, one run directory, every test row."""
    from .launching import accelerate_launch, run_processes

    run_dir = tmp_path / "run"
    output = run_processes(
        accelerate_launch(2)
        + ["-m", "hf_fairmtl.cli", "train", "--dataset", "census", "--max_steps", "4", "--max_rows", "512"]
        + ["--max_test_rows", "255", "--methods", "vanilla", "teacher+gradnorm", "--teacher_interval", "2"]
        + ["--output_dir", str(run_dir)],
        timeout_s=300,
    )
    # Only the main process prints: one run summary (whose tables, fairlearn anchors included, name the gaps).
    assert output.count("run directory:") == 1 and "TPR gap" in output
    for method in ("vanilla", "teacher+gradnorm"):
        metrics = json.loads((method_dir(run_dir, method, 42) / METRICS_FILE).read_text())
        # 255 rows over 2 ranks: the padded duplicate row is not counted.
        assert metrics["eval_income_sex_count_female"] + metrics["eval_income_sex_count_male"] == 255
    assert (run_dir / "report.md").is_file()
