"""The losses of reaching meta-training: the flange-space query loss (several arms' forward kinematics in one call,
with joint padding and order; its value on real demos and its gradient), MAML's query-loss hook, and the demos'
loss with its final waypoint weighted."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from arm_variants import perturbed
from torch.func import vmap
from torch_threads import one_thread  # noqa: F401

from mtrl_robot.arms.families import load_family
from mtrl_robot.arms.fk import flange_position
from mtrl_robot.arms.fk_torch import StackedFK, TorchFK
from mtrl_robot.learning.reaching.checkpoint import make_learner
from mtrl_robot.learning.reaching.flange_loss import FlangeQueryLoss
from mtrl_robot.learning.reaching.presets import MetaConfig, ModelConfig
from mtrl_robot.learning.reaching.pretrain import build_model
from mtrl_robot.meta import MAML, MAMLConfig, TaskBatch
from mtrl_robot.meta.sinusoid import SinusoidTasks, make_mlp
from mtrl_robot.models.joint_padding import pad_joints
from mtrl_robot.motions.reach import plan_robot_demos


@pytest.fixture(scope="module")
def arms():
    """Two robots of one family, different kinematics, and a six-joint arm."""
    return [perturbed(load_family("panda"), seed=0), perturbed(load_family("panda"), seed=1),
            perturbed(load_family("ur5e"), seed=2)]


def test_stacked_fk_is_each_arms_fk_with_padding_ignored(arms):
    fk = StackedFK(arms)
    rng = np.random.default_rng(0)
    q = torch.from_numpy(rng.uniform(-1.5, 1.5, (len(arms), 4, 7)))
    q[2, :, 6] = float("nan")  # the six-joint arm's padding column: ignored whatever it holds
    which = torch.tensor([0, 1, 2])
    q.requires_grad_()
    positions = fk.position(q, which)
    for i, arm in enumerate(arms):
        expected = TorchFK(arm).position(q[i, :, :arm.dof].detach())
        torch.testing.assert_close(positions[i], expected, rtol=0, atol=1e-12)
    positions.sum().backward()
    assert torch.isfinite(q.grad).all() and (q.grad[2, :, 6] == 0).all()
    swapped = fk.position(q.detach()[[1, 0]], torch.tensor([1, 0]))  # task ids pick each row's arm
    torch.testing.assert_close(swapped, positions.detach()[[1, 0]], rtol=0, atol=0)


@pytest.fixture(scope="module")
def demos(arms):
    """Three demos per Panda robot, as (targets, offsets from home)."""
    planned = [plan_robot_demos(arm, 3, seed=5) for arm in arms[:2]]
    targets = torch.tensor(np.stack([p.targets for p in planned]), dtype=torch.float32)
    offsets = torch.tensor(np.stack([p.positions - p.positions[:, :1] for p in planned]), dtype=torch.float32)
    return targets, offsets


def reaching_model(offsets):
    model = build_model(ModelConfig(vae_hidden=(16,), policy_hidden=(16,)), offsets.shape[-2], offsets.shape[-1])[1]
    model.scaler.set_statistics(offsets.flatten(0, 1))
    return model


def test_a_demo_has_no_flange_error_on_its_robot_and_some_on_another(arms, demos):
    targets, offsets = demos
    model = reaching_model(offsets)
    loss = FlangeQueryLoss(model, arms[:2], F.mse_loss, weight=1.0)
    exact = model.normalize(offsets)
    own = loss.squared_distances(exact, targets, torch.tensor([0, 1])).sqrt()
    assert own.max() < 0.02  # cm: the demos' IK tolerance is 0.01 cm
    other = loss.squared_distances(exact, targets, torch.tensor([1, 0])).sqrt()
    numpy_fk = [flange_position(arms[1 - i], arms[i].home_q + offsets[i, :, -1].double().numpy()) for i in range(2)]
    expected = 100 * np.linalg.norm(np.stack(numpy_fk) - targets.double().numpy(), axis=-1)
    np.testing.assert_allclose(other.numpy(), expected, atol=1e-3)
    assert other.min() > 0.1
    per_task = loss(exact, targets, exact, torch.tensor([0, 1]))
    torch.testing.assert_close(per_task, own.square().mean(dim=-1), rtol=0, atol=1e-5)  # joint part 0


def test_flange_loss_gradient_matches_finite_differences(arms, demos):
    targets, offsets = demos
    model = reaching_model(offsets)
    weight, ids = 0.3, torch.tensor([1, 0])
    loss = FlangeQueryLoss(model, arms[:2], F.mse_loss, weight)
    query_y = model.normalize(offsets)
    predictions = (query_y + 0.3 * torch.randn(query_y.shape, generator=torch.Generator().manual_seed(0)))
    predictions = predictions.requires_grad_()
    loss(predictions, targets, query_y, ids).sum().backward()
    dof, eps = offsets.shape[-1], 1e-2
    final = (offsets.shape[-2] - 1) * dof  # the final waypoint's features, then one of the first waypoint
    for index in [(0, 0, final), (0, 2, final + 3), (1, 1, final + 6), (1, 0, 4)]:
        step = torch.zeros_like(predictions)
        step[index] = eps
        with torch.no_grad():
            up = loss(predictions + step, targets, query_y, ids).sum()
            down = loss(predictions - step, targets, query_y, ids).sum()
        numeric = ((up - down) / (2 * eps)).item()
        assert predictions.grad[index].item() == pytest.approx(numeric, rel=2e-2, abs=1e-3)


@pytest.mark.parametrize("step_sizes", ["per_element", "per_tensor"], ids=["built-weights", "factored"])
def test_maml_uses_the_query_loss_with_the_task_ids(step_sizes):
    tasks = SinusoidTasks().sample(4, 5, 7, torch.Generator().manual_seed(0))
    learner = MAML(make_mlp(), config=MAMLConfig(inner_steps=2, learn_inner_lr=step_sizes))
    assert learner._factors_pay(5) == (step_sizes == "per_tensor")
    default = learner.meta_loss(tasks)
    seen = []

    def query_loss(predictions, query_x, query_y, task_ids):
        seen.append(task_ids)
        return vmap(F.mse_loss)(predictions, query_y) * (1.0 + task_ids)

    learner.query_loss = query_loss
    ids = torch.tensor([0.0, 1.0, 2.0, 3.0])
    weighted = learner.meta_loss(tasks._replace(task_ids=ids))
    assert seen[0] is ids
    learner.query_loss = lambda predictions, query_x, query_y, task_ids: vmap(F.mse_loss)(predictions, query_y)
    torch.testing.assert_close(learner.meta_loss(tasks), default)
    assert weighted > default
    assert isinstance(tasks, TaskBatch) and tasks.task_ids is None


@pytest.mark.parametrize("padded", [False, True])
def test_the_final_waypoint_weight_adds_the_final_waypoints_error(demos, padded):
    offsets = demos[1].flatten(0, 1)
    if padded:  # a six-joint arm's demos in a model of seven joint columns
        offsets = pad_joints(offsets[..., :6], 7)
    model = reaching_model(offsets[None])
    config = MetaConfig(adapt_only=("policy.head",))
    plain = make_learner(model, config, padded=padded).loss_fn
    weighted = make_learner(model, dataclasses.replace(config, final_weight=4.0), padded=padded).loss_fn
    y = model.normalize(offsets)
    prediction = y.nan_to_num() + 0.1 * torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    final = (prediction - y)[:, -7:]
    final_error = final.nan_to_num().square().sum() / (~final.isnan()).sum()
    torch.testing.assert_close(weighted(prediction, y), plain(prediction, y) + 4.0 * final_error)
    assert torch.isfinite(weighted(prediction, y))
