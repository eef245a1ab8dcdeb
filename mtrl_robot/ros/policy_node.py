"""The policy node: a flange target → the (adapted) reaching model's trajectory → the arm's controller.

- A managed node (:class:`~mtrl_robot.ros.lifecycle.ManagedArmNode`): ``configure`` loads the robot and the model
  and checks the controller; only while ``active`` are targets planned and sent; ``deactivate`` stops the arm. A
  target received in another state is ignored, with a warning.
- Loads a deployable model file (:mod:`mtrl_robot.models.model_file`), never a training checkpoint.
- Subscribes ``target`` (``geometry_msgs/PointStamped``, frame ``world``). Each target is planned with
  :func:`~mtrl_robot.learning.reaching.predict.predict` from the measured joint state, the model run in numpy
  (:class:`~mtrl_robot.models.numpy_model.NumpyReachingModel`), slowed down if needed to fit the
  preset's velocity and acceleration limits (times ``LIMIT_FRACTIONS``), thinned to ``goal_points`` of its points
  with their velocities (:func:`~mtrl_robot.backends.trajectory.thinned`: a smaller goal for every step between
  here and the controller; the controller's cubic segments through them replace the model's intermediate points)
  and fitted to the limits again, and sent through
  :class:`~mtrl_robot.ros.hardware_backend.HardwareBackend`, so the safety layer checks what the controller
  runs. A new target
  replaces the running trajectory; each outcome is logged.
- Its executor's and the middleware's threads run at SCHED_FIFO ``executor_priority``
  (:mod:`~mtrl_robot.ros.realtime`), so a target is taken at once on a busy machine.
- ``~/reload`` (``std_srvs/Trigger``): load the model file the ``model`` parameter names now (set it first); once
  configured, inactive or active.
- ``~/markers`` (``visualization_msgs/MarkerArray``, transient local, so a viewer started later shows the latest):
  the target, the planned flange path (what the controller runs) and, once the trajectory has ended, the flange
  point reached, in the arm's base link frame (:mod:`mtrl_robot.ros.markers`).
- Latency from a target's arrival to its trajectory being handed to the controller is logged as p50/p99
  every ``LATENCY_EVERY`` targets and at shutdown; :func:`plan_latency` measures it without ROS.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np
from geometry_msgs.msg import PointStamped
from rclpy.experimental import EventsExecutor
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from mtrl_robot.arms.chain import Arm
from mtrl_robot.arms.fk import flange_position
from mtrl_robot.arms.loader import load_arm
from mtrl_robot.backends.trajectory import JointTrajectory, retime, thinned
from mtrl_robot.core.torch_files import CheckpointError
from mtrl_robot.hardware.safety import SafetyError, SafetyLimits
from mtrl_robot.learning.reaching.predict import predict
from mtrl_robot.models.model_file import ReachingModelFile, load_model_file
from mtrl_robot.models.numpy_model import NumpyReachingModel
from mtrl_robot.ros.hardware_backend import HardwareBackend, HardwareError
from mtrl_robot.ros.lifecycle import LIFECYCLE_PARAMETERS, ManagedArmNode
from mtrl_robot.ros.markers import reach_markers
from mtrl_robot.ros.parameters import Range
from mtrl_robot.ros.realtime import EXECUTOR_PRIORITY_PARAMETER, serve_at_priority
from mtrl_robot.ros.robot_description import LATCHED_QOS
from mtrl_robot.ros.run import run_node

LATENCY_EVERY = 20  # targets between latency reports
GOAL_POINTS = 8  # points per goal by default
PATH_POINTS = 32  # flange positions of the path marker, evenly spread in time over what the controller runs

PARAMETERS = {  # name: (default, description[, read_only][, Range or OneOf]); then the lifecycle's
    "model": ("", "Reaching model file (.model.pt) to plan with; ~/reload re-reads it", False),
    "goal_points": (GOAL_POINTS, "Points of each goal sent to the controller: the model's waypoints thinned to this "
                    "many, with their velocities (at least the model's count: all of them)", False,
                    Range(2, 10_000)),
    "preset": ("sim_panda", "Hardware preset name or YAML path of the arm's controller and safety limits", True),
    "robot": ("panda", "Arm family name or family file, a robot id of population_file, or 'urdf' (as arm_node)", True),
    "population_file": ("", "Population JSON to take the robot id from (empty: robot is a family name)", True),
    "urdf_file": ("", "URDF to load when robot is 'urdf'", True),
    "flange_link": ("", "Flange link of urdf_file when robot is 'urdf'", True),
    **LIFECYCLE_PARAMETERS,
    **EXECUTOR_PRIORITY_PARAMETER,
}


def fit_limits(trajectory: JointTrajectory, limits: SafetyLimits) -> JointTrajectory:
    """``trajectory`` (model joint names) slowed down uniformly to within ``LIMIT_FRACTIONS`` of the safety limits."""
    index = [limits.model_names.index(n) for n in trajectory.joint_names]
    return retime(trajectory, limits.velocity[index], limits.acceleration[index])


def plan(model: NumpyReachingModel, arm: Arm, target: np.ndarray, start: np.ndarray | None, limits: SafetyLimits,
         goal_points: int) -> JointTrajectory:
    """The trajectory sent for ``target`` from ``start``: the model's, fitted to the limits, thinned to
    ``goal_points`` points and fitted again (thinning can only change the segments' peaks, never the timing of the
    points)."""
    trajectory = fit_limits(predict(model, arm, target[None], start)[0], limits)
    return fit_limits(thinned(trajectory, goal_points), limits)


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50 and p99 (ms) of latencies in s, and how many there are."""
    values = np.asarray(samples, dtype=float) * 1e3
    return {"n": len(values), "p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99))}


def plan_latency(model: str | Path | ReachingModelFile, arm: Arm, targets: np.ndarray,
                 limits: SafetyLimits | None = None, goal_points: int = GOAL_POINTS) -> dict[str, float]:
    """Target → timed trajectory latency percentiles of the policy's planning step (:func:`plan`), one target at a
    time."""
    planner = NumpyReachingModel(model if isinstance(model, ReachingModelFile) else load_model_file(model))
    limits = limits or SafetyLimits.from_arm(arm)
    samples = []
    for target in np.asarray(targets, dtype=float).reshape(-1, 3):
        started = time.perf_counter()
        plan(planner, arm, target, None, limits, goal_points)
        samples.append(time.perf_counter() - started)
    return percentiles(samples)


class PolicyNode(ManagedArmNode):
    """Reaches each target it receives with the reaching model, through the safety-checked hardware client."""

    def __init__(self) -> None:
        super().__init__("policy_node", PARAMETERS)
        self.arm: Arm | None = None
        self.model: NumpyReachingModel | None = None
        self.latencies: list[float] = []
        self._lock = threading.Lock()  # one target planned and sent at a time
        self._sent = 0  # trajectories sent; only the latest one's outcome is shown
        self._markers = self.create_publisher(MarkerArray, "~/markers", LATCHED_QOS)
        self.create_subscription(PointStamped, "target", self._on_target, 10)
        self.create_service(Trigger, "~/reload", self._reload)
        serve_at_priority(self, self.p["executor_priority"])  # before the hardware client's threads, which inherit it
        self.bring_up()

    def load(self) -> HardwareBackend:
        p = self.p
        self.arm = load_arm(p["robot"], p["population_file"], p["urdf_file"], p["flange_link"])
        self.model = self._load(p["model"])
        backend = HardwareBackend(p["preset"], arm=self.arm, node_name="policy_node_client")
        self.get_logger().info(f"policy for {self.arm.robot_id} from {p['model'] or 'no model yet'}, "
                               f"preset {p['preset']}")
        return backend

    def unload(self) -> None:
        with self._lock:
            self.arm, self.model = None, None

    def _load(self, path: str) -> NumpyReachingModel | None:
        """The model file at ``path`` (None for ''), refused unless it drives the robot's joints."""
        if not path:
            return None
        state = load_model_file(path)
        if set(state.joint_names) != set(self.arm.joint_names):
            raise CheckpointError(f"{path}: the model drives the joints {list(state.joint_names)}, robot "
                                  f"{self.arm.robot_id} has {list(self.arm.joint_names)}")
        return NumpyReachingModel(state)

    def _reload(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        path = self.get_parameter("model").value
        if self.arm is None:
            response.success, response.message = False, f"{self.get_name()} is unconfigured: configure loads the model"
            return response
        try:
            model = self._load(path)
        except CheckpointError as exc:
            response.success, response.message = False, str(exc)
            return response
        with self._lock:
            self.model = model
        response.success, response.message = True, f"loaded {path}"
        self.get_logger().info(response.message)
        return response

    def _on_target(self, msg: PointStamped) -> None:
        received = time.perf_counter()
        target = np.array([msg.point.x, msg.point.y, msg.point.z])
        if not self.active:
            self.get_logger().warning(f"ignoring target {target.round(3).tolist()}: {self.get_name()} is not active "
                                      f"(`{self.how_to_activate}`)")
            return
        if msg.header.frame_id not in ("", "world") or not np.all(np.isfinite(target)):
            self.get_logger().error(f"ignoring target {target.tolist()} in frame '{msg.header.frame_id}' "
                                    "(expected finite, in 'world')")
            return
        backend = self.backend
        with self._lock:
            if self.model is None:
                self.get_logger().error("no model loaded; set the model parameter and call ~/reload")
                return
            try:
                start = backend.read_state().positions
                trajectory = plan(self.model, self.arm, target, start, backend.checker.limits,
                                  self.get_parameter("goal_points").value)
                backend.send_trajectory(trajectory)
            except (SafetyError, HardwareError, ValueError) as exc:
                self.get_logger().error(f"target {target.round(3).tolist()} not executed: {exc}")
                return
            self.latencies.append(time.perf_counter() - received)
            self._sent += 1
            sent, arm = self._sent, self.arm
        self.get_logger().info(f"reaching {target.round(3).tolist()}: {trajectory.times[-1]:.2f} s trajectory sent")
        if len(self.latencies) % LATENCY_EVERY == 0:
            self.report_latency()
        order = [trajectory.joint_names.index(n) for n in arm.joint_names]
        path = flange_position(arm, trajectory.sample(np.linspace(0.0, trajectory.duration, PATH_POINTS))[0][:, order])
        self._markers.publish(reach_markers(arm, self.get_clock().now().to_msg(), target, path))
        threading.Thread(target=self._report, args=(backend, arm, sent, target, path), daemon=True).start()

    def _report(self, backend: HardwareBackend, arm: Arm, sent: int, target: np.ndarray, path: np.ndarray) -> None:
        """Log the outcome of trajectory number ``sent`` and, unless another has been sent since, show where the
        flange got to."""
        result = backend.wait()
        self.get_logger().info(f"trajectory {'succeeded' if result.success else 'failed'}: {result.message}")
        with self._lock:
            if sent != self._sent:
                return
            try:
                reached = flange_position(arm, backend.read_state().positions)
            except HardwareError:  # the client was closed meanwhile (cleanup, shutdown)
                return
            self._markers.publish(reach_markers(arm, self.get_clock().now().to_msg(), target, path, reached))

    def report_latency(self) -> None:
        """Log the target → trajectory latency percentiles so far."""
        if self.latencies:
            stats = percentiles(self.latencies)
            self.get_logger().info(f"target→trajectory latency over {stats['n']} targets: "
                                   f"p50 {stats['p50_ms']:.1f} ms, p99 {stats['p99_ms']:.1f} ms")

    def destroy_node(self) -> None:
        self.report_latency()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Run until SIGINT or SIGTERM (exit code 0); exit code 1 on a configuration error."""
    return run_node("policy_node", PolicyNode, lambda: EventsExecutor(), args)


if __name__ == "__main__":
    sys.exit(main())
