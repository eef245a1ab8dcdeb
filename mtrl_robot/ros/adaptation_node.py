"""The adaptation node: the last K recorded demonstrations → an adapted checkpoint and model file → the policy node.

``~/adapt`` (``std_srvs/Trigger``) converts the newest ``k`` episode bags in ``recordings_dir`` (the demo
recorder's, one episode per bag; hidden, unfinished folders are skipped) for the configured robot, adapts
``checkpoint`` to them with :func:`~mtrl_robot.learning.reaching.adapt.adapt`, writes the result into ``output_dir``,
then sets the policy node's ``model`` parameter to the adapted model file and calls its ``reload`` service. The
reply's ``message`` is the new model file's path, or what went wrong; what the adaptation guard did (the step kept,
shrunk, or the meta-trained initialisation kept) is logged with it and recorded in the adapted checkpoint.

``~/suggest`` (``std_srvs/Trigger``) answers where to demonstrate next: the target where ``checkpoint``, adapted on
the episodes ``~/adapt`` would use (the newest ``k``, or all recorded if fewer; none: the prior), is least certain
(:func:`~mtrl_robot.learning.reaching.suggest.suggest_next`). Its ``message`` is the suggestion as JSON
(``target`` in m in the robot's base frame, ``spread_m``, ``measure``, ``demos``, ...), or what went wrong.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.task import Future
from std_srvs.srv import Trigger

from mtrl_robot.arms.chain import Arm
from mtrl_robot.arms.loader import load_arm
from mtrl_robot.core.torch_files import CheckpointError
from mtrl_robot.learning.reaching import checkpoint as checkpoints
from mtrl_robot.learning.reaching.adapt import adapt
from mtrl_robot.learning.reaching.data import to_tensors
from mtrl_robot.learning.reaching.suggest import (
    CANDIDATES,
    CRITERIA,
    SAMPLES,
    SUGGEST_SEED,
    Suggestion,
    suggest_next,
)
from mtrl_robot.motions.dataset import DatasetError, DemoDataset, concat
from mtrl_robot.motions.recording import convert_recording
from mtrl_robot.ros.futures import wait_for
from mtrl_robot.ros.parameters import OneOf, Range, declare_parameters
from mtrl_robot.ros.run import run_node

REPLY_TIMEOUT = 10.0  # s for the policy node to answer
TRIM_REST = 0.01  # rad/s: samples before and after the motion slower than this are dropped

PARAMETERS = {  # name: (default, description[, Range or OneOf])
    "checkpoint": ("", "Meta-trained reaching checkpoint (.pt) to adapt"),
    "recordings_dir": ("recordings", "Folder of the demo recorder's episode bags"),
    "output_dir": ("", "Folder for adapted checkpoints and their model files (empty: beside checkpoint)"),
    "k": (5, "Number of most recent episodes to adapt on", Range(1, 10_000)),
    "steps": (-1, "Inner-loop adaptation steps (-1: the checkpoint preset's adapt.steps)", Range(-1, 1_000_000)),
    "policy_node": ("policy_node", "Node whose model parameter is set and whose reload service is called"),
    "robot": ("panda", "Arm family name or family file, a robot id of population_file, or 'urdf' (as arm_node)"),
    "population_file": ("", "Population JSON to take the robot id from (empty: robot is a family name)"),
    "urdf_file": ("", "URDF to load when robot is 'urdf'"),
    "flange_link": ("", "Flange link of urdf_file when robot is 'urdf'"),
    "suggest_candidates": (CANDIDATES, "Candidate targets ~/suggest scores", Range(1, 1_000_000)),
    "suggest_samples": (SAMPLES, "Latent draws per candidate set for ~/suggest (probabilistic MAML)",
                        Range(2, 10_000)),
    "suggest_criterion": (CRITERIA[0], "How ~/suggest chooses: " + " or ".join(CRITERIA), OneOf(CRITERIA)),
    "suggest_seed": (SUGGEST_SEED, "Seed of ~/suggest's candidates and latent draws", Range(0, 2**31 - 1)),
}


def complete_bags(folder: str | Path) -> list[Path]:
    """The complete bags in ``folder``, oldest first (by name, which the recorder makes sortable)."""
    return sorted(p.parent for p in Path(folder).glob("*/metadata.yaml") if not p.parent.name.startswith("."))


def latest_bags(folder: str | Path, k: int) -> list[Path]:
    """The ``k`` newest complete bags in ``folder``, oldest first."""
    bags = complete_bags(folder)
    if len(bags) < k:
        raise DatasetError(folder, f"{k} episodes needed, {len(bags)} recorded")
    return bags[len(bags) - k:]


def recorded_demos(folder: str | Path, arm: Arm, k: int, n_waypoints: int) -> DemoDataset:
    """The last ``k`` recorded episodes of ``arm`` as one dataset."""
    return concat([convert_recording(bag, arm, n_waypoints, trim_rest=TRIM_REST) for bag in latest_bags(folder, k)])


class AdaptationNode(Node):
    """Serves ``~/adapt``: few-shot adaptation on the latest recordings, handed to the policy node."""

    def __init__(self) -> None:
        super().__init__("adaptation_node")
        p = declare_parameters(self, PARAMETERS)
        self.p = p
        self.arm = load_arm(p["robot"], p["population_file"], p["urdf_file"], p["flange_link"])
        group = ReentrantCallbackGroup()  # the service waits for the policy node's replies
        self._parameters = AsyncParameterClient(self, p["policy_node"], callback_group=group)
        self._reload = self.create_client(Trigger, f"{p['policy_node']}/reload", callback_group=group)
        self.create_service(Trigger, "~/adapt", self._adapt, callback_group=group)
        self.create_service(Trigger, "~/suggest", self._suggest, callback_group=group)
        self.get_logger().info(f"adapting {p['checkpoint']} to {self.arm.robot_id} on the last {p['k']} episodes "
                               f"in {p['recordings_dir']}")

    def _wait(self, future: Future, what: str):
        if not wait_for(future, REPLY_TIMEOUT):
            raise TimeoutError(f"{what}: no reply from {self.p['policy_node']} within {REPLY_TIMEOUT} s")
        return future.result()

    def adapt_latest(self) -> Path:
        """Adapt on the latest episodes and return the new model file (the adapted checkpoint is beside it)."""
        p = self.p
        n_waypoints = int(checkpoints.load(p["checkpoint"]).info["n_waypoints"])
        demos = recorded_demos(p["recordings_dir"], self.arm, p["k"], n_waypoints)
        source = Path(p["checkpoint"])
        folder = Path(p["output_dir"]) if p["output_dir"] else source.parent
        folder.mkdir(parents=True, exist_ok=True)
        out = folder / f"{source.stem}-{self.arm.robot_id}-k{p['k']}-{time.strftime('%Y%m%dT%H%M%S')}.pt"
        steps = None if p["steps"] < 0 else p["steps"]
        return checkpoints.model_file_path(adapt(source, demos, p["k"], steps, out, say=self.get_logger().info))

    def suggest(self) -> Suggestion:
        """The next target to demonstrate, given the episodes ``~/adapt`` would adapt on."""
        p = self.p
        state = checkpoints.load(p["checkpoint"])
        n_waypoints = int(state.info["n_waypoints"])
        k = min(p["k"], len(complete_bags(p["recordings_dir"])))
        targets, offsets = torch.zeros((0, 3)), torch.zeros((0, n_waypoints, self.arm.dof))
        if k:
            data = to_tensors(recorded_demos(p["recordings_dir"], self.arm, k, n_waypoints), state.joint_names,
                              n_waypoints)
            targets, offsets = data.targets, data.offsets
        return suggest_next(state, self.arm, targets, offsets, p["suggest_candidates"], p["suggest_samples"],
                            p["suggest_seed"], p["suggest_criterion"])

    def hand_over(self, path: Path) -> str:
        """Set the policy node's model file to ``path`` and make it reload; returns its reply."""
        if not self._parameters.wait_for_services(REPLY_TIMEOUT) or not self._reload.wait_for_service(REPLY_TIMEOUT):
            raise TimeoutError(f"the policy node {self.p['policy_node']} is not reachable")
        result = self._wait(self._parameters.set_parameters([Parameter("model", value=str(path))]), "set model")
        if not all(r.successful for r in result.results):
            raise RuntimeError(f"policy node refused the model parameter: {result.results[0].reason}")
        reply = self._wait(self._reload.call_async(Trigger.Request()), "reload")
        if not reply.success:
            raise RuntimeError(f"policy node could not reload: {reply.message}")
        return reply.message

    def _adapt(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        try:
            path = self.adapt_latest()
            reply = self.hand_over(path)
        except (DatasetError, CheckpointError, ValueError, OSError, RuntimeError, TimeoutError) as exc:
            self.get_logger().error(f"adaptation failed: {exc}")
            response.success, response.message = False, str(exc)
            return response
        self.get_logger().info(f"adapted model {path}; policy node: {reply}")
        response.success, response.message = True, str(path)
        return response


    def _suggest(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        try:
            suggestion = self.suggest()
        except (DatasetError, CheckpointError, ValueError, OSError) as exc:
            self.get_logger().error(f"no suggestion: {exc}")
            response.success, response.message = False, str(exc)
            return response
        self.get_logger().info(suggestion.describe())
        response.success, response.message = True, json.dumps(suggestion.to_dict())
        return response


def main(args: list[str] | None = None) -> int:
    """Run until SIGINT or SIGTERM (exit code 0); exit code 1 on a configuration error."""
    return run_node("adaptation_node", AdaptationNode, lambda: MultiThreadedExecutor(num_threads=3), args)


if __name__ == "__main__":
    sys.exit(main())
