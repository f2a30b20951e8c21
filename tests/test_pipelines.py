"""The `fair-multitask-classification` pipeline, `hf-fairmtl predict`, and a checkpoint used without hf_fairmtl."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import pipeline

from hf_fairmtl import FairMTLConfig, FairMTLModel
from hf_fairmtl.configuration_fairmtl import PIPELINE_TASK
from hf_fairmtl.data.features import encode_features as data_encode_features
from hf_fairmtl.data.features import fit_feature_encoding
from hf_fairmtl.feature_encoding import encode_features
from hf_fairmtl.pipelines import FairMTLClassificationPipeline

from .conftest import tiny_bert_dict

TEXTS = ["good film", "awful plot she is a nurse", "fine", "he is a doctor", "great great film"]


@pytest.fixture
def text_model() -> FairMTLModel:
    torch.manual_seed(0)
    config = FairMTLConfig(
        tasks=["sentiment", "topic"],
        label_vocab={"sentiment": ["neg", "pos"]},
        num_labels={"topic": 3},
        protected_attributes=["gender"],
        group_vocab={"gender": ["female", "male"]},
        encoder=tiny_bert_dict(),
    )
    return FairMTLModel(config).eval()


def census_like_frame(rows: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 80, rows).astype(float),
            "hours": rng.normal(40, 10, rows),
            "sex": rng.choice(["female", "male"], rows),
            "education": rng.choice(["hs", "college", "phd"], rows),
        }
    )


@pytest.fixture
def tabular_model() -> tuple[FairMTLModel, pd.DataFrame]:
    frame = census_like_frame()
    encoding = fit_feature_encoding(frame, numeric=["age", "hours"], categorical=["sex", "education"])
    torch.manual_seed(0)
    config = FairMTLConfig(
        tasks=["income", "employment"],
        task_id2label={"income": {0: "<=50k", 1: ">50k"}},
        protected_attributes=["sex"],
        group_vocab={"sex": ["female", "male"]},
        num_features=encoding["num_features"],
        feature_encoding=encoding,
        tabular_hidden_sizes=[8],
    )
    return FairMTLModel(config).eval(), frame


def expected(model: FairMTLModel, **inputs) -> list[dict]:
    """What the pipeline must return (default top_k): argmax label names and their softmax scores."""
    with torch.no_grad():
        logits = model(**inputs).logits
    rows = []
    for i in range(logits[0].shape[0]):
        row = {}
        for task, task_logits in zip(model.config.tasks, logits, strict=True):
            probs = task_logits[i].softmax(-1)
            row[task] = {"label": model.config.class_names(task)[int(probs.argmax())], "score": float(probs.max())}
        rows.append(row)
    return rows


def assert_same(actual: list[dict], wanted: list[dict]) -> None:
    assert len(actual) == len(wanted)
    for got, want in zip(actual, wanted, strict=True):
        assert got.keys() == want.keys()
        for task in want:
            assert got[task]["label"] == want[task]["label"]
            assert got[task]["score"] == pytest.approx(want[task]["score"], abs=1e-5)


def test_text_pipeline_names_every_task_and_batches(text_model, tiny_tokenizer):
    pipe = pipeline(PIPELINE_TASK, model=text_model, tokenizer=tiny_tokenizer, device="cpu")
    assert isinstance(pipe, FairMTLClassificationPipeline)
    encoded = tiny_tokenizer(TEXTS, padding=True, return_tensors="pt", return_token_type_ids=False)
    wanted = expected(text_model, **encoded)
    single = pipe(TEXTS[0])
    assert_same([single], wanted[:1])
    assert_same(pipe(TEXTS), wanted)
    assert_same(pipe(TEXTS, batch_size=2), wanted)  # padded batches give the same predictions
    full = pipe(TEXTS[1], top_k=None)
    assert [len(full[task]) for task in ("sentiment", "topic")] == [2, 3]
    assert {entry["label"] for entry in full["topic"]} == {"0", "1", "2"}
    assert sum(entry["score"] for entry in full["topic"]) == pytest.approx(1.0)
    assert full["sentiment"][0]["label"] == wanted[1]["sentiment"]["label"]  # the prediction comes first
    assert len(pipe(TEXTS[1], top_k=1)["topic"]) == 1
    with pytest.raises(ValueError, match="top_k must be a positive integer or None"):
        pipe(TEXTS[0], top_k=0)
    with pytest.raises(ValueError, match="give a string or {'text': str"):
        pipe({"sentence": "good"})


def test_text_pipeline_truncates_to_max_length(text_model, tiny_tokenizer):
    pipe = pipeline(PIPELINE_TASK, model=text_model, tokenizer=tiny_tokenizer, device="cpu")
    long_text = " ".join(["film"] * 200)  # longer than the encoder's 64 positions: truncated by default
    encoded = tiny_tokenizer(
        [long_text], truncation=True, max_length=5, return_tensors="pt", return_token_type_ids=False
    )
    assert_same([pipe(long_text, max_length=5)], expected(text_model, **encoded))
    assert set(pipe(long_text)) == {"sentiment", "topic"}
    with pytest.raises(ValueError, match="max_length must be an integer >= 2"):
        pipe(long_text, max_length=1)


def test_tabular_pipeline_encodes_raw_rows_like_training(tabular_model):
    model, frame = tabular_model
    encoding = model.config.feature_encoding
    # The shipped encoder is the one the data adapters train with.
    np.testing.assert_array_equal(encode_features(frame, encoding), data_encode_features(frame, encoding))
    pipe = pipeline(PIPELINE_TASK, model=model, device="cpu")
    features = torch.from_numpy(encode_features(frame, encoding))
    wanted = expected(model, features=features)
    assert_same(pipe(frame), wanted)  # a DataFrame: one input per row
    assert_same(pipe(frame, batch_size=8), wanted)  # batched without a tokenizer
    assert_same([pipe(frame.iloc[3].to_dict())], wanted[3:4])
    assert_same([pipe({"features": features[5].tolist()})], wanted[5:6])
    assert {"<=50k", ">50k"} >= {row["income"]["label"] for row in pipe(frame)}
    with pytest.raises(ValueError, match=r"lack feature column\(s\) \['education'\]"):
        pipe({"age": 30, "hours": 40, "sex": "male"})


@pytest.mark.skipif(not hasattr(FairMTLModel, "predict_labels"), reason="needs FairMTLModel.predict_labels")
def test_group_labels_route_through_predict_labels(tabular_model):
    """Group thresholds decide the label where groups are given; scores stay the softmax."""
    model, frame = tabular_model
    always = {"thresholds": ["-inf"], "weights": [1.0], "p_ignore": 0.0, "constant": 0.0}
    never = {"thresholds": ["inf"], "weights": [1.0], "p_ignore": 0.0, "constant": 0.0}
    model.config.postprocessing = {
        "income": {"sex": {"constraint": "equalized_odds", "groups": {"female": always, "male": never}}}
    }
    pipe = pipeline(PIPELINE_TASK, model=model, device="cpu")
    rows = frame.head(6)
    plain = pipe(rows)
    groups = [{"sex": sex} for sex in rows["sex"]]
    fair = pipe(rows, group_labels=groups, batch_size=3)
    for sex, before, after in zip(rows["sex"], plain, fair, strict=True):
        assert after["income"]["label"] == (">50k" if sex == "female" else "<=50k")
        assert after["employment"] == before["employment"]  # no thresholds for this task
        probs = {before["income"]["label"]: before["income"]["score"]}
        if after["income"]["label"] in probs:
            assert after["income"]["score"] == pytest.approx(probs[after["income"]["label"]])
    unknown = pipe(rows, group_labels=[{"sex": None}] * len(rows))  # unknown group: the argmax
    assert [row["income"] for row in unknown] == [row["income"] for row in plain]
    with pytest.raises(ValueError, match=r"'gender', not in protected_attributes \['sex'\]"):
        pipe(rows.iloc[0].to_dict(), group_labels={"gender": "female"})
    with pytest.raises(ValueError, match=r"'femal' is not in group_vocab\['sex'\].*did you mean 'female'"):
        pipe(rows.iloc[0].to_dict(), group_labels={"sex": "femal"})
    with pytest.raises(ValueError, match="one entry per input"):
        pipe(rows, group_labels=groups[:2])


def test_saved_folder_loads_in_package_without_trust_remote_code(text_model, tiny_tokenizer, tmp_path):
    text_model.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    shipped = {"configuration_fairmtl.py", "modeling_fairmtl.py", "pipelines.py", "feature_encoding.py"}
    assert shipped <= set(os.listdir(tmp_path))
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["custom_pipelines"][PIPELINE_TASK]["impl"] == "pipelines.FairMTLClassificationPipeline"
    pipe = pipeline(PIPELINE_TASK, model=str(tmp_path), device="cpu")  # tokenizer found next to the weights
    assert isinstance(pipe.model, FairMTLModel) and isinstance(pipe, FairMTLClassificationPipeline)
    encoded = tiny_tokenizer(TEXTS, padding=True, return_tensors="pt", return_token_type_ids=False)
    assert_same(pipe(TEXTS), expected(text_model, **encoded))
    pipe.save_pretrained(tmp_path / "from_pipeline")  # the pipeline's own save ships the same files
    assert shipped <= set(os.listdir(tmp_path / "from_pipeline"))
    again = pipeline(PIPELINE_TASK, model=str(tmp_path / "from_pipeline"), device="cpu")
    assert_same(again(TEXTS), expected(text_model, **encoded))


def test_import_hf_fairmtl_is_enough_for_the_task_name(text_model, tiny_tokenizer, tmp_path):
    """A fresh interpreter that only imports hf_fairmtl (not hf_fairmtl.pipelines) gets the pipeline by task name."""
    text_model.save_pretrained(tmp_path / "model")
    tiny_tokenizer.save_pretrained(tmp_path / "model")
    script = textwrap.dedent(
        f"""
        import json, sys
        import hf_fairmtl
        from transformers import pipeline
        assert "hf_fairmtl.pipelines" not in sys.modules
        pipe = pipeline({PIPELINE_TASK!r}, model={str(tmp_path / "model")!r}, device="cpu")
        print(json.dumps([type(pipe).__module__, pipe({TEXTS!r})]))
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    module, outputs = json.loads(run.stdout.strip().splitlines()[-1])
    assert module == "hf_fairmtl.pipelines"  # the package's class, no trust_remote_code needed
    encoded = tiny_tokenizer(TEXTS, padding=True, return_tensors="pt", return_token_type_ids=False)
    assert_same(outputs, expected(text_model, **encoded))


REMOTE_SCRIPT = textwrap.dedent(
    """
    import json, sys

    class BlockHfFairMTL:
        def find_spec(self, name, path=None, target=None):
            if name == "hf_fairmtl" or name.startswith("hf_fairmtl."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")

    sys.meta_path.insert(0, BlockHfFairMTL())
    try:
        import hf_fairmtl  # noqa: F401
        raise SystemExit("hf_fairmtl is importable; the test proves nothing")
    except ModuleNotFoundError:
        pass
    from transformers import pipeline

    results = {}
    for name, folder, inputs in json.loads(sys.argv[1]):
        pipe = pipeline(model=folder, trust_remote_code=True, device="cpu")  # task read from config.json
        results[name] = {
            "outputs": pipe(inputs, batch_size=2),
            "pipeline": type(pipe).__module__,
            "model": type(pipe.model).__module__,
        }
    assert not [m for m in sys.modules if m.startswith("hf_fairmtl")]
    print(json.dumps(results))
    """
)


def test_checkpoint_predicts_where_hf_fairmtl_is_not_importable(text_model, tiny_tokenizer, tabular_model, tmp_path):
    """A fresh interpreter that cannot import hf_fairmtl loads both folders with trust_remote_code and predicts."""
    text_dir, tabular_dir = tmp_path / "text", tmp_path / "tabular"
    text_model.save_pretrained(text_dir)
    tiny_tokenizer.save_pretrained(text_dir)
    model, frame = tabular_model
    model.save_pretrained(tabular_dir)
    rows = frame.head(5).to_dict(orient="records")
    jobs = [["text", str(text_dir), TEXTS], ["tabular", str(tabular_dir), rows]]
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    run = subprocess.run(
        [sys.executable, "-c", REMOTE_SCRIPT, json.dumps(jobs)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(run.stdout.strip().splitlines()[-1])
    for name in ("text", "tabular"):
        assert results[name]["pipeline"].startswith("transformers_modules.")
        assert results[name]["model"].startswith("transformers_modules.")
    encoded = tiny_tokenizer(TEXTS, padding=True, return_tensors="pt", return_token_type_ids=False)
    assert_same(results["text"]["outputs"], expected(text_model, **encoded))
    features = torch.from_numpy(encode_features(frame.head(5), model.config.feature_encoding))
    assert_same(results["tabular"]["outputs"], expected(model, features=features))


def test_cli_predict_writes_a_label_and_score_column_per_task(text_model, tiny_tokenizer, tmp_path, capsys):
    from hf_fairmtl import cli

    text_model.save_pretrained(tmp_path / "model")
    tiny_tokenizer.save_pretrained(tmp_path / "model")
    rows = tmp_path / "rows.csv"
    pd.DataFrame({"id": range(len(TEXTS)), "review": TEXTS, "gender": ["female", "male", "", "male", "female"]}).to_csv(
        rows, index=False
    )
    out = tmp_path / "predictions.csv"
    argv = ["predict", "--model_name_or_path", str(tmp_path / "model"), "--input", str(rows), "--output", str(out)]
    assert cli.main([*argv, "--text_column", "review", "--group_columns", "gender", "--batch_size", "2"]) == 0
    predictions = pd.read_csv(out, dtype=str)
    assert list(predictions.columns) == ["sentiment_label", "sentiment_score", "topic_label", "topic_score"]
    encoded = tiny_tokenizer(TEXTS, padding=True, return_tensors="pt", return_token_type_ids=False)
    wanted = expected(text_model, **encoded)
    assert predictions["sentiment_label"].tolist() == [row["sentiment"]["label"] for row in wanted]
    assert predictions["topic_score"].astype(float).tolist() == pytest.approx([row["topic"]["score"] for row in wanted])
    assert "predictions:" in capsys.readouterr().out
    with pytest.raises(SystemExit, match=r"rows.csv has no column 'text'"):
        cli.main(argv)
    pd.DataFrame({"review": ["good", None]}).to_csv(rows, index=False)
    with pytest.raises(SystemExit, match=r"rows.csv: text column 'review' is empty at row 1"):
        cli.main([*argv, "--text_column", "review"])


def test_cli_predict_tabular_rows(tabular_model, tmp_path):
    from hf_fairmtl import cli

    model, frame = tabular_model
    model.save_pretrained(tmp_path / "model")
    frame.to_csv(tmp_path / "rows.csv", index=False)
    out = tmp_path / "predictions.csv"
    argv = [
        "--model_name_or_path",
        str(tmp_path / "model"),
        "--input",
        str(tmp_path / "rows.csv"),
        "--output",
        str(out),
    ]
    assert cli.main(["predict", *argv]) == 0
    predictions = pd.read_csv(out)
    wanted = expected(model, features=torch.from_numpy(encode_features(frame, model.config.feature_encoding)))
    assert predictions["income_label"].tolist() == [row["income"]["label"] for row in wanted]
    assert len(predictions) == len(frame)


def test_seed_makes_randomised_thresholds_reproducible(tabular_model):
    """A coin-flip rule: the same seed draws the same labels, whatever the batch size and the global RNG."""
    model, frame = tabular_model
    coin = {"thresholds": ["-inf"], "weights": [1.0], "p_ignore": 1.0, "constant": 0.5}
    model.config.postprocessing = {
        "income": {"sex": {"constraint": "equalized_odds", "groups": {"female": coin, "male": coin}}}
    }
    pipe = pipeline(PIPELINE_TASK, model=model, device="cpu")
    rows = frame.head(40)
    groups = [{"sex": sex} for sex in rows["sex"]]

    def labels(**kwargs):
        return [row["income"]["label"] for row in pipe(rows, group_labels=groups, **kwargs)]

    torch.manual_seed(0)
    first = labels(seed=3)
    torch.manual_seed(1)
    again = labels(seed=3, batch_size=7)
    assert first == again and len(set(first)) == 2  # a fair coin over 40 rows shows both labels
    assert labels(seed=4) != first
    with pytest.raises(ValueError, match="seed must be an integer"):
        pipe(rows.iloc[0].to_dict(), seed="3")
