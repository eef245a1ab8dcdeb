"""One puck hit on any robot and puck scene: through the robot interface with approach, puck put back by someone
else and retract, as on hardware, against the simulated puck table of the meta-RL world."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from mtrl_robot.backends.interface import SimBackend
from mtrl_robot.learning.puck.methods import PolicyMethod
from mtrl_robot.learning.puck.train import VAE_FILE, load_preset, new_policy, simulated_world
from mtrl_robot.models.hitting_vae import HittingVAE
from mtrl_robot.tasks.moves import MIN_APPROACH_TIME, approach_time
from mtrl_robot.tasks.puck import (
    MAX_SLIDE_TIME,
    MISSED_DISTANCE,
    REAL_TASK,
    REST_SPEED,
    MeasuredPuckScene,
    PuckHittingEnv,
    PuckWorld,
    Task,
    make_backend,
)

NOMINAL = Task("nominal", {}, False)
ACTIONS = torch.tensor([[-0.6, 0.4], [0.0, 0.0], [0.7, -0.5]])


@pytest.fixture(scope="module")
def env(small_puck_run):
    environment = PuckHittingEnv("panda", motion_vae=HittingVAE.load(small_puck_run / VAE_FILE))
    yield environment
    environment.close()


class BenchInSimulation(MeasuredPuckScene):
    """A MuJoCo arm playing the real one: the simulator puts the puck back (as the arm node's ``~/reset_scene``)
    and plays the camera; ``at_start`` says whether the puck is seen back at its start."""

    def __init__(self, backend: SimBackend, at_start: bool):
        super().__init__(backend, backend.table.scene.puck_start)
        self.backend, self.at_start = backend, at_start

    def reset_puck(self) -> None:
        limits = self.backend.limits
        self.backend.reset(np.clip(self.backend.read_state().positions, limits.lower, limits.upper))

    def puck_at_start(self) -> bool:
        return self.at_start

    def where(self) -> np.ndarray:
        return self.backend.table.state()[0][:2]

    def rest(self) -> np.ndarray:
        self.backend.table.settle(MAX_SLIDE_TIME, REST_SPEED)
        return self.where()


def bench_world(env: PuckHittingEnv, at_start: bool = True) -> tuple[PuckWorld, list[str]]:
    """The meta-RL world on a MuJoCo arm of its own, hits with approach and retract as on hardware."""
    backend = make_backend("mujoco", env.arm, env.scene)
    config = load_preset("small")
    lines: list[str] = []
    world = PuckWorld(backend, BenchInSimulation(backend, at_start), env.vae, config.goal_distance,
                      config.goal_angle, retract_to=env.arm.home_q, log=lines.append, keep_record=True)
    return world, lines


def test_approach_time_keeps_the_peak_speed_within_the_share_of_the_limit():
    limits = np.array([2.0, 1.0])
    assert approach_time(np.zeros(2), np.zeros(2), limits) == MIN_APPROACH_TIME
    duration = approach_time(np.zeros(2), np.array([0.5, 1.0]), limits)
    assert duration == pytest.approx(1.5 * 1.0 / (0.3 * 1.0))  # the slow joint decides


def test_hits_through_the_robot_interface_land_where_the_simulated_table_puts_them(env):
    world, lines = bench_world(env)
    sim = simulated_world(env, load_preset("small"))
    goals = sim.goals(len(ACTIONS), np.random.default_rng(0))
    through_robot = world.hit(REAL_TASK, goals, ACTIONS, np.random.default_rng(1))
    in_task = sim.hit(NOMINAL, goals, ACTIONS, np.random.default_rng(1))
    assert (world.hits, world.refused, world.misses) == (3, 0, 0) and len(lines) == 3
    finals = np.array([r["final"] for r in world.record])
    assert all(r["start"] is None for r in world.record)  # no measurement saw the puck at its start
    assert np.all(np.linalg.norm(finals - env.scene.puck_start, axis=1) > 0.02)  # every hit moved the puck
    np.testing.assert_allclose(through_robot, in_task, atol=0.01)  # approach, reset, retract: < 1 cm apart
    assert sim.record is None and sim.hits == 3  # a simulated world keeps counts, not a record of every hit
    world.robot.close()


def test_a_puck_not_back_at_its_start_is_a_miss_not_a_hit(env):
    world, lines = bench_world(env, at_start=False)
    distances = world.hit(REAL_TASK, np.array([[0.6, 0.0]]), ACTIONS[:1], np.random.default_rng(0))
    assert distances.tolist() == [MISSED_DISTANCE] and (world.hits, world.misses, world.refused) == (1, 1, 0)
    assert "not at its start" in lines[0] and world.record[0]["final"] is None
    world.robot.close()


def test_a_refused_motion_is_scored_as_a_miss_and_counted(env):
    world, lines = bench_world(env)
    upper = world.robot.limits.upper
    nominal = upper.copy()
    upper[:] = world.robot.limits.lower  # every posture but the lowest is now past a limit: the approach is refused
    try:
        distances = world.hit(REAL_TASK, np.array([[0.6, 0.0]]), ACTIONS[:1], np.random.default_rng(0))
    finally:
        upper[:] = nominal
    assert distances.tolist() == [MISSED_DISTANCE] and (world.hits, world.refused, world.misses) == (1, 1, 0)
    assert "refused or failed: approach" in lines[0] and world.record[0]["final"] is None
    world.robot.close()


def test_a_real_puck_takes_no_physics(env):
    world, _ = bench_world(env)
    with pytest.raises(ValueError, match="cannot be set"):
        world.hit(NOMINAL._replace(parameters={"puck.mass": 0.2}), np.array([[0.6, 0.0]]), ACTIONS[:1],
                  np.random.default_rng(0))
    with pytest.raises(ValueError, match="no randomization spec"):
        world.random_task(np.random.default_rng(0))
    world.robot.close()


def test_a_policy_that_observes_the_start_gets_the_measured_one_and_refuses_without(env):
    world, _ = bench_world(env)
    config = replace(load_preset("small"), observe_start=True)
    method = PolicyMethod(*new_policy(config, True), config, world)
    goals, rng = np.array([[0.6, 0.0], [0.55, 0.05]]), np.random.default_rng(0)
    unmeasured = world.layout(REAL_TASK, 2, rng)
    assert np.isnan(unmeasured.starts).all()
    with pytest.raises(ValueError, match="observes where the puck stands before each hit, but no measured start"):
        method.propose(goals, unmeasured.starts, explore=False)
    world.scene.start_seen = world.start + [0.004, -0.003]
    measured = world.layout(REAL_TASK, 2, rng)
    assert measured.starts.tolist() == [world.scene.start_seen.tolist()] * 2
    torch.testing.assert_close(method.observe(goals, measured.starts)[:, 2:], torch.tensor([[0.2, -0.15]] * 2))
    world.robot.close()
