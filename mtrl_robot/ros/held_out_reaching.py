"""A reaching run's held-out robots evaluated through simulated arm nodes: the controller interface a real arm has.

For each family checkpoint of the run and its first ``robots_per_family`` held-out robots, one at a time:

1. the robot goes into ``held_out_population.json`` in the run folder, and an ``arm_node`` serving that robot
   (``robot:=<id> population_file:=…``) starts under the namespace ``/held_out/<id>``;
2. a :class:`~mtrl_robot.ros.hardware_backend.HardwareBackend` reaches it only through ROS, with a preset made for
   the robot (:func:`simulated_preset`): every motion passes its safety check;
3. for the first ``targets_per_robot`` fresh targets of the MuJoCo evaluation (the same seed), the meta-trained
   model without adaptation and after K-shot adaptation on the robot's first K demos (through the adaptation guard,
   as in the MuJoCo evaluation) plans a path, slowed to the preset's limits, and
   :func:`~mtrl_robot.tasks.reaching.reach` executes it from home; the error is the distance
   from the flange (forward kinematics of the measured joints with the robot's own model) to the target. A path the
   safety layer refuses is counted as refused (nothing is sent), not as an error.

The results go to ``arm_node_eval.json`` and, as a table beside the run's MuJoCo figures, to ``arm_node_eval.md``.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from mtrl_robot.arms import population as populations
from mtrl_robot.arms.chain import Arm
from mtrl_robot.core.atomic import write_atomic
from mtrl_robot.hardware.presets import HardwarePreset, load_preset
from mtrl_robot.hardware.safety import SafetyError, Workspace
from mtrl_robot.learning.reaching import checkpoint as checkpoints
from mtrl_robot.learning.reaching.checkpoint import ReachingCheckpoint
from mtrl_robot.learning.reaching.data import run_demos, to_tensors
from mtrl_robot.learning.reaching.evaluate import SEED, meta_trained_checkpoints
from mtrl_robot.learning.reaching.predict import predict_positions, timed
from mtrl_robot.meta.guard import guarded_adapt
from mtrl_robot.motions.dataset import DemoDataset
from mtrl_robot.motions.reach import plan_robot_demos
from mtrl_robot.ros.hardware_backend import HardwareBackend, HardwareError
from mtrl_robot.ros.policy_node import fit_limits
from mtrl_robot.ros.run import node_command
from mtrl_robot.tasks.reaching import reach
from mtrl_robot.tools.bench.ros_bench import stop_process

INTERFACES = "sim_panda"  # the arm node's default interfaces and rates, and the limit fractions of its preset
STARTUP_TIMEOUT = 60.0  # s for an arm node to come up on a loaded machine
POPULATION_FILE = "held_out_population.json"
RESULTS_JSON, RESULTS_TABLE = "arm_node_eval.json", "arm_node_eval.md"


def simulated_preset(arm: Arm, namespace: str) -> HardwarePreset:
    """A preset for an arm node serving ``arm`` under ``namespace``: the node's default interfaces, the arm's own
    joint names and position limits (no margin inside them: the model's paths are clipped to the arm's limits, as
    in the MuJoCo evaluation), velocity and acceleration at the fractions ``sim_panda`` keeps of the Panda's, and a
    workspace box as large as the arm's reach."""
    base = load_preset(INTERFACES)
    panda = {j.name: j for j in base.safety_limits().arm.joints}
    velocity_fraction = float(np.min(base.velocity / [panda[n].velocity for n in base.model_names]))
    acceleration_fraction = float(np.min(base.acceleration / [panda[n].acceleration for n in base.model_names]))
    reach_m = sum(float(np.linalg.norm(j.xyz)) for j in arm.joints) + float(np.linalg.norm(arm.flange_xyz))
    names = tuple(arm.joint_names)
    return replace(
        base, name=f"sim_{arm.robot_id}", family=arm.family, position_margin=0.0,
        action=namespace + base.action, joint_states_topic=namespace + base.joint_states_topic,
        trajectory_topic=None if base.trajectory_topic is None else namespace + base.trajectory_topic,
        joint_names=names, joint_map=dict(zip(names, names, strict=True)),
        lower=np.array([j.lower for j in arm.joints]), upper=np.array([j.upper for j in arm.joints]),
        velocity=velocity_fraction * np.array([j.velocity for j in arm.joints]),
        acceleration=acceleration_fraction * np.array([j.acceleration for j in arm.joints]),
        jerk=np.array([np.inf if j.jerk is None else j.jerk for j in arm.joints]),
        workspace=Workspace(np.full(3, -reach_m), np.full(3, reach_m)))


class ArmNodeProcess:
    """An ``arm_node`` serving one robot of a population file under a namespace; output in ``log_path``."""

    def __init__(self, robot_id: str, population_file: Path, namespace: str, rate: float, log_path: Path):
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        parameters = {"robot": robot_id, "population_file": population_file, "joint_states_rate": rate}
        with log_path.open("w") as log:
            self.process = subprocess.Popen(node_command("arm_node", parameters, namespace), stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def close(self) -> None:
        stop_process(self.process)


def robot_errors(backend: HardwareBackend, state: ReachingCheckpoint, demos: DemoDataset, targets_per_robot: int,
                 say: Callable[[str], None] = print) -> dict[str, list[float | None]]:
    """One held-out robot through ``backend``: errors (cm) without adaptation and after K-shot adaptation; None
    where the safety layer refused the path."""
    arm = demos.robots[0]
    n_waypoints = int(state.info["n_waypoints"])
    targets = plan_robot_demos(arm, targets_per_robot, SEED, n_waypoints).targets
    data = to_tensors(demos, state.joint_names, n_waypoints)
    k, steps = state.preset.adapt.k, state.preset.adapt.steps
    params, _ = guarded_adapt(state.learner, state.model.condition(data.targets[:k]),
                              state.model.normalize(data.offsets[:k]), steps)
    limits = backend.checker.limits
    errors: dict[str, list[float | None]] = {}
    for method, adapted in (("no_adaptation", None), ("maml", params)):
        errors[method] = []
        for path, target in zip(predict_positions(state, arm, targets, params=adapted), targets, strict=True):
            try:
                errors[method].append(reach(backend, arm, fit_limits(timed(arm, path), limits), target) * 100.0)
            except SafetyError as exc:  # the safety layer refused the path: nothing was sent
                say(f"{arm.robot_id}, {method}: refused by the safety layer: {exc}")
                errors[method].append(None)
    return errors


def evaluate_through_arm_nodes(run: Path, robots_per_family: int, targets_per_robot: int, log_dir: Path,
                               say: Callable[[str], None] = print) -> Path:
    """Evaluate the run's held-out robots through arm nodes (see the module docstring); returns the table's path."""
    families = run_demos(run)
    rate = load_preset(INTERFACES).joint_states_rate
    report = json.loads((run / "report.json").read_text()) if (run / "report.json").is_file() else {}
    results: dict[str, dict] = {}
    for family, (path, _) in meta_trained_checkpoints(run).items():
        state = checkpoints.load(path)
        robot_ids = list(state.info.get("held_out", []))[:robots_per_family]
        results[family] = {"k": state.preset.adapt.k, "robots": {}}
        for robot_id in robot_ids:
            demos = families[family].for_robot(robot_id)
            arm = demos.robots[0]
            population_file = run / POPULATION_FILE
            populations.save(populations.Population((arm,), populations.load_config(families=[arm.family])),
                             population_file)
            namespace = "/held_out/" + robot_id.replace("-", "_")
            say(f"evaluating {robot_id} through an arm node under {namespace}")
            node = ArmNodeProcess(robot_id, population_file, namespace, rate,
                                  log_dir / f"arm_node_{robot_id}.log")
            backend = None
            try:
                backend = HardwareBackend(simulated_preset(arm, namespace), dry_run=False, arm=arm,
                                          node_name="held_out_client_" + robot_id.replace("-", "_"))
                try:
                    backend.wait_ready(STARTUP_TIMEOUT)
                except HardwareError as exc:
                    raise HardwareError(f"{exc}; arm node output in {node.log_path}") from None
                errors = robot_errors(backend, state, demos, targets_per_robot, say)
            finally:
                if backend is not None:
                    backend.close()
                node.close()
            mujoco = report.get(family, {}).get("held_out", {}).get("per_robot_cm", {}).get(robot_id, {})
            results[family]["robots"][robot_id] = {**errors, "mujoco_maml": mujoco.get("maml", {}).get(
                str(state.preset.adapt.k))}
            say(f"{robot_id}: " + ", ".join(f"{m} {_cell(e)} cm" for m, e in errors.items()))
    write_atomic(run / RESULTS_JSON, json.dumps(results, indent=1))
    return write_atomic(run / RESULTS_TABLE, results_table(results, targets_per_robot))


def results_table(results: dict, targets_per_robot: int) -> str:
    """Markdown: per held-out robot, the mean error (cm) through its arm node, and MAML's in MuJoCo for reference."""
    ks = {entry["k"] for entry in results.values()}
    k = ks.pop() if len(ks) == 1 else "K"
    lines = [f"Reaching error (cm) of held-out robots executed through simulated arm nodes (HardwareBackend → "
             f"FollowJointTrajectory), {targets_per_robot} fresh targets per robot; MuJoCo column: the run's "
             "report.json (all its fresh targets).", "",
             f"| family | robot | no adaptation | MAML, K = {k} | MAML in MuJoCo |", "|---|---|---|---|---|"]
    for family, entry in results.items():
        for robot_id, errors in entry["robots"].items():
            mujoco = errors["mujoco_maml"]
            reference = "—" if not mujoco else f"{np.mean(mujoco):.2f}"
            lines.append(f"| {family} | {robot_id} | {_cell(errors['no_adaptation'])} | {_cell(errors['maml'])} | "
                         f"{reference} |")
    return "\n".join(lines) + "\n"


def _cell(errors: list[float | None]) -> str:
    """The mean of the executed targets' errors, and how many the safety layer refused."""
    done = [e for e in errors if e is not None]
    refused = len(errors) - len(done)
    mean = f"{np.mean(done):.2f}" if done else "—"
    return mean + (f" ({refused} refused)" if refused else "")
