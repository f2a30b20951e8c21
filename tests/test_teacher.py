"""The L2T-FMT teacher: reward, DQN, Q update, look-ahead, and the callback inside FairMTLTrainer."""

from __future__ import annotations

import ast
import copy
import dataclasses
import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from torch import nn
from torch.nn import functional as F

from hf_fairmtl import FairMTLConfig, FairMTLModel
from hf_fairmtl import TeacherCallback as PublicTeacherCallback
from hf_fairmtl.teacher import (
    ACCURACY_ACTION,
    ARGUMENT_FIELDS,
    FAIRNESS_ACTION,
    HeldoutSet,
    MultiTaskDQN,
    TaskTeacher,
    TeacherCallback,
    TeacherSettings,
    TeacherStudent,
    Transition,
    flatten_parameters,
    lookahead_step,
    plot_teacher_diagnostics,
    random_projection,
    teacher_reward,
    trainable_head_parameters,
)
from hf_fairmtl.trainer import FairMTLTrainer, FairMTLTrainingArguments

from .synthetic import biased_rows, tabular_config
from .test_trainer import make_args as trainer_args

# ---------------------------------------------------------------------------------------------- reward


def test_reward_is_the_smaller_relative_gain() -> None:
    # Accuracy +10 % relative, fairness score 1 − EO +12.5 % relative: the smaller one, 0.1.
    assert teacher_reward(0.88, 0.1, 0.8, 0.2) == pytest.approx(0.1)
    # Accuracy +10 %, fairness only +2.5 %: the fairness term.
    assert teacher_reward(0.88, 0.18, 0.8, 0.2) == pytest.approx(0.02 / 0.8)
    # Fairer but less accurate: negative, the accuracy loss decides.
    assert teacher_reward(0.72, 0.0, 0.8, 0.2) == pytest.approx(-0.1)
    # More accurate but less fair: negative, the fairness loss decides.
    assert teacher_reward(0.9, 0.3, 0.8, 0.2) == pytest.approx(-0.125)
    # Matching both bests: 0.
    assert teacher_reward(0.8, 0.2, 0.8, 0.2) == 0.0


def test_reward_guards_degenerate_bests() -> None:
    # EO violation is |ΔTPR| + |ΔFPR| ∈ [0, 2]: at or beyond 1 the denominator is clamped (sign kept).
    assert teacher_reward(0.8, 0.9, 0.8, 1.0) == pytest.approx(min(0.0, 0.1 / 0.05))
    assert teacher_reward(0.9, 1.6, 0.8, 1.5) < 0 < teacher_reward(0.9, 1.4, 0.8, 1.5)
    assert teacher_reward(0.9, 1.4, 0.8, 1.5) == pytest.approx(min(0.1 / 0.8, 0.1 / 0.05))
    # Best accuracy 0: finite.
    assert teacher_reward(0.1, 0.0, 0.0, 0.0) == pytest.approx(min(0.1 / 0.05, 0.0))
    # No EO to measure: accuracy term only.
    assert teacher_reward(0.88, math.nan, 0.8, 0.2) == pytest.approx(0.1)
    assert teacher_reward(0.88, 0.1, 0.8, math.nan) == pytest.approx(0.1)


def test_bests_follow_the_student_and_rewards_use_them() -> None:
    teacher = TaskTeacher([3])
    with pytest.raises(RuntimeError, match="observe"):
        teacher.reward(0, 0.5, 0.1)
    teacher.observe(0, 0.7, 0.3)
    teacher.observe(0, 0.6, 0.4)  # worse on both: bests stay
    teacher.observe(0, 0.8, math.nan)  # no EO: only accuracy moves
    assert (teacher.best_accuracy[0], teacher.best_eo_violation[0]) == (0.8, 0.3)
    assert teacher.reward(0, 0.88, 0.3) == pytest.approx(0.0)
    assert teacher.reward(0, 0.88, 0.23) == pytest.approx(0.1)


# ---------------------------------------------------------------------------------------------- DQN


def test_projection_is_seeded_and_keeps_norms() -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    projection = random_projection(2000, 256, seed=7)
    assert torch.equal(torch.get_rng_state(), before)  # the global RNG is untouched
    assert torch.equal(projection, random_projection(2000, 256, seed=7))
    assert not torch.equal(projection, random_projection(2000, 256, seed=8))
    x = torch.randn(50, 2000, generator=torch.Generator().manual_seed(0))
    ratio = (x @ projection).norm(dim=1) / x.norm(dim=1)
    assert ratio.mean().item() == pytest.approx(1.0, abs=0.05)


def test_dqn_takes_any_head_size_and_starts_neutral() -> None:
    dqn = MultiTaskDQN([6, 4000], state_size=32, hidden_size=16, seed=3)
    small = dqn.make_state(0, torch.randn(6), (0.8, 0.1))
    large = dqn.make_state(1, torch.randn(4000), (0.7, math.nan))
    assert small.shape == large.shape == (34,)
    assert large[-1].item() == 0.0  # a NaN statistic is written as 0
    assert torch.equal(dqn(torch.stack([small, large]), 1), torch.zeros(2, 2))  # zero-initialised Q heads
    with pytest.raises(ValueError, match="4000 trainable parameters"):
        dqn.make_state(1, torch.randn(10))
    # The projection is rebuilt from the seed, not saved.
    assert "projection" not in dqn.state_dict()
    twin = MultiTaskDQN([6, 4000], state_size=32, hidden_size=16, seed=3)
    twin.load_state_dict(dqn.state_dict())
    torch.testing.assert_close(twin.make_state(1, torch.ones(4000)), dqn.make_state(1, torch.ones(4000)))


def test_q_update_matches_hand_computation() -> None:
    teacher = TaskTeacher([4], gamma=0.9, gradnorm=False, hidden_size=8, state_size=5)
    head = teacher.dqn.q_heads[0]
    with torch.no_grad():
        # A zero last trunk layer makes the trunk output 0: Q is the head's bias alone, the same for s and s′,
        # and only that bias gets a gradient.
        teacher.dqn.trunk[2].weight.zero_()
        teacher.dqn.trunk[2].bias.zero_()
        head.bias.copy_(torch.tensor([0.2, 0.3, -0.1]))  # V = 0.2, advantages (0.3, −0.1)
    teacher.optimizer = torch.optim.SGD(teacher.dqn.parameters(), lr=0.1)
    state = teacher.dqn.make_state(0, torch.ones(4), (0.5, 0.5))
    transition = Transition(state, torch.stack([state, state]), torch.tensor([0.1, -0.2]))

    # Q = V + A − mean(A) = (0.4, 0.0); y = R + 0.9 · max Q = (0.46, 0.16).
    torch.testing.assert_close(teacher.q_values(state[None])[0], torch.tensor([0.4, 0.0]))
    result = teacher.update([transition])
    torch.testing.assert_close(result["targets"][0], torch.tensor([0.46, 0.16]))
    # L = mean((Q − y)²) = (0.06² + 0.16²) / 2.
    assert result["td_losses"][0] == pytest.approx(0.0146, abs=1e-6)
    assert result["loss"] == pytest.approx(0.0146, abs=1e-6)
    # ∂L/∂Q = Q − y = (−0.06, −0.16); ∂L/∂V = −0.22; ∂L/∂A_b = (Q_b − y_b) − mean = (0.05, −0.05).
    torch.testing.assert_close(head.bias.detach(), torch.tensor([0.222, 0.295, -0.095]))
    torch.testing.assert_close(teacher.q_values(state[None])[0], torch.tensor([0.417, 0.027]))


def test_q_update_with_gradnorm_skips_missing_tasks() -> None:
    teacher = TaskTeacher([3, 5, 2], lr=1e-2, seed=0)
    states = [teacher.dqn.make_state(t, torch.randn(n), (0.5, 0.1)) for t, n in enumerate([3, 5, 2])]
    rewards = [torch.tensor([0.1, -0.1]), torch.tensor([-0.3, 0.2]), None]
    untouched = copy.deepcopy(teacher.dqn.q_heads[2].state_dict())
    for _ in range(5):
        transitions = [
            Transition(s, torch.stack([s, s]), r) if r is not None else None
            for s, r in zip(states, rewards, strict=True)
        ]
        result = teacher.update(transitions)
    assert math.isnan(result["td_losses"][2]) and all(math.isfinite(x) for x in result["td_losses"][:2])
    weights = teacher.gradnorm.task_weights
    assert (weights > 0).all() and weights.sum().item() == pytest.approx(3.0)
    for name, value in untouched.items():  # no transition: its Q head gets no gradient
        assert torch.equal(teacher.dqn.q_heads[2].state_dict()[name], value)
    q = teacher.q_values(torch.stack(states))
    assert q[0, 0] > q[0, 1] and q[1, 1] > q[1, 0]  # each task learns its own better action


def test_actions_are_greedy_then_seeded_exploration() -> None:
    teacher = TaskTeacher([3, 3], epsilon=0.0)
    with torch.no_grad():
        teacher.dqn.q_heads[1].bias.copy_(torch.tensor([0.0, -1.0, 1.0]))
    states = torch.stack([teacher.dqn.make_state(t, torch.ones(3)) for t in range(2)])
    assert teacher.select_actions(states)[0] == [ACCURACY_ACTION, FAIRNESS_ACTION]  # tie → accuracy

    explorers = [TaskTeacher([3, 3], epsilon=1.0, seed=5) for _ in range(2)]
    draws = [[tuple(e.select_actions(states)[0]) for _ in range(20)] for e in explorers]
    assert draws[0] == draws[1] and len(set(draws[0])) > 1


def test_teacher_state_dict_round_trip() -> None:
    teacher = TaskTeacher([3, 4], epsilon=0.5, seed=2)
    states = torch.stack([teacher.dqn.make_state(t, torch.ones(n), (0.6, 0.2)) for t, n in enumerate([3, 4])])
    teacher.observe(0, 0.6, 0.2)
    teacher.observe(1, 0.7, 0.3)
    transitions = [Transition(s, torch.stack([s, s]), torch.tensor([0.1, 0.2])) for s in states]
    teacher.update(transitions)
    teacher.record(3, teacher.select_actions(states)[0])
    buffer = io.BytesIO()
    torch.save(teacher.state_dict(), buffer)
    buffer.seek(0)
    restored = TaskTeacher([3, 4], epsilon=0.5, seed=2)
    restored.load_state_dict(torch.load(buffer, weights_only=False))
    assert restored.history == teacher.history and restored.actions == teacher.actions
    assert restored.best_accuracy == teacher.best_accuracy
    # Same next update and the same exploration draws.
    a, b = teacher.update(transitions), restored.update(transitions)
    assert a["td_losses"] == b["td_losses"]
    assert teacher.select_actions(states)[0] == restored.select_actions(states)[0]
    for name, value in teacher.dqn.state_dict().items():
        assert torch.equal(restored.dqn.state_dict()[name], value), name
    with pytest.raises(ValueError, match="param_counts"):
        TaskTeacher([3, 5], seed=2).load_state_dict(teacher.state_dict())


# ---------------------------------------------------------------------------------------------- look-ahead


def test_lookahead_is_one_sgd_step_on_a_copy() -> None:
    torch.manual_seed(0)
    head = nn.Sequential(nn.Dropout(0.5), nn.Linear(6, 3))  # dropout: the look-ahead must run it in eval mode
    features, labels = torch.randn(10, 6), torch.randint(0, 3, (10,))
    params = trainable_head_parameters(head)
    before = {name: p.clone() for name, p in params.items()}

    losses = [lambda logits: F.cross_entropy(logits, labels), lambda logits: logits[:, 0].pow(2).mean()]

    def objectives(logits: torch.Tensor) -> list[torch.Tensor]:
        return [loss(logits) for loss in losses]

    rng = torch.get_rng_state()
    candidates = lookahead_step(head, params, features, objectives, lr=0.5)
    assert torch.equal(torch.get_rng_state(), rng)  # no dropout draw: the student's RNG stream is unchanged
    assert head.training
    for name, p in head.named_parameters():
        assert torch.equal(p, before[name])  # the real head is untouched

    reference = copy.deepcopy(head[1])
    for candidate, loss_fn in zip(candidates, losses, strict=True):
        reference.zero_grad()
        loss_fn(reference(features)).backward()
        for name, p in reference.named_parameters():
            torch.testing.assert_close(candidate[f"1.{name}"], p.detach() - 0.5 * p.grad)
    assert flatten_parameters(candidates[0]).shape == (6 * 3 + 3,)


def test_all_heads_look_ahead_at_once_as_each_alone(tmp_path) -> None:
    """One look-ahead of every task head (vectorised logits, stacked fairness losses, one backward per action)
    gives each head the candidates of its own look-ahead with the trainer's CE_t and F_t, and scores the same."""
    from hf_fairmtl.teacher import lookahead_steps, stacked_head_logits

    tasks = ("a", "b", "c")
    train = Dataset.from_list(biased_rows(64, 0, tasks=tasks))
    torch.manual_seed(0)
    model = FairMTLModel(tabular_config(tasks))
    trainer = FairMTLTrainer(
        model=model, args=trainer_args(tmp_path, strategy="teacher"), train_dataset=train, eval_dataset=train
    )
    batch = trainer.data_collator([train[i] for i in range(32)])
    labels, groups = batch["labels"], batch["group_labels"]
    labels[:6, 1] = -100
    features = model.encode(features=batch["features"]).detach()
    heads = [model.heads[task] for task in tasks]
    params = [trainable_head_parameters(head) for head in heads]
    assert model.heads.training  # the vectorised path must still score in eval mode

    def objectives(logits):
        return trainer.objective_terms(logits, labels, groups)

    together = lookahead_steps(heads, params, features, objectives, lr=0.7)
    for t, (head, task) in enumerate(zip(heads, tasks, strict=True)):
        fairness = trainer.fairness_losses[task]["group"].eval()

        def alone(logits, t=t, task=task, fairness=fairness):
            return [trainer.task_losses[task](logits, labels[:, t])[0], fairness(logits, labels[:, t], groups[:, 0])]

        expected_candidates = lookahead_step(head, params[t], features, alone, lr=0.7)
        for candidate, expected in zip(together[t], expected_candidates, strict=True):
            for name, value in expected.items():
                torch.testing.assert_close(candidate[name], value, rtol=1e-5, atol=1e-6)
        assert not torch.equal(together[t][0]["out_proj.weight"], together[t][1]["out_proj.weight"])
    trainer.fairness_losses.train()
    vectorised = stacked_head_logits(heads, params, features)
    for head, logits in zip(heads, vectorised, strict=True):
        torch.testing.assert_close(logits, head.eval()(features), rtol=1e-5, atol=1e-6)
        head.train()
    frozen = copy.deepcopy(heads[1])
    frozen.out_proj.bias.requires_grad_(False)  # frozen weights differ per head: no vectorised path
    mixed = stacked_head_logits([heads[0], frozen], [params[0], trainable_head_parameters(frozen)], features)
    torch.testing.assert_close(mixed[1], frozen.eval()(features))


# ---------------------------------------------------------------------------------------------- held-out scoring


def heldout_rows(**options) -> tuple[HeldoutSet, torch.Tensor]:
    """20 rows, 10 % positive, two groups; features = one-hot of the label (a perfect head is easy to build)."""
    labels = torch.tensor([1, 1] + [0] * 18).reshape(-1, 1)
    groups = torch.tensor([0, 1] * 10)
    features = F.one_hot(labels[:, 0], 2).float()
    heldout = HeldoutSet({"features": features}, labels, {"group": groups}, [2], [["group"]], **options)
    return heldout, features


def test_heldout_score_plain_balanced_and_collapse_guard() -> None:
    head = nn.Linear(2, 2)
    with torch.no_grad():  # always predicts class 0: 90 % accurate, "perfectly fair", collapsed
        head.weight.zero_()
        head.bias.copy_(torch.tensor([1.0, 0.0]))
    params = trainable_head_parameters(head)
    plain, features = heldout_rows()
    assert plain.score(0, head, params, features) == (pytest.approx(0.9), 0.0)
    balanced, _ = heldout_rows(accuracy_metric="balanced_accuracy")
    assert balanced.score(0, head, params, features) == (pytest.approx(0.5), 0.0)
    guarded, _ = heldout_rows(accuracy_metric="balanced_accuracy", collapse_threshold=0.95)
    accuracy, eo = guarded.score(0, head, params, features)
    assert accuracy == pytest.approx(0.5) and math.isnan(eo)  # a collapsed head has no EO to be best at
    with torch.no_grad():  # the identity head: perfect and not collapsed, EO measured again
        head.weight.copy_(torch.eye(2))
        head.bias.zero_()
    assert guarded.score(0, head, trainable_head_parameters(head), features) == (pytest.approx(1.0), 0.0)
    # The guard lets a teacher stuck on a collapsed head prefer the action that leaves it: with EO unmeasured,
    # only the (balanced) accuracy gain counts, where the paper's reward gives the collapsed head the best score.
    teacher = TaskTeacher([6])
    teacher.observe(0, 0.5, math.nan)
    assert teacher.reward(0, 0.7, 0.2) == pytest.approx(0.4)
    assert teacher_reward(0.85, 0.2, best_accuracy=0.9, best_eo_violation=0.0) < 0


# ---------------------------------------------------------------------------------------------- in the trainer


def make_args(tmp_path, **overrides) -> FairMTLTrainingArguments:
    """The trainer tests' arguments with the teacher strategy: short runs, frequent small teacher steps."""
    teacher_settings = {
        "strategy": "teacher",
        "max_steps": 12,
        "logging_steps": 4,
        "teacher_interval": 2,
        "teacher_heldout_size": 64,
    }
    return trainer_args(tmp_path, **{**teacher_settings, **overrides})


def small_trainer(tmp_path, seed: int = 0, callback: TeacherCallback | None = None, **overrides) -> FairMTLTrainer:
    """A teacher run on the synthetic biased rows; `callback` replaces the default teacher (the trainer binds it)."""
    torch.manual_seed(seed)
    train = Dataset.from_list(biased_rows(256, seed=seed))
    heldout = Dataset.from_list(biased_rows(96, seed=seed + 50))
    model = FairMTLModel(tabular_config())
    return FairMTLTrainer(
        model=model,
        args=make_args(tmp_path, **overrides),
        train_dataset=train,
        eval_dataset=heldout,
        callbacks=[callback] if callback is not None else None,
    )


def test_callback_drives_actions_and_logs(tmp_path) -> None:
    trainer = small_trainer(tmp_path, teacher_epsilon=0.5)
    trainer.train()
    callback = trainer.teacher_callback
    history = callback.action_history
    assert [step for step, _ in history] == [0, 2, 4, 6, 8, 10, 12]
    assert history[0][1] == [ACCURACY_ACTION, ACCURACY_ACTION]  # before training: accuracy
    assert trainer.task_actions == history[-1][1]
    summary = callback.summary()
    assert set(summary) == {"target", "auxiliary"}
    for t, task in enumerate(["target", "auxiliary"]):
        assert summary[task] == pytest.approx(np.mean([actions[t] for _, actions in history]))
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert all("teacher_td_loss" in entry and "teacher_auxiliary_q_gap" in entry for entry in logs)
    # Held-out scores were taken: bests exist and are sane.
    assert all(0.0 < acc <= 1.0 for acc in callback.teacher.best_accuracy)


def test_diagnostics_are_logged_and_explain_each_decision(tmp_path) -> None:
    """Per task and teacher step: both look-ahead rewards, both Q-values and the bests, logged and kept."""
    trainer = small_trainer(tmp_path, teacher_epsilon=0.0)
    trainer.train()
    callback = trainer.teacher_callback
    records = callback.diagnostics
    assert [r["step"] for r in records] == [step for step, _ in callback.action_history[1:]]
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    for task in ("target", "auxiliary"):
        names = ("reward_accuracy", "reward_fairness", "q_accuracy", "q_fairness", "best_accuracy", "best_eo")
        assert all(f"teacher_{task}_{name}" in entry for entry in logs for name in names)
    for record, (_, actions) in zip(records, callback.action_history[1:], strict=True):
        for t, task in enumerate(("target", "auxiliary")):
            key = f"teacher_{task}_"
            for name in ("accuracy", "fairness"):
                # The logged reward is the paper's reward of the candidate's held-out scores against the bests.
                expected = teacher_reward(
                    record[key + f"lookahead_accuracy_{name}"],
                    record[key + f"lookahead_eo_{name}"],
                    record[key + "best_accuracy"],
                    record[key + "best_eo"],
                )
                assert record[key + f"reward_{name}"] == pytest.approx(expected)
            # No exploration: the decision is the argmax of the logged Q-values (ties → accuracy).
            greedy = int(record[key + "q_fairness"] > record[key + "q_accuracy"])
            assert actions[t] == greedy == record[key + "action"]
    assert plot_teacher_diagnostics(records, tmp_path / "diag.png", history=callback.action_history).exists()
    assert plot_teacher_diagnostics(trainer.state.log_history, tmp_path / "logged.png").exists()
    assert plot_teacher_diagnostics([{"step": 1, "loss": 0.3}], tmp_path / "none.png") is None


@pytest.mark.parametrize("refresh", [1, 3])
def test_heldout_features_are_refreshed_on_the_set_cadence(tmp_path, refresh: int) -> None:
    """The encoder runs on the held-out rows every `teacher_heldout_refresh` teacher steps, not at every step."""
    trainer = small_trainer(tmp_path, teacher_interval=1, teacher_heldout_refresh=refresh)
    callback = trainer.teacher_callback
    encoded_at, used = [], []
    encode, features = callback.heldout.encode, callback.heldout.features

    def spy_encode(*args, **kwargs):
        encoded_at.append(trainer.state.global_step)
        return encode(*args, **kwargs)

    def spy_features(*args, **kwargs):
        used.append(features(*args, **kwargs))
        return used[-1]

    callback.heldout.encode, callback.heldout.features = spy_encode, spy_features
    trainer.train()
    assert encoded_at == list(range(1, 13, refresh))  # teacher steps at 1..12
    for step, tensor in enumerate(used, start=1):
        refreshed_at = max(s for s in encoded_at if s <= step)
        assert tensor is used[refreshed_at - 1]  # between refreshes: the same cached features
    if refresh > 1:
        assert not torch.equal(used[0], used[refresh])  # the encoder moved, and the refresh saw it


def test_task_without_fairness_attributes_always_records_accuracy(tmp_path) -> None:
    """Exploring every decision: only the task with a fairness loss can be sent to it."""
    trainer = small_trainer(tmp_path, teacher_epsilon=1.0, fairness_attributes={"auxiliary": ["group"]})
    trainer.train()
    history = trainer.teacher_callback.action_history
    assert all(actions[0] == ACCURACY_ACTION for _, actions in history)
    assert any(actions[1] == FAIRNESS_ACTION for _, actions in history)
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logs and not any("target_fairness_loss" in entry for entry in logs)


def test_settings_come_from_arguments_unless_overridden(tmp_path) -> None:
    trainer = small_trainer(tmp_path, teacher_interval=7, teacher_gamma=0.5, teacher_state_size=16)
    callback = trainer.teacher_callback
    assert (callback.settings.interval, callback.settings.gamma) == (7, 0.5)
    assert callback.teacher.dqn.state_size == 16 and callback.heldout.labels.shape == (64, 2)
    custom = TeacherCallback(heldout_dataset=Dataset.from_list(biased_rows(40, seed=9)), interval=3)
    assert small_trainer(tmp_path, callback=custom, teacher_interval=7, teacher_gamma=0.5).teacher_callback is custom
    assert custom.settings.interval == 3 and custom.settings.gamma == 0.5
    assert custom.heldout.labels.shape == (40, 2)


def test_training_argument_defaults_are_the_teacher_settings(tmp_path) -> None:
    """One place for defaults: every `teacher_*` field defaults to its `TeacherSettings` value."""
    args = FairMTLTrainingArguments(output_dir=str(tmp_path))
    defaults = TeacherSettings()
    for name, field_name in ARGUMENT_FIELDS.items():
        assert getattr(args, field_name) == getattr(defaults, name), field_name
    assert TeacherSettings.from_training_args(args) == defaults
    resolved = TeacherSettings.from_training_args(
        dataclasses.replace(args, teacher_interval=4, teacher_heldout_refresh=3), interval=None, lr=0.5
    )
    assert (resolved.interval, resolved.heldout_refresh, resolved.lr) == (4, 3, 0.5)
    with pytest.raises(TypeError, match="intervl"):
        TeacherCallback(intervl=3)
    with pytest.raises(ValueError, match="teacher_heldout_refresh"):
        TeacherSettings(heldout_refresh=0)
    with pytest.raises(ValueError, match="reward_accuracy"):
        TeacherSettings(reward_accuracy="f1")


def test_teacher_gradnorm_has_its_own_settings(tmp_path) -> None:
    """The teacher's GradNorm reads teacher_gradnorm_*, not the student's gradnorm_alpha / gradnorm_lr."""
    trainer = small_trainer(
        tmp_path, gradnorm_alpha=1.5, gradnorm_lr=0.025, teacher_gradnorm_alpha=0.7, teacher_gradnorm_lr=0.01
    )
    gradnorm = trainer.teacher_callback.teacher.gradnorm
    assert gradnorm.alpha == 0.7
    assert gradnorm.optimizer.param_groups[0]["lr"] == 0.01


def test_state_from_before_the_cache_still_loads(tmp_path) -> None:
    """A checkpoint written before the held-out cache and the diagnostics existed (only teacher + settings) loads."""
    assert PublicTeacherCallback is TeacherCallback
    trainer = small_trainer(tmp_path, max_steps=4)
    trainer.train()
    callback = trainer.teacher_callback
    old_format = {"teacher": callback.teacher.state_dict(), "settings": callback.settings.as_dict()}
    fresh = small_trainer(tmp_path / "fresh", max_steps=4).teacher_callback
    fresh.load_state_dict(old_format)
    assert fresh.action_history == callback.action_history
    assert fresh.heldout.cached is None and fresh.diagnostics == []


def test_callback_needs_the_typed_interface(tmp_path) -> None:
    trainer = small_trainer(tmp_path)
    assert isinstance(trainer, TeacherStudent)
    with pytest.raises(TypeError, match="TeacherStudent"):
        TeacherCallback().bind(object())


def test_teacher_package_does_not_import_the_trainer() -> None:
    """No import cycle: nothing in hf_fairmtl/teacher/ imports hf_fairmtl.trainer (or the hub, which imports it)."""
    package = Path(__import__("hf_fairmtl.teacher", fromlist=["_"]).__file__).parent
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = "." * node.level + (node.module or "")
                assert not module.endswith(("trainer", "hub")), f"{path.name} imports {module}"


def test_teacher_forced_to_fairness_trains_like_fixed_fairness_actions(tmp_path) -> None:
    """The teacher machinery (held-out encoding, look-ahead, Q updates) leaves the student's training alone."""
    # Never a teacher step: always F_t.
    fixed = small_trainer(tmp_path / "fixed", callback=TeacherCallback(interval=10**6, initial_action=FAIRNESS_ACTION))
    fixed.train()

    callback = TeacherCallback(interval=1, lr=0.0, epsilon=0.0, initial_action=None)
    forced = small_trainer(tmp_path / "forced", callback=callback)
    assert forced.teacher_callback is callback
    with torch.no_grad():
        for head in callback.teacher.dqn.q_heads:
            head.bias.copy_(torch.tensor([0.0, -1.0, 1.0]))  # Q(s, fairness) − Q(s, accuracy) = 2 everywhere
    forced.train()

    assert len(callback.action_history) == 13
    assert all(actions == [FAIRNESS_ACTION] * 2 for _, actions in callback.action_history)
    assert callback.teacher.num_updates == 12
    for (name, a), (_, b) in zip(fixed.model.named_parameters(), forced.model.named_parameters(), strict=True):
        assert torch.equal(a, b), name
    fixed_logs = [entry["loss"] for entry in fixed.state.log_history if "loss" in entry]
    forced_logs = [entry["loss"] for entry in forced.state.log_history if "loss" in entry]
    assert fixed_logs == forced_logs


def test_resume_reproduces_actions_and_parameters(tmp_path) -> None:
    # Held-out refresh 3: the features encoded at step 3 serve steps 3, 6 and 9, across the checkpoint at step 8.
    overrides = {
        "max_steps": 16,
        "teacher_interval": 3,
        "teacher_epsilon": 0.3,
        "teacher_heldout_refresh": 3,
        "save_strategy": "steps",
    }
    straight = small_trainer(tmp_path / "straight", save_steps=100, **overrides)
    straight.train()

    first = small_trainer(tmp_path / "resumed", save_steps=8, **overrides)
    first.train()  # writes checkpoint-8 (mid-interval: teacher steps at 6 and 9)
    resumed = small_trainer(tmp_path / "resumed", save_steps=8, **overrides)
    resumed.train(resume_from_checkpoint=str(tmp_path / "resumed" / "checkpoint-8"))

    assert resumed.teacher_callback.action_history == straight.teacher_callback.action_history
    assert resumed.task_actions == straight.task_actions
    for (name, a), (_, b) in zip(straight.model.named_parameters(), resumed.model.named_parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    a, b = straight.teacher_callback.state_dict()["teacher"], resumed.teacher_callback.state_dict()["teacher"]
    assert a["best_accuracy"] == b["best_accuracy"] and a["best_eo_violation"] == b["best_eo_violation"]
    assert torch.equal(a["generator"], b["generator"])
    assert resumed.teacher_callback.diagnostics == straight.teacher_callback.diagnostics
    for name, value in a["dqn"].items():
        torch.testing.assert_close(b["dqn"][name], value, rtol=0, atol=1e-6, msg=name)


# ---------------------------------------------------------------------------------------------- learned behaviour


def fair_and_biased_rows(num_rows: int, seed: int) -> list[dict]:
    """Task `fair`: no group effect. Task `biased`: the group shifts the label by 3 standard deviations.

    The group is visible in feature 0 (with noise), while the biased task's own signal is seen only through
    heavy noise, so a CE-trained model leans on the group (EO violation near 1 on that task).
    """
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 2, num_rows)
    fair_signal, biased_signal = rng.normal(size=num_rows), rng.normal(size=num_rows)
    features = rng.normal(size=(num_rows, 6)) * 0.3
    features[:, 0] = groups + rng.normal(scale=0.3, size=num_rows)
    features[:, 1] += fair_signal
    features[:, 2] += biased_signal + rng.normal(scale=1.0, size=num_rows)
    fair = fair_signal + rng.normal(scale=0.3, size=num_rows) > 0
    biased = biased_signal + 3.0 * (groups - 0.5) + rng.normal(scale=0.3, size=num_rows) > 0
    return [
        {
            "features": features[i].astype(np.float32).tolist(),
            "labels": [int(fair[i]), int(biased[i])],
            "group_labels": [int(groups[i])],
        }
        for i in range(num_rows)
    ]


def test_learned_teacher_prefers_fairness_on_the_biased_task(tmp_path) -> None:
    """From scratch, interval 1, no exploration: the biased task gets F_t more often than the fair one.

    A single run is noisy (a look-ahead's reward gap has a standard deviation several times its mean; the
    fair task's share of F_t drifts between runs), so four seeded runs are averaged. With a look-ahead step of
    1.0, F_t overshoots on the fair task (its mean reward gap is negative) and pays off on the biased one while
    that task leans on the group.
    """
    config = FairMTLConfig(
        tasks=["fair", "biased"],
        protected_attributes=["group"],
        group_vocab={"group": ["a", "b"]},
        num_features=6,
        tabular_hidden_sizes=[32, 32],
        classifier_dropout=0.0,
    )
    fractions = []
    for seed in range(4):
        torch.manual_seed(seed)
        trainer = FairMTLTrainer(
            model=FairMTLModel(config),
            args=make_args(
                tmp_path / str(seed),
                seed=seed,
                data_seed=seed,
                per_device_train_batch_size=128,
                max_steps=90,
                logging_steps=1000,
                teacher_interval=1,
                teacher_epsilon=0.0,
                teacher_lookahead_lr=1.0,
                teacher_heldout_size=256,
            ),
            train_dataset=Dataset.from_list(fair_and_biased_rows(4096, seed)),
            eval_dataset=Dataset.from_list(fair_and_biased_rows(512, seed + 100)),
        )
        trainer.train()
        fractions.append(trainer.teacher_callback.summary())
    fair = np.mean([f["fair"] for f in fractions])
    biased = np.mean([f["biased"] for f in fractions])
    assert biased > fair + 0.1, fractions
