"""The MuJoCo backend: kinematics agree with numpy FK, trajectories run, randomization is applied in place."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import mujoco
import numpy as np
import pytest
from arm_variants import perturbed

from mtrl_robot.arms.families import load_family
from mtrl_robot.arms.fk import flange_position
from mtrl_robot.backends.mujoco_backend import MujocoBackend
from mtrl_robot.backends.trajectory import GOAL_TOLERANCE, JointTrajectory, TrajectoryError
from mtrl_robot.core.paths import data_dir
from mtrl_robot.randomization import Randomizer, load_spec
from mtrl_robot.scenes.puck_table import PAIR_FRICTION_ORDER, load_scene

FAMILIES = ["baxter", "gen3", "panda", "yumi", "ur5e"]
SCENE = load_scene()


def smooth_move(arm, q0, q1, duration: float, points: int = 41, with_velocities: bool = False) -> JointTrajectory:
    """Quintic rest-to-rest motion from ``q0`` to ``q1``."""
    s = np.linspace(0.0, 1.0, points)[:, None]
    positions = q0 + (10 * s**3 - 15 * s**4 + 6 * s**5) * (q1 - q0)
    velocities = (30 * s**2 - 60 * s**3 + 30 * s**4) * (q1 - q0) / duration if with_velocities else None
    return JointTrajectory(arm.joint_names, np.linspace(0.0, duration, points), positions, velocities)


def quintic_duration(arm, q0, q1, margin: float = 1.3) -> float:
    return margin * float(np.max(1.875 * np.abs(q1 - q0) / arm.velocity_limits))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("variant", ["nominal", "perturbed", "perturbed-on-table"])
def test_flange_matches_numpy_fk(family, variant):
    arm = load_family(family) if variant == "nominal" else perturbed(load_family(family), seed=len(family))
    scene = SCENE if variant == "perturbed-on-table" else None
    backend = MujocoBackend(arm, scene)
    mount = np.array([0.0, 0.0, SCENE.table_top + SCENE.mount_height(family) if scene else 0.0])
    rng = np.random.default_rng(1)
    for q in rng.uniform(arm.lower, arm.upper, size=(25, arm.dof)):
        backend.reset(q)
        np.testing.assert_allclose(backend.flange_position(), flange_position(arm, q) + mount, atol=1e-3)


@pytest.mark.parametrize("family", FAMILIES)
def test_trajectory_reaches_goal_and_respects_limits(family):
    arm = load_family(family)
    backend = MujocoBackend(arm, SCENE)
    start = backend.read_state().positions
    goal = np.clip(start + np.random.default_rng(2).uniform(-0.8, 0.8, arm.dof), arm.lower, arm.upper)
    goal[1] = arm.upper[1] - 0.01  # one joint drives right up to its limit
    traj = smooth_move(arm, start, goal, quintic_duration(arm, start, goal), with_velocities=family == "panda")
    t0 = backend.time
    backend.send_trajectory(traj)
    worst_tracking, positions = 0.0, []
    while backend.is_executing():
        backend.step(5)
        state = backend.read_state()
        reference, _ = traj.sample(state.stamp - t0)
        worst_tracking = max(worst_tracking, float(np.max(np.abs(state.positions - reference))))
        positions.append(state.positions)
    result = backend.wait()
    assert result.success, result.message
    assert np.max(np.abs(result.final_error)) <= GOAL_TOLERANCE
    assert worst_tracking < 0.02
    positions = np.array(positions)
    assert np.all(positions >= arm.lower - 0.005) and np.all(positions <= arm.upper + 0.005)
    assert np.linalg.norm(backend.flange_position() - flange_position(arm, backend.read_state().positions)
                          - [0, 0, SCENE.mount_height(family)]) < 1e-3


def test_execute_joints_by_name_and_state_stamps():
    arm = load_family("panda")
    backend = MujocoBackend(arm)
    goal = arm.home_q + 0.3
    traj = smooth_move(arm, arm.home_q, goal, 1.0)
    order = list(reversed(range(arm.dof)))
    shuffled = JointTrajectory(tuple(arm.joint_names[i] for i in order), traj.times, traj.positions[:, order])
    t0 = backend.time
    result = backend.execute(shuffled)
    assert result.success, result.message
    state = backend.read_state()
    np.testing.assert_allclose(state.positions, goal, atol=GOAL_TOLERANCE)
    assert state.names == arm.joint_names
    assert state.stamp == pytest.approx(backend.time) and state.stamp - t0 >= 1.0
    assert result.duration == pytest.approx(state.stamp - t0)


def test_first_point_far_from_current_state():
    arm = load_family("gen3")
    backend = MujocoBackend(arm)
    target = arm.home_q.copy()
    target[3] += 0.3
    jump = JointTrajectory(arm.joint_names, np.array([0.0, 1.0]), np.vstack([target, target]))
    with pytest.raises(TrajectoryError, match=arm.joint_names[3]):
        backend.send_trajectory(jump)
    # With time_from_start > 0 the backend moves there from the current state, as ros2_control does.
    result = backend.execute(JointTrajectory(arm.joint_names, np.array([1.0]), target[None]))
    assert result.success, result.message
    # ... but not faster than the joint allows.
    too_far = np.clip(arm.home_q + 2.0, arm.lower, arm.upper)
    with pytest.raises(TrajectoryError, match="current position"):
        backend.send_trajectory(JointTrajectory(arm.joint_names, np.array([0.05]), too_far[None]))


def test_bad_trajectories_are_refused():
    arm = load_family("panda")
    backend = MujocoBackend(arm)
    q = np.tile(arm.home_q, (2, 1))
    times = np.array([0.0, 1.0])
    names = list(arm.joint_names)

    nan = q.copy()
    nan[1, 2] = np.nan
    with pytest.raises(TrajectoryError, match="panda_joint3: position at point 1 is nan"):
        backend.send_trajectory(JointTrajectory(arm.joint_names, times, nan))
    with pytest.raises(TrajectoryError, match="elbow_joint"):
        backend.send_trajectory(JointTrajectory(tuple(names[:-1] + ["elbow_joint"]), times, q))
    outside = q.copy()
    outside[1, 3] = arm.upper[3] + 0.1
    with pytest.raises(TrajectoryError, match=names[3]):
        backend.send_trajectory(JointTrajectory(arm.joint_names, times, outside))
    fast = q.copy()
    fast[1, 5] += 1.0
    with pytest.raises(TrajectoryError, match=f"{names[5]}: velocity"):
        backend.send_trajectory(JointTrajectory(arm.joint_names, np.array([0.0, 0.1]), fast))
    assert not backend.is_executing()


def test_timeout_and_stop():
    arm = load_family("yumi")
    backend = MujocoBackend(arm)
    goal = np.clip(arm.home_q + 0.5, arm.lower, arm.upper)
    backend.send_trajectory(smooth_move(arm, arm.home_q, goal, 2.0))
    result = backend.wait(timeout=0.5)
    assert not result.success and "timeout" in result.message
    assert backend.is_executing() and backend.time == pytest.approx(0.5)
    backend.stop()
    assert not backend.is_executing()
    held = backend.read_state().positions
    backend.step(250)
    np.testing.assert_allclose(backend.read_state().positions, held, atol=0.02)


@pytest.mark.parametrize("push", [False, True])
def test_chunked_stepping_equals_single_steps(push):
    """``step(n)`` (run in C by mujoco.rollout) and n × ``step()`` give the same physics, bit for bit."""
    arm = load_family("panda")
    chunked, single = MujocoBackend(arm, SCENE), MujocoBackend(arm, SCENE)
    traj = smooth_move(arm, arm.home_q, arm.home_q + 0.2, 0.5)
    for backend in (chunked, single):
        backend.send_trajectory(traj)
        if push:  # forces applied by the user are kept
            backend.data.xfrc_applied[backend.model.body("puck").id, 0] = 0.3
            backend.data.qfrc_applied[0] = 2.0
    chunked.step(300)
    for _ in range(300):
        single.step()
    assert chunked.time == single.time
    np.testing.assert_array_equal(chunked.data.qpos, single.data.qpos)
    np.testing.assert_array_equal(chunked.data.qvel, single.data.qvel)
    np.testing.assert_array_equal(chunked.data.ctrl, single.data.ctrl)


def test_control_dt_must_be_a_multiple_of_the_timestep():
    arm = load_family("panda")
    assert MujocoBackend(arm, control_dt=0.01).control_dt == pytest.approx(0.01)
    with pytest.raises(ValueError, match="multiple"):
        MujocoBackend(arm, control_dt=0.003)


def test_model_settings():
    model = MujocoBackend(load_family("baxter"), SCENE).model
    assert model.opt.integrator == mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    assert model.opt.timestep == pytest.approx(0.002)
    assert model.vis.quality.shadowsize == 0
    pair = model.pair("puck_table").id
    assert model.pair_dim[pair] == 6
    nominal = dict(zip(("slide_x", "slide_y", "torsional", "roll_x", "roll_y"), SCENE.puck_friction, strict=True))
    np.testing.assert_allclose(model.pair_friction[pair], [nominal[n] for n in PAIR_FRICTION_ORDER])
    assert np.all(model.body_gravcomp[[model.body(link.name).id for link in load_family("baxter").links]] == 1)
    assert model.cam("overhead").id >= 0


def randomizer(backend, seed: int = 0) -> Randomizer:
    spec = load_spec(data_dir("config") / "randomization.yaml")
    return Randomizer(spec, backend.nominal_parameters(), seed=seed)


def test_randomization_is_read_back_from_the_model():
    backend = MujocoBackend(load_family("panda"), SCENE)
    m = backend.model
    pair, puck = m.pair("puck_table").id, m.body("puck").id
    nominal_inertia = m.body_inertia[puck].copy()
    arm_bodies = [m.body(link.name).id for link in backend.arm.links]
    arm_dofs = m.jnt_dofadr[[m.joint(n).id for n in backend.arm.joint_names]]
    nominal_arm_mass, nominal_damping = m.body_mass[arm_bodies].copy(), m.dof_damping[arm_dofs].copy()
    rng = randomizer(backend)
    for _ in range(20):
        sample = rng.sample()
        sample.update({"arm.mass_scale": 1.3, "arm.damping_scale": 0.5})
        values = backend.apply_randomization(sample)
        assert values.keys() == backend.nominal_parameters().keys()
        for name, value in sample.items():
            assert values[name] == pytest.approx(value, abs=1e-12), name
        np.testing.assert_allclose(m.pair_friction[pair], [sample[f"puck.friction.{n}"] for n in PAIR_FRICTION_ORDER])
        assert m.body_mass[puck] == pytest.approx(sample["puck.mass"])
        np.testing.assert_allclose(m.body_inertia[puck], nominal_inertia * sample["puck.mass"] / SCENE.puck_mass)
        np.testing.assert_allclose(m.body_mass[arm_bodies], 1.3 * nominal_arm_mass)
        np.testing.assert_allclose(m.dof_damping[arm_dofs], 0.5 * nominal_damping)
        backend.reset()
        np.testing.assert_allclose(backend.data.qpos[m.jnt_qposadr[m.joint("puck").id]:][:2],
                                   np.add(SCENE.puck_start, (sample["puck.offset_x"], sample["puck.offset_y"])))

    # Each call starts from the nominal model: what a sample leaves out is back at its nominal value.
    values = backend.apply_randomization({"puck.friction.slide_x": 0.3})
    assert values == pytest.approx({**backend.nominal_parameters(), "puck.friction.slide_x": 0.3})
    assert m.body_mass[puck] == pytest.approx(SCENE.puck_mass)
    np.testing.assert_allclose(m.body_mass[arm_bodies], nominal_arm_mass)
    backend.reset()
    np.testing.assert_allclose(backend.data.qpos[m.jnt_qposadr[m.joint("puck").id]:][:2], SCENE.puck_start)


def test_randomization_is_in_place_and_fast():
    backend = MujocoBackend(load_family("panda"), SCENE)
    model, data = backend.model, backend.data
    samples = [randomizer(backend, seed=3).sample() for _ in range(200)]
    backend.apply_randomization(samples[0])
    t0 = time.perf_counter()
    for sample in samples:
        backend.apply_randomization(sample)
    per_sample = (time.perf_counter() - t0) / len(samples)
    assert backend.model is model and backend.data is data
    assert per_sample < 1e-3
    backend.reset()
    backend.step(100)  # the model still simulates after in-place edits
    assert np.all(np.isfinite(backend.data.qpos))


def test_randomization_refuses_unknown_and_scene_parameters():
    with_scene, bare = MujocoBackend(load_family("gen3"), SCENE), MujocoBackend(load_family("gen3"))
    with pytest.raises(ValueError, match="puck.colour"):
        with_scene.apply_randomization({"puck.colour": 1.0})
    with pytest.raises(ValueError, match="puck.mass"):
        bare.apply_randomization({"puck.mass": 0.2, "arm.mass_scale": 1.1})
    with pytest.raises(ValueError, match="puck.mass"):
        with_scene.apply_randomization({"puck.mass": -0.1})
    assert bare.apply_randomization({"arm.friction_scale": 2.0})["arm.friction_scale"] == pytest.approx(2.0)
    assert bare.nominal_parameters() == {"arm.damping_scale": 1.0, "arm.friction_scale": 1.0, "arm.mass_scale": 1.0}


def test_puck_slides_and_stops_on_the_table():
    backend = MujocoBackend(load_family("panda"), SCENE)
    m, d = backend.model, backend.data
    adr = m.jnt_dofadr[m.joint("puck").id]
    qadr = m.jnt_qposadr[m.joint("puck").id]
    backend.step(100)
    assert d.qpos[qadr + 2] == pytest.approx(SCENE.table_top + SCENE.puck_height / 2, abs=1e-3)  # rests on the table
    d.qvel[adr] = 1.0
    backend.step(1000)
    travelled = d.qpos[qadr] - SCENE.puck_start[0]
    assert 0.05 < travelled < 0.3 and abs(d.qvel[adr]) < 1e-2  # about v² / (2 μ g) = 0.1 m at μ = 0.5


def test_arm_pushes_the_puck_but_passes_through_the_table():
    backend = MujocoBackend(load_family("panda"), SCENE)
    m, d = backend.model, backend.data
    puck_geom, table_geom = m.geom("puck").id, m.geom("table").id
    qadr = m.jnt_qposadr[m.joint("puck").id]
    flange = backend.flange_position()
    d.qpos[qadr:qadr + 3] = flange + [0.03, 0, 0.03]  # the puck overlaps the last link, which points down
    mujoco.mj_forward(m, d)
    pairs = {tuple(sorted((c.geom1, c.geom2))) for c in d.contact[:d.ncon]}
    arm_geoms = {g for g in range(m.ngeom) if m.geom_bodyid[g] in {m.body(link.name).id for link in backend.arm.links}}
    assert any(puck_geom in pair and (set(pair) & arm_geoms) for pair in pairs)
    backend.step(100)
    assert d.qpos[qadr] - flange[0] > 0.06  # pushed away along +x
    low = backend.arm.home_q + [0, 1.75, 0, 0.3, 0, 0.3, 0]  # reaches 5 cm into the table top
    assert backend.execute(smooth_move(backend.arm, backend.arm.home_q, low, 1.5)).success
    assert backend.flange_position()[2] < SCENE.table_top - 0.03
    assert all(table_geom not in (c.geom1, c.geom2) or puck_geom in (c.geom1, c.geom2) for c in d.contact[:d.ncon])


def test_population_picture(tmp_path):
    """Rendering runs in a fresh interpreter so MUJOCO_GL=egl is set before mujoco is imported."""
    script = (
        "import sys, cv2\n"
        "from mtrl_robot.backends.render import render_population_png\n"
        "from mtrl_robot.arms.families import load_family\n"
        "arms = {f: [load_family(f)] for f in ('panda', 'gen3')}\n"
        "render_population_png(arms, sys.argv[1], width=320, height=240)\n"
        "image = cv2.imread(sys.argv[1])\n"
        "assert image.shape == (240, 320, 3) and image.std() > 10, image.shape\n"
    )
    path = tmp_path / "population.png"
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, env=env, timeout=120)
    assert path.is_file()


def test_anisotropic_friction_acts_along_world_axes():
    """Low slide_x and high slide_y: a puck pushed along world x slides farther than one pushed along y."""
    distances = []
    for axis in (0, 1):
        backend = MujocoBackend(load_family("panda"), SCENE)
        backend.apply_randomization({"puck.friction.slide_x": 0.15, "puck.friction.slide_y": 0.6})
        backend.reset()
        start = backend.table.state()[0]
        backend.data.qvel[backend.model.joint("puck").dofadr[0] + axis] = 1.0
        backend.step(500)
        distances.append(float(np.linalg.norm(backend.table.state()[0][:2] - start[:2])))
    assert distances[0] > 2.5 * distances[1], distances
