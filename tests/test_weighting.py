"""Task weightings: uncertainty, DWA and PCGrad behave as their papers define, exactly under accumulation."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from torch import nn

from hf_fairmtl import FairMTLModel
from hf_fairmtl.trainer import FairMTLTrainer
from hf_fairmtl.weighting import (
    WEIGHTINGS,
    DynamicWeightAverage,
    PCGrad,
    TaskWeighting,
    UncertaintyWeighting,
    WeightingInputs,
    project_conflicting,
    register_weighting,
)

from .synthetic import biased_rows, tabular_config
from .test_trainer import make_args, train_tabular


def test_projection_removes_only_the_conflicting_component() -> None:
    grads = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    update = project_conflicting(grads, torch.tensor([0, 1]))
    # g0 · g1 = -1 < 0: g0 loses its component along g1 (and vice versa) before the sum.
    g0 = torch.tensor([1.0, 0.0]) - (-1.0 / 2.0) * torch.tensor([-1.0, 1.0])
    g1 = torch.tensor([-1.0, 1.0]) - (-1.0 / 1.0) * torch.tensor([1.0, 0.0])
    torch.testing.assert_close(update, g0 + g1)
    assert float(g0 @ torch.tensor([-1.0, 1.0])) == pytest.approx(0.0)
    aligned = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    torch.testing.assert_close(project_conflicting(aligned, torch.tensor([1, 0])), aligned.sum(0))


def conflicting_rows(num_rows: int) -> list[dict]:
    """Two tasks whose labels are opposite functions of the same features: their gradients conflict."""
    rows = biased_rows(num_rows, seed=4, bias=0.0)
    for row in rows:
        row["labels"][1] = 1 - row["labels"][0]
    return rows


def conflicting_model() -> FairMTLModel:
    """Identical heads (to be trained on opposite labels): the tasks pull the shared layers apart."""
    torch.manual_seed(0)
    model = FairMTLModel(tabular_config())
    model.heads["auxiliary"].load_state_dict(model.heads["target"].state_dict())
    return model


def test_pcgrad_rewrites_shared_gradients_to_the_projected_sum(tmp_path) -> None:
    model = conflicting_model()
    trainer = FairMTLTrainer(model=model, args=make_args(tmp_path, weighting="pcgrad"))
    batch = trainer.data_collator(conflicting_rows(32))
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    shared = [p for n, p in model.named_parameters() if not n.startswith("heads.")]
    pending = trainer.weighting._task_grads.clone()  # noqa: SLF001 - the per-task gradients of this window
    trainer.weighting.rewrite_gradients(shared)
    expected = project_conflicting(pending, torch.randperm(2, generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(torch.cat([p.grad.flatten() for p in shared]), expected)
    assert float(pending[0] @ pending[1]) < 0, "the data was built so the task gradients conflict"


def test_pcgrad_is_exact_under_gradient_accumulation(tmp_path) -> None:
    train = Dataset.from_list(conflicting_rows(128))

    def final_params(weighting: str = "pcgrad", **overrides) -> torch.Tensor:
        args = make_args(tmp_path, weighting=weighting, max_steps=3, **overrides)
        trainer = FairMTLTrainer(model=conflicting_model(), args=args, train_dataset=train)
        trainer.train()
        return torch.cat([p.detach().flatten() for p in trainer.model.parameters()])

    large = final_params(per_device_train_batch_size=32)
    accumulated = final_params(per_device_train_batch_size=8, gradient_accumulation_steps=4)
    torch.testing.assert_close(accumulated, large, rtol=1e-5, atol=1e-6)
    equal = final_params("equal", per_device_train_batch_size=32)
    assert (equal - large).abs().max() > 1e-4, "on conflicting tasks PCGrad's update differs from the plain sum"


def test_uncertainty_weights_down_the_task_with_the_larger_loss(tmp_path) -> None:
    rows = biased_rows(512, seed=3, bias=0.0)
    generator = torch.Generator().manual_seed(0)
    for row in rows:  # target labels are pure noise: its loss stays near log 2 while auxiliary's falls
        row["labels"][0] = int(torch.randint(0, 2, (1,), generator=generator))
    trainer = train_tabular(
        tmp_path, Dataset.from_list(rows), weighting="uncertainty", weighting_kwargs={"lr": 0.05}, num_train_epochs=3
    )
    weights = trainer.weighting.task_weights
    assert weights[0] < weights[1]
    logs = [entry for entry in trainer.state.log_history if "target_uncertainty_weight" in entry]
    assert logs, "the weights are logged per task"


def test_dwa_weights_follow_the_rate_of_descent() -> None:
    dwa = DynamicWeightAverage(2, temperature=1.0, window=1)

    def window(losses: list[float]) -> None:
        values = [torch.tensor(v) for v in losses]
        dwa.accumulate(WeightingInputs(values, values, torch.zeros(1, 1), torch.tensor([True, True]), []))
        dwa.step()

    window([1.0, 1.0])
    torch.testing.assert_close(dwa.task_weights, torch.ones(2))  # windows 1 and 2 train with equal weights
    window([0.5, 1.0])  # task 0 halves its loss, task 1 stalls: window 3 weighs task 1 up
    rates = torch.tensor([0.5, 1.0])
    torch.testing.assert_close(dwa.task_weights, 2 * torch.softmax(rates, 0))
    window([0.25, 1.0])
    torch.testing.assert_close(dwa.task_weights, 2 * torch.softmax(rates, 0))
    assert dwa.task_weights[1] > dwa.task_weights[0] and float(dwa.task_weights.sum()) == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("dwa", {"temperature": 0}, "temperature"),
        ("dwa", {"window": 0}, "window"),
        ("uncertainty", {"lr": -1}, "lr"),
        ("uncertainty", {"typo": 1}, "weighting_kwargs"),
    ],
)
def test_bad_weighting_settings_are_refused_by_name(name, kwargs, message, tmp_path) -> None:
    with pytest.raises(ValueError, match=message):
        FairMTLTrainer(
            model=FairMTLModel(tabular_config()), args=make_args(tmp_path, weighting=name, weighting_kwargs=kwargs)
        )


def test_registry_refuses_duplicates_and_suggests_names(tmp_path) -> None:
    with pytest.raises(ValueError, match="already registered"):

        @register_weighting("gradnorm")
        class Other(TaskWeighting):
            pass

    with pytest.raises(ValueError, match="did you mean 'gradnorm'"):
        make_args(tmp_path, weighting="gradnrom")
    with pytest.raises(TypeError):
        register_weighting("not_a_weighting")(nn.Linear)
    assert "not_a_weighting" not in WEIGHTINGS


def test_gradnorm_flag_is_an_alias(tmp_path) -> None:
    args = make_args(tmp_path, gradnorm=True)
    assert args.weighting == "gradnorm" and args.gradnorm
    assert make_args(tmp_path, weighting="gradnorm").gradnorm
    with pytest.raises(ValueError, match="contradicts"):
        make_args(tmp_path, gradnorm=True, weighting="dwa")
    assert isinstance(WEIGHTINGS["uncertainty"](2), UncertaintyWeighting)
    assert isinstance(WEIGHTINGS["pcgrad"](2), PCGrad)
