"""The puck node: meta-RL adaptation of puck hitting on an arm reached through ROS, the puck seen by a camera.

A thin shell over the one puck hit and meta-RL world of :mod:`mtrl_robot.tasks.puck` (its puck scene,
:class:`RosPuckScene`, is a :class:`~mtrl_robot.tasks.puck.MeasuredPuckScene` whose outside world is ROS) and
:func:`~mtrl_robot.learning.puck.adapt.adapt_trained`, the procedure of the simulated evaluation:

- a managed node (:class:`~mtrl_robot.ros.lifecycle.ManagedArmNode`): ``configure`` loads the run's policy and
  motion VAE and checks the controller; hits are made only while ``active``; ``deactivate`` stops the arm and
  ends a running adaptation without a result;
- subscribes ``puck_position`` (``geometry_msgs/PointStamped`` in ``world``, e.g. the perception node's output);
- moves the arm through :class:`~mtrl_robot.ros.hardware_backend.HardwareBackend` (the ``preset``'s controller,
  behind the safety layer);
- before each hit puts the puck back by calling ``reset_service`` (``std_srvs/Trigger``; in simulation the arm
  node's ``~/reset_scene``, whose success is taken as the puck being there: seen from above, the arm at its hitting
  posture hides part of the puck); with ``reset_service`` empty it waits for a person to put the puck back: the
  hit starts once the puck is seen at rest within ``start_tolerance`` of its start;
- a policy trained to observe the puck's start (preset ``observed_start``) is given the start the camera measured
  (:attr:`~mtrl_robot.tasks.puck.MeasuredPuckScene.start_seen`, what the evaluation gives it from the simulator):
  where a person last put the puck back, or, with a reset service, which puts it at one place, where the puck
  rests with the arm retracted before the first hit; no puck seen resting within ``start_tolerance`` of its
  start then ends the adaptation with a named refusal, before any hit;
- ``~/adapt`` (``std_srvs/Trigger``): ``steps`` adaptation steps of the ``policy`` (``meta`` or ``baseline``) of
  the puck run in ``run_dir``. Before each step and after the last, the mean action is scored on ``eval_goals``
  fresh goals; each step is ``rollouts`` exploratory hits and one policy-gradient step. The reply's message is
  JSON (mean final distance per step in cm, hits, refused hits, misses, seconds), also written atomically to
  ``output_file`` when set; the adapted policy is written atomically to ``policy_file`` when set (read it with
  :func:`~mtrl_robot.learning.puck.train.load_policy`). With ``autostart`` it runs once, when first activated.

A puck is at rest when its points of the last ``REST_WINDOW`` s lie within ``REST_TOLERANCE`` of their mean. After a
hit the arm backs away once the puck is at rest or has not been seen for ``HIDDEN_WAIT`` s (hidden under the arm).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from geometry_msgs.msg import PointStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.client import Client
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from std_srvs.srv import Trigger

from mtrl_robot.arms.families import load_family
from mtrl_robot.core.atomic import write_atomic
from mtrl_robot.core.errors import ConfigError
from mtrl_robot.learning.puck.adapt import adapt_trained
from mtrl_robot.learning.puck.train import BASELINE_FILE, META_FILE, VAE_FILE, load_policy, save_policy
from mtrl_robot.models.hitting_vae import HittingVAE
from mtrl_robot.ros.conversions import seconds
from mtrl_robot.ros.futures import wait_for
from mtrl_robot.ros.hardware_backend import HardwareBackend
from mtrl_robot.ros.lifecycle import LIFECYCLE_PARAMETERS, ManagedArmNode, one_line
from mtrl_robot.ros.parameters import OneOf, Range
from mtrl_robot.ros.run import run_node
from mtrl_robot.scenes.puck_table import load_scene
from mtrl_robot.tasks.puck import REAL_TASK, MeasuredPuckScene, PuckWorld

REST_WINDOW = 0.5  # s the puck must stay still to count as at rest
REST_TOLERANCE = 0.002  # m
REST_TIMEOUT = 6.0  # s after a hit before the puck counts as not found
HIDDEN_WAIT = 1.0  # s without a new sighting after which a hit's puck counts as hidden under the arm
SERVICE_TIMEOUT = 10.0  # s for the reset service
PERSON_TIMEOUT = 120.0  # s for a person to put the puck back

PARAMETERS = {  # name: (default, description[, Range or OneOf])
    "run_dir": ("", "Puck meta-RL run folder (vae.pt, meta_policy.pt, baseline_policy.pt)"),
    "policy": ("meta", "Which policy of the run adapts: meta or baseline", OneOf(("meta", "baseline"))),
    "preset": ("sim_panda_hitting", "Hardware preset of the arm's controller and safety limits"),
    "scene": ("puck_table", "Scene YAML or name: the puck's start position"),
    "reset_service": ("/arm_node/reset_scene", "Trigger service putting the puck back; empty: wait for a person"),
    "start_tolerance": (0.01, "m: how close to its start the puck must rest before a hit", Range(0.0, 1.0)),
    "steps": (3, "Adaptation steps (inner policy-gradient steps)", Range(0, 1000)),
    "rollouts": (0, "Exploratory hits per step (0: the run's K)", Range(0, 100_000)),
    "eval_goals": (0, "Goals scored with the mean action before each step and after the last (0: the run's)",
                   Range(0, 100_000)),
    "seed": (0, "Seed of goals and exploration", Range(0, 2**32 - 1)),
    "output_file": ("", "JSON file for the adaptation result (empty: none)"),
    "policy_file": ("", "File for the adapted policy (empty: none)"),
    "autostart": (False, "Run one adaptation when the node is first activated"),
    **LIFECYCLE_PARAMETERS,
}


class PuckTracker:
    """The latest puck positions by their image stamps, and waits for the puck to rest."""

    def __init__(self) -> None:
        self._points: list[tuple[float, np.ndarray]] = []  # (stamp in s, (x, y))
        self._lock = threading.Lock()

    def add(self, msg: PointStamped) -> None:
        with self._lock:
            self._points.append((seconds(msg.header.stamp), np.array([msg.point.x, msg.point.y])))
            del self._points[:-200]

    def latest(self) -> np.ndarray | None:
        """The last position seen, if any."""
        with self._lock:
            return self._points[-1][1].copy() if self._points else None

    def rest(self, since: float, timeout: float = REST_TIMEOUT, hidden: float | None = None) -> np.ndarray | None:
        """The puck's position once still for ``REST_WINDOW`` s in images stamped after ``since``; None on timeout
        or, with ``hidden``, once no new position has been seen for ``hidden`` s."""
        now = time.monotonic()
        deadline, latest, seen_at = now + timeout, None, now
        while now < deadline:
            with self._lock:
                points = [(t, p) for t, p in self._points if t >= since]
            if points and points[-1][0] != latest:
                latest, seen_at = points[-1][0], now
            if hidden is not None and now - seen_at >= hidden:
                return None
            if points and points[-1][0] - points[0][0] >= REST_WINDOW:
                window = [p for t, p in points if t >= points[-1][0] - REST_WINDOW]
                mean = np.mean(window, axis=0)
                if len(window) >= 3 and max(np.linalg.norm(p - mean) for p in window) < REST_TOLERANCE:
                    return mean
            time.sleep(0.05)
            now = time.monotonic()
        return None


class RosPuckScene(MeasuredPuckScene):
    """The puck seen on ``puck_position``, put back by a ``std_srvs/Trigger`` service or, without one, a person."""

    def __init__(self, node: Node, robot: HardwareBackend, puck_start: np.ndarray, tracker: PuckTracker,
                 reset: Client | None, start_tolerance: float):
        """``tracker`` is fed from ``puck_position``; ``reset`` is a client of the reset service (None: a person)."""
        super().__init__(robot, puck_start)
        self.node, self.tracker, self._reset, self.start_tolerance = node, tracker, reset, start_tolerance
        self.service = reset.srv_name if reset is not None else ""

    def _now(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def reset_puck(self) -> None:
        if self._reset is None:
            self.node.get_logger().info(f"put the puck back at {self.puck_start.round(3).tolist()}")
            return
        if not self._reset.wait_for_service(timeout_sec=SERVICE_TIMEOUT):
            raise RuntimeError(f"reset service {self.service} not found")
        future = self._reset.call_async(Trigger.Request())
        if not wait_for(future, SERVICE_TIMEOUT) or not future.result().success:
            raise RuntimeError(f"reset service {self.service} did not reset the scene")

    def puck_at_start(self) -> bool:
        """With a reset service its success is enough; a person's reset is checked (and measured) by the camera."""
        if self._reset is not None:
            return True
        return self.measure_start(PERSON_TIMEOUT) is not None

    def measure_start(self, timeout: float = REST_TIMEOUT) -> np.ndarray | None:
        """The puck's position once at rest in images from now on, kept as :attr:`start_seen` if it is within
        ``start_tolerance`` of its start; None (with a warning) if it is not."""
        position = self.tracker.rest(self._now(), timeout)
        if position is None or float(np.linalg.norm(position - self.puck_start)) > self.start_tolerance:
            self.node.get_logger().warn(
                f"the puck is not at rest at its start {self.puck_start.round(3).tolist()}: seen "
                f"{'nowhere at rest' if position is None else position.round(3).tolist()}")
            return None
        self.start_seen = position
        return position

    def where(self) -> np.ndarray | None:
        return self.tracker.latest()

    def rest(self) -> np.ndarray | None:
        return self.tracker.rest(self._now())

    def let_settle(self) -> None:
        """Until the puck is still, or hidden: seen from above, the arm at the end of a hit can hide a puck that
        stopped under it, and backing away along the hitting line cannot catch a puck still sliding there."""
        self.tracker.rest(self._now(), hidden=HIDDEN_WAIT)


class PuckNode(ManagedArmNode):
    """Adapts the puck-hitting policy of a run to the arm, puck and table it is connected to."""

    def __init__(self) -> None:
        super().__init__("puck_node", PARAMETERS)
        p = self.p
        self.tracker = PuckTracker()
        self.create_subscription(PointStamped, "puck_position", self.tracker.add, 10,
                                 callback_group=ReentrantCallbackGroup())
        self._reset = self.create_client(Trigger, p["reset_service"], callback_group=MutuallyExclusiveCallbackGroup()) \
            if p["reset_service"] else None
        self.trained = self.config = self.world = None
        self._busy = threading.Lock()
        self._autostart = p["autostart"]  # until the first activation
        self.create_service(Trigger, "~/adapt", self._on_adapt, callback_group=ReentrantCallbackGroup())
        self.bring_up()

    def load(self) -> HardwareBackend:
        p = self.p
        run = Path(p["run_dir"])
        if not p["run_dir"] or not run.is_dir():
            raise ConfigError("parameter run_dir", None, f"not a puck run folder: {p['run_dir']!r}")
        self.trained = load_policy(run / (META_FILE if p["policy"] == "meta" else BASELINE_FILE))
        overrides = {k: p[k] for k in ("rollouts", "eval_goals") if p[k] > 0}
        self.config = replace(self.trained.config, **overrides)
        vae = HittingVAE.load(run / VAE_FILE)  # frozen
        puck_start = load_scene(p["scene"]).puck_start
        backend = HardwareBackend(p["preset"], node_name="puck_node_client")
        scene = RosPuckScene(self, backend, puck_start, self.tracker, self._reset, p["start_tolerance"])
        try:
            self.world = PuckWorld(backend, scene, vae, self.config.goal_distance, self.config.goal_angle,
                                   retract_to=load_family(backend.preset.family).home_q, log=self.get_logger().info,
                                   keep_record=True)
        except ValueError:  # the VAE's joints are not the arm's
            backend.close()
            raise
        self.get_logger().info(f"{p['policy']} policy of {run}, preset {p['preset']}, {p['steps']} steps × "
                               f"{self.config.rollouts} hits, puck reset by {p['reset_service'] or 'a person'}")
        return backend

    def unload(self) -> None:
        self.trained = self.config = self.world = None

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)
        if self._autostart:
            self._autostart = False
            threading.Thread(target=self.adapt, daemon=True).start()
        return result

    def adapt(self, wait: bool = True) -> dict | str:
        """One adaptation run: the result as a dict (also logged and written to ``output_file``), or why there is
        none (not active; without ``wait``, one already running; deactivated or failed on the way)."""
        if not self.active:
            return f"{self.get_name()} is not active (`{self.how_to_activate}`)"
        if not self._busy.acquire(blocking=wait):
            return "an adaptation is already running"
        try:
            return self._adapt(self.trained, self.world, self.config)
        except (RuntimeError, ValueError) as exc:  # HardwareError (deactivated, stale joint states), reset service
            reason = f"adaptation ended without a result: {one_line(exc)}"
            self.get_logger().error(reason)
            return reason
        finally:
            self._busy.release()

    def _adapt(self, trained, world: PuckWorld, config) -> dict:
        started = time.monotonic()
        if config.observe_start and world.scene.start_seen is None and world.scene.measure_start() is None:
            raise ValueError(f"the {self.p['policy']} policy observes where the puck stands before each hit, but the "
                             f"camera saw no puck resting within start_tolerance {self.p['start_tolerance']} m of its "
                             f"start {world.scene.puck_start.round(3).tolist()} on puck_position")
        if config.observe_start:
            self.get_logger().info(f"the policy observes the puck's start, measured at "
                                   f"{world.scene.start_seen.round(4).tolist()}")
        adapted, curve = adapt_trained(trained, world, REAL_TASK, config, self.p["steps"], [self.p["seed"], 7])
        if self.p["policy_file"]:
            save_policy(adapted, self.p["policy_file"])
        result = {"policy": self.p["policy"], "run_dir": self.p["run_dir"], "steps": self.p["steps"],
                  "rollouts": config.rollouts, "eval_goals": config.eval_goals,
                  "mean_distance_cm": [round(float(d) * 100, 2) for d in curve], "hits": world.hits,
                  "refused": world.refused, "misses": world.misses,
                  "seconds": round(time.monotonic() - started, 1), "policy_file": self.p["policy_file"]}
        summary = json.dumps(result)
        result["hit_record"] = world.record
        if self.p["output_file"]:
            write_atomic(self.p["output_file"], json.dumps(result, indent=1))
        self.get_logger().info(f"adaptation done: {summary}")  # after the file, so the file is there when seen
        return result

    def _on_adapt(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        result = self.adapt(wait=False)
        response.success = isinstance(result, dict)
        response.message = json.dumps(result) if response.success else result
        return response


def main(args: list[str] | None = None) -> int:
    """Run until SIGINT or SIGTERM (exit code 0); exit code 1 on a configuration error."""
    return run_node("puck_node", PuckNode, lambda: MultiThreadedExecutor(num_threads=3), args)


if __name__ == "__main__":
    sys.exit(main())
