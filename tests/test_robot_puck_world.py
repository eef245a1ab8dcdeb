"""Puck hitting through the one robot interface (approach, puck put back, hit, measured outcome)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtrl_robot.learning.puck.train import VAE_FILE, PuckWorld, Task, load_preset, train_puck
from mtrl_robot.models.hitting_vae import HittingVAE
from mtrl_robot.tasks.puck import MAX_SLIDE_TIME, REST_SPEED, PuckHittingEnv, make_backend
from mtrl_robot.tasks.robot_puck_world import MIN_APPROACH_TIME, ROBOT_TASK, RobotPuckWorld, approach_time

NOMINAL = Task("nominal", {}, False)
ACTIONS = torch.tensor([[-0.6, 0.4], [0.0, 0.0], [0.7, -0.5]])


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    run = train_puck("small", tmp_path_factory.mktemp("puck_run"), progress=False)
    environment = PuckHittingEnv("panda", motion_vae=HittingVAE.load(run / VAE_FILE))
    yield environment
    environment.close()


def robot_world(env: PuckHittingEnv, at_start: bool = True) -> tuple[RobotPuckWorld, list[str]]:
    """The world on a MuJoCo arm of its own: the simulator plays the robot, the puck reset and the camera."""
    backend = make_backend("mujoco", env.arm, env.scene)
    limits = backend.limits

    def measure_rest() -> np.ndarray:
        backend.settle_puck(MAX_SLIDE_TIME, REST_SPEED)
        return backend.puck_state()[0][:2]

    def reset_puck() -> None:
        backend.reset(np.clip(backend.read_state().positions, limits.lower, limits.upper))

    lines: list[str] = []
    world = RobotPuckWorld(backend, env.vae, env.scene.puck_start, load_preset("small"), measure_rest, reset_puck,
                           lambda: at_start, home=env.arm.home_q, log=lines.append)
    return world, lines


def test_approach_time_keeps_the_peak_speed_within_the_share_of_the_limit():
    limits = np.array([2.0, 1.0])
    assert approach_time(np.zeros(2), np.zeros(2), limits) == MIN_APPROACH_TIME
    duration = approach_time(np.zeros(2), np.array([0.5, 1.0]), limits)
    assert duration == pytest.approx(1.5 * 1.0 / (0.3 * 1.0))  # the slow joint decides


def test_hits_through_the_robot_interface_land_where_the_task_puts_them(env):
    world, lines = robot_world(env)
    sim = PuckWorld(env, load_preset("small"))
    goals = sim.goals(len(ACTIONS), np.random.default_rng(0))
    through_robot = world.hit(ROBOT_TASK, goals, ACTIONS, np.random.default_rng(1))
    in_task = sim.hit(NOMINAL, goals, ACTIONS, np.random.default_rng(1))
    assert (world.hits, world.refused, world.misses) == (3, 0, 0) and len(lines) == 3
    finals = np.array([r["final"] for r in world.record])
    assert np.all(np.linalg.norm(finals - env.scene.puck_start, axis=1) > 0.02)  # every hit moved the puck
    np.testing.assert_allclose(through_robot, in_task, atol=0.01)  # approach, reset, retract: < 1 cm apart
    world.backend.close()


def test_a_puck_not_back_at_its_start_is_a_miss_not_a_hit(env):
    world, lines = robot_world(env, at_start=False)
    distances = world.hit(ROBOT_TASK, np.array([[0.6, 0.0]]), ACTIONS[:1], np.random.default_rng(0))
    assert distances.tolist() == [0.5] and (world.hits, world.misses) == (1, 1)
    assert "not at its start" in lines[0] and world.record[0]["final"] is None
    world.backend.close()
