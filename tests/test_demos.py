"""Demonstrations: planned reaches, population generation, the dataset format, recordings, OMPL around boxes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from mtrl_robot.arms.families import load_family
from mtrl_robot.arms.fk import flange_position
from mtrl_robot.arms.population import Population, generate, load_config
from mtrl_robot.backends.trajectory import LIMIT_FRACTIONS, JointLimits, JointTrajectory, check_trajectory
from mtrl_robot.distributed.compute import ComputeConfig
from mtrl_robot.motions import dataset as dataset_module
from mtrl_robot.motions.dataset import DatasetError, DemoDataset, concat, load
from mtrl_robot.motions.generate import generate_demos
from mtrl_robot.motions.reach import (
    N_WAYPOINTS,
    acceleration_limits,
    plan_reach,
    plan_robot_demos,
)

FAMILIES = ("panda", "gen3", "yumi", "baxter", "ur5e")


@pytest.fixture(scope="module")
def population() -> Population:
    return generate(load_config(robots_per_family=2, families=list(FAMILIES)))


@pytest.fixture(scope="module")
def demos(population) -> DemoDataset:
    """Demos of the seven-joint robots (a dataset holds one joint count)."""
    seven = [r.robot_id for r in population.robots if r.dof == 7]
    return generate_demos(population.select(seven), 6, seed=3, compute=ComputeConfig(workers=1), progress=False)


def limits_of(arm) -> JointLimits:
    return JointLimits(arm.joint_names, arm.lower, arm.upper, arm.velocity_limits,
                       np.array([j.effort for j in arm.joints]))


# ------------------------------------------------------------------ planner
@pytest.mark.parametrize("family", FAMILIES)
def test_planned_demos_go_from_home_to_the_target_within_limits(population, family):
    arm = population.family(family)[1]  # a perturbed robot: its own kinematics must be used
    planned = plan_robot_demos(arm, 10, seed=0)
    assert len(planned) == 10 and planned.n_failed == 0
    assert planned.positions.shape == (10, N_WAYPOINTS, arm.dof) and planned.times.shape == (10, N_WAYPOINTS)
    np.testing.assert_allclose(planned.positions[:, 0], np.broadcast_to(arm.home_q, (10, arm.dof)), atol=1e-12)
    reach = np.linalg.norm(flange_position(arm, planned.positions[:, -1]) - planned.targets, axis=-1)
    assert reach.max() < 1e-3
    np.testing.assert_allclose(planned.velocities[:, [0, -1]], 0.0, atol=1e-12)  # starts and ends at rest
    for i in range(10):
        check_trajectory(dataset_trajectory(planned, i), limits_of(arm))  # positions and velocities
        assert planned.times[i, 0] == 0.0 and np.all(np.diff(planned.times[i]) > 0)
        accel = np.abs(np.diff(planned.velocities[i], axis=0) / np.diff(planned.times[i])[:, None])
        assert np.all(accel <= LIMIT_FRACTIONS.acceleration * acceleration_limits(arm) * 1.05)
        assert np.all(np.abs(planned.velocities[i]) <= 0.8 * arm.velocity_limits + 1e-9)


def dataset_trajectory(planned, i) -> JointTrajectory:
    return JointTrajectory(planned.joint_names, planned.times[i], planned.positions[i], planned.velocities[i])


def test_failed_ik_is_dropped_and_counted():
    arm = load_family("panda")
    reachable = flange_position(arm, arm.home_q + 0.2)
    planned = plan_reach(arm, np.array([reachable, [3.0, 3.0, 3.0], reachable]))
    assert planned.n_failed == 1 and planned.kept.tolist() == [0, 2] and len(planned) == 2


def test_targets_depend_only_on_seed_and_robot(population):
    arm = population.robots[0]
    a, b = plan_robot_demos(arm, 4, seed=5), plan_robot_demos(arm, 4, seed=5)
    assert np.array_equal(a.positions, b.positions) and np.array_equal(a.targets, b.targets)
    assert not np.array_equal(plan_robot_demos(arm, 4, seed=6).targets, a.targets)
    other = population.robots[1]
    assert not np.allclose(plan_robot_demos(other, 4, seed=5).targets, a.targets)


@pytest.mark.parametrize("family", FAMILIES)
def test_demo_executed_in_mujoco_reaches_the_target(population, family):
    from mtrl_robot.backends.mujoco_backend import MujocoBackend

    robot_id = f"{family}-001"
    demos = generate_demos(population.select([robot_id]), 2, seed=3, compute=ComputeConfig(workers=1), progress=False)
    arm = demos.arm(robot_id)
    backend = MujocoBackend(arm)
    for i in demos.demos_of(robot_id)[:2]:
        backend.reset()
        result = backend.execute(demos.trajectory(i))
        assert result.success, result.message
        assert np.linalg.norm(backend.flange_position() - demos.targets[i]) < 5e-3


# ------------------------------------------------------------------ generation
def test_generation_is_the_same_for_any_worker_count(population, demos):
    small = population.select(["panda-000", "yumi-001", "baxter-000"])
    one = generate_demos(small, 4, seed=3, compute=ComputeConfig(workers=1), progress=False)
    two = generate_demos(small, 4, seed=3, compute=ComputeConfig(workers=2), progress=False)
    assert one.robot_ids == two.robot_ids == ("panda-000", "yumi-001", "baxter-000")
    for name in ("positions", "velocities", "times", "targets", "robot_index"):
        assert np.array_equal(getattr(one, name), getattr(two, name)), name
    # a robot's demos do not depend on which other robots are generated with it
    alone = demos.for_robot("yumi-001")
    np.testing.assert_array_equal(one.for_robot("yumi-001").positions, alone.positions[:4])
    assert one.info["ik_failures"] == {"panda-000": 0, "yumi-001": 0, "baxter-000": 0}


def test_generation_refuses_an_empty_population():
    with pytest.raises(DatasetError, match="population is empty"):
        generate_demos([], 5, seed=0, progress=False)


# ------------------------------------------------------------------ dataset
def test_dataset_round_trip(demos, tmp_path):
    path = demos.save(tmp_path / "demos.npz")
    back = load(path)
    assert back.robot_ids == demos.robot_ids and len(back) == len(demos) == 8 * 6
    for name in ("positions", "velocities", "times", "targets", "robot_index"):
        assert np.array_equal(getattr(back, name), getattr(demos, name)), name
    for robot_id in demos.robot_ids:
        assert back.arm(robot_id) == demos.arm(robot_id)  # every parameter, exactly
    assert back.info == json.loads(json.dumps(demos.info))
    assert back.info["seed"] == 3 and back.info["population"]["robots_per_family"] == 2
    assert [os.path.basename(p) for p in tmp_path.iterdir()] == ["demos.npz"]  # no temporary files left


def test_dataset_selections(demos):
    panda = demos.for_robot("panda-001")
    assert panda.robot_ids == ("panda-001",) and len(panda) == 6
    assert panda.joint_names == load_family("panda").joint_names
    panda.require_joint_names(load_family("panda").joint_names)
    support, query = demos.split(2, np.random.default_rng(0))
    for robot_id in demos.robot_ids:
        s, q = support.for_robot(robot_id), query.for_robot(robot_id)
        assert len(s) == 2 and len(q) == 4
        together = np.concatenate([s.targets, q.targets])
        assert sorted(map(tuple, together)) == sorted(map(tuple, demos.for_robot(robot_id).targets))
    with pytest.raises(DatasetError, match="needs at least 7"):
        demos.split(6, np.random.default_rng(0))
    merged = concat([demos.select(["gen3-000"]), demos.select(["yumi-000", "gen3-000"])])
    assert merged.robot_ids == ("gen3-000", "yumi-000") and len(merged) == 18
    with pytest.raises(DatasetError, match="no robot 'kuka-000'"):
        demos.for_robot("kuka-000")


def test_different_joint_set_is_refused(demos):
    with pytest.raises(DatasetError, match="mixes 4 joint sets"):
        _ = demos.joint_names
    panda = demos.for_robot("panda-000")
    with pytest.raises(DatasetError, match=r"panda-000 come from a different joint set: missing \['joint_1'"):
        panda.require_joint_names(load_family("gen3").joint_names)
    with pytest.raises(DatasetError, match="in the order"):
        panda.require_joint_names(tuple(reversed(panda.joint_names)))
    clash = demos.arm("panda-000").with_changes(damping=(9.0,) * 7)
    other = DemoDataset(robots=(clash,), robot_index=[0], targets=panda.targets[:1], times=panda.times[:1],
                        positions=panda.positions[:1], velocities=panda.velocities[:1])
    with pytest.raises(DatasetError, match="panda-000 appears in dataset 1 with different parameters"):
        concat([panda, other])


def rewrite(src: Path, dst: Path, metadata: dict | str | None = None, **arrays) -> Path:
    """Copy a dataset file, replacing some arrays or the metadata, without going through DemoDataset."""
    with np.load(src) as archive:
        content = {k: archive[k] for k in archive.files}
    content.update(arrays)
    if metadata is not None:
        content["metadata"] = np.array(metadata if isinstance(metadata, str) else json.dumps(metadata))
    with open(dst, "wb") as f:
        np.savez(f, **content)
    return dst


def test_bad_dataset_files_give_clear_errors(demos, tmp_path):
    good = demos.save(tmp_path / "good.npz")
    meta = json.loads(str(np.load(good)["metadata"][()]))
    with pytest.raises(DatasetError, match=r"missing\.npz: dataset file not found"):
        load(tmp_path / "missing.npz")
    (tmp_path / "corrupt.npz").write_bytes(good.read_bytes()[:1000])
    with pytest.raises(DatasetError, match=r"corrupt\.npz: not a readable \.npz dataset"):
        load(tmp_path / "corrupt.npz")
    np.savez(tmp_path / "foreign.npz", x=np.zeros(3))
    with pytest.raises(DatasetError, match=r"foreign\.npz: not a demonstration dataset \(no metadata"):
        load(tmp_path / "foreign.npz")
    other = rewrite(good, tmp_path / "other.npz", metadata={**meta, "format": "something.else"})
    with pytest.raises(DatasetError, match=r"other\.npz: not a demonstration dataset \(format 'something.else'"):
        load(other)
    newer = rewrite(good, tmp_path / "newer.npz", metadata={**meta, "version": 99})
    with pytest.raises(DatasetError, match="unsupported dataset version 99"):
        load(newer)
    positions = demos.positions.copy()
    positions[13, 5, 2] = np.nan
    nan = rewrite(good, tmp_path / "nan.npz", positions=positions)
    robot = demos.robot_of(13)
    with pytest.raises(DatasetError, match=rf"nan\.npz: demo 13 \(robot {robot}\) has NaN or inf in positions"):
        load(nan)
    empty = rewrite(good, tmp_path / "empty.npz", positions=np.zeros((0, 32, 7)), velocities=np.zeros((0, 32, 7)),
                    times=np.zeros((0, 32)), targets=np.zeros((0, 3)), robot_index=np.zeros(0, dtype=np.int64))
    with pytest.raises(DatasetError, match=r"empty\.npz: dataset is empty \(no demonstrations\)"):
        load(empty)
    shapes = rewrite(good, tmp_path / "shapes.npz", velocities=demos.velocities[:, :10])
    with pytest.raises(DatasetError, match=r"inconsistent shapes: velocities has shape \(48, 10, 7\)"):
        load(shapes)


def test_invalid_datasets_cannot_be_built(demos):
    panda = demos.for_robot("panda-000")
    fields = dict(robots=panda.robots, robot_index=panda.robot_index, targets=panda.targets, times=panda.times,
                  positions=panda.positions, velocities=panda.velocities)
    with pytest.raises(DatasetError, match="dataset is empty"):
        DemoDataset(**{**fields, "robot_index": [], "targets": np.zeros((0, 3)), "times": np.zeros((0, 32)),
                       "positions": np.zeros((0, 32, 7)), "velocities": np.zeros((0, 32, 7))})
    times = panda.times.copy()
    times[2, 4] = times[2, 3]
    with pytest.raises(DatasetError, match=r"demo 2 \(robot panda-000\): times must .* increase strictly"):
        DemoDataset(**{**fields, "times": times})
    with pytest.raises(DatasetError, match="robots without demonstrations: gen3-000"):
        DemoDataset(**{**fields, "robots": panda.robots + (demos.arm("gen3-000"),)})
    with pytest.raises(DatasetError, match="the selection is empty"):
        panda.subset([])


def test_save_is_atomic(demos, tmp_path, monkeypatch):
    path = demos.save(tmp_path / "demos.npz")
    before = path.read_bytes()
    smaller = demos.for_robot("gen3-000")

    def broken_savez(file, **arrays):
        file.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(dataset_module.np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        smaller.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["demos.npz"]
    unserializable = DemoDataset(robots=smaller.robots, robot_index=smaller.robot_index, targets=smaller.targets,
                                 times=smaller.times, positions=smaller.positions, velocities=smaller.velocities,
                                 info={"when": object()})
    with pytest.raises(DatasetError, match="not JSON-serializable"):
        unserializable.save(path)
    assert path.read_bytes() == before
    assert len(load(smaller.save(path))) == 6


# ------------------------------------------------------------------ recordings
def test_recording_round_trip_with_shuffled_joints(demos, tmp_path):
    from mtrl_robot.motions.recording import Episode, convert_recording, write_recording

    panda = demos.for_robot("panda-001")
    arm = panda.arm("panda-001")
    order = np.random.default_rng(0).permutation(arm.dof)
    names = tuple(arm.joint_names[j] for j in order) + ("panda_finger_joint1",)
    episodes = []
    for i in range(3):  # as a driver would publish it: 100 Hz, joints in its own order, plus a gripper
        trajectory = panda.trajectory(i)
        t = np.linspace(0.0, trajectory.duration, int(trajectory.duration * 100) + 1)
        q, v = (np.array(x) for x in zip(*(trajectory.sample(s) for s in t), strict=True))
        gripper = np.full((len(t), 1), 0.04)
        episodes.append(Episode(panda.targets[i], names, t, np.hstack([q[:, order], gripper]),
                                np.hstack([v[:, order], 0 * gripper])))
    bag = write_recording(tmp_path / "recording", episodes)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recording"]  # no temporary directory left
    assert sorted(p.name for p in bag.iterdir()) == ["metadata.yaml", "recording.mcap"]
    with pytest.raises(FileExistsError):
        write_recording(bag, episodes)

    back = convert_recording(bag, arm, ignore_joints=["panda_finger_joint1"])
    assert back.robot_ids == ("panda-001",) and len(back) == 3 and back.info["source"] == "recording"
    back.require_joint_names(arm.joint_names)
    np.testing.assert_array_equal(back.targets, panda.targets[:3])
    np.testing.assert_allclose(back.times, panda.times[:3], atol=1e-8)
    np.testing.assert_allclose(back.positions, panda.positions[:3], atol=1e-4)
    np.testing.assert_allclose(back.velocities, panda.velocities[:3], atol=1e-2)
    reach = np.linalg.norm(flange_position(arm, back.positions[:, -1]) - back.targets, axis=-1)
    assert reach.max() < 1e-3

    with pytest.raises(DatasetError, match=r"recorded joints do not match panda-001: missing \[\], "
                                           r"unknown \['panda_finger_joint1'\]"):
        convert_recording(bag, arm)
    with pytest.raises(DatasetError, match=r"missing \['joint_1'"):
        convert_recording(bag, load_family("gen3"))


def test_bad_recordings_give_clear_errors(demos, tmp_path):
    from mtrl_robot.motions.recording import Episode, convert_recording, write_recording

    arm = demos.arm("panda-000")
    trajectory = demos.for_robot("panda-000").trajectory(0)
    positions = trajectory.positions.copy()
    positions[7, 3] = np.nan
    bag = write_recording(tmp_path / "nan", [Episode(np.zeros(3), arm.joint_names, trajectory.times, positions)])
    with pytest.raises(DatasetError, match=r"nan: episode 0 .* panda_joint4 position is nan in joint state 7"):
        convert_recording(bag, arm)
    with pytest.raises(DatasetError, match="recording not found"):
        convert_recording(tmp_path / "nowhere", arm)
    with pytest.raises(DatasetError, match=r"no /elsewhere topic in the recording \(topics: /demo_target, /joint"):
        convert_recording(bag, arm, target_topic="/elsewhere")
    camera = write_recording(tmp_path / "camera", [Episode(np.zeros(3), arm.joint_names, trajectory.times,
                                                           trajectory.positions)], frame_id="camera")
    with pytest.raises(DatasetError, match="target in frame 'camera'; expected one of 'world', '', 'panda_link0'"):
        convert_recording(camera, arm)
    short = write_recording(tmp_path / "short", [Episode(np.zeros(3), arm.joint_names, trajectory.times[:1],
                                                         trajectory.positions[:1])])
    with pytest.raises(DatasetError, match="episode 0 .* has 1 joint states"):
        convert_recording(short, arm)


# ------------------------------------------------------------------ obstacles
def test_ompl_plans_around_a_box_the_straight_line_hits():
    pytest.importorskip("ompl")
    from mtrl_robot.arms.ik import solve_ik
    from mtrl_robot.motions.obstacles import Box, CollisionChecker, plan_around

    arm = load_family("panda")
    target = np.array([0.35, 0.45, 0.35])
    goal = solve_ik(arm, target).q
    midway = flange_position(arm, (arm.home_q + goal) / 2)
    box = Box.around(midway, (0.06, 0.06, 0.06))
    checker = CollisionChecker(arm, [box])
    assert not checker.collides(arm.home_q) and not checker.collides(goal)
    assert not checker.motion_free(arm.home_q, goal)  # the obstacle-free plan would hit the box

    times, positions, velocities = plan_around(arm, target, [box])
    assert positions.shape == (N_WAYPOINTS, arm.dof) and times.shape == (N_WAYPOINTS,)
    np.testing.assert_allclose(positions[0], arm.home_q, atol=1e-12)
    assert np.linalg.norm(flange_position(arm, positions[-1]) - target) < 1e-3
    check_trajectory(JointTrajectory(arm.joint_names, times, positions, velocities), limits_of(arm))
    # Straight lines between waypoints are the planned path; checked finely, it keeps 3 cm from the box.
    fine = CollisionChecker(arm, [box], link_radius=0.03)
    for a, b in zip(positions[:-1], positions[1:], strict=True):
        assert fine.motion_free(a, b, step=0.002)


def test_positions_beyond_the_robots_joint_limits_are_refused_naming_demo_robot_joint_and_limit(demos, tmp_path):
    good = demos.save(tmp_path / "good.npz")
    robot = demos.robot_of(13)
    arm = demos.arm(robot)
    joint = arm.joints[2]
    positions = demos.positions.copy()
    positions[13, 5, 2] = 1e6
    far = rewrite(good, tmp_path / "far.npz", positions=positions)
    limits = rf"\[{joint.lower:.4g}, {joint.upper:.4g}\] rad"
    with pytest.raises(DatasetError, match=rf"far\.npz: demo 13 \(robot {robot}\): {joint.name} is at 1e\+06 rad "
                                           rf"at waypoint 5, outside its limits {limits}"):
        load(far)
    fields = dict(robots=demos.robots, robot_index=demos.robot_index, targets=demos.targets, times=demos.times,
                  velocities=demos.velocities)
    for beyond in (joint.upper + 0.05, joint.lower - 0.05):
        positions[13, 5, 2] = beyond
        with pytest.raises(DatasetError, match=rf"demo 13 \(robot {robot}\): {joint.name} is at"):
            DemoDataset(positions=positions, **fields)
    positions[13, 5, 2] = joint.upper + 0.5 * dataset_module.LIMIT_TOLERANCE  # a measured overshoot is tolerated
    assert DemoDataset(positions=positions, **fields).positions[13, 5, 2] > joint.upper
