"""The simulated arm node: any robot on a simulated backend, behind ros2_control's controller interface.

Interfaces (relative names, so a namespace applies; in the root namespace):

- ``/joint_states`` (``sensor_msgs/JointState``), published every ``joint_states_rate`` tick, stamped with ROS time.
- ``/<controller_name>/follow_joint_trajectory`` (``control_msgs/action/FollowJointTrajectory``) and
  ``/<controller_name>/joint_trajectory`` (``trajectory_msgs/JointTrajectory``) with the joint trajectory
  controller's semantics (:mod:`mtrl_robot.backends.controller`). As there, a goal the controller refuses is
  rejected when received, and the reason (with its error code, ``INVALID_JOINTS``, …) is logged. The checks
  against the arm's position are made again when the goal starts; should the arm have moved in between so that
  one fails, the goal ends aborted with its error code.
- ``~/randomize`` (``std_srvs/srv/Trigger``): draw new domain-randomization values from ``randomization_file``
  and apply them; the reply's ``message`` is JSON (:func:`~mtrl_robot.ros.conversions.randomization_to_json`).
  Puck position offsets take effect at the next reset.
- ``~/reset`` (``std_srvs/srv/Trigger``): abort any trajectory, put the arm at home at rest, reset the scene. A
  goal accepted before a reset (or a ``~/reset_scene``) but not yet started never starts: it ends aborted.
- ``~/reset_scene`` (``std_srvs/srv/Trigger``): abort any trajectory, reset the scene (the puck back at its
  start, at rest); the arm stays where it is, at rest — what a person putting the puck back does on a bench.
- ``robot_description`` (the robot's URDF, transient local), ``tf_static`` and ``tf``: what robot_state_publisher
  publishes for a real arm (:mod:`mtrl_robot.ros.robot_description`); ``tf`` every ``1/tf_rate`` s, on the physics
  tick whose joint state it is computed from, with that joint state's stamp.
- with ``camera``: ``camera/image_raw`` (``rgb8``) and ``camera/camera_info`` (MuJoCo only).

Physics runs in real time on a thread of its own: every 1/``joint_states_rate`` s, on an absolute schedule, it
steps the backend by the wall-clock time elapsed since its previous tick (in whole control steps), updates the
controller and publishes the joint state (one message, built once and refilled). Like ros2_control's controller
manager, the thread asks for SCHED_FIFO at ``thread_priority`` (0: normal scheduling; refused: a warning), and the
interpreter hands it the GIL within a quarter period. Above 500 Hz, MuJoCo's control and physics step become the
tick period, so that every tick publishes a new state. Requests are served by rclpy's EventsExecutor (one thread,
woken by the middleware's callbacks, no wait set rebuilt per event), so a goal is taken, checked and answered
without a hand-over between threads; that thread and the middleware's run at SCHED_FIFO ``executor_priority``,
below physics (:mod:`mtrl_robot.ros.realtime`; camera frames render at normal scheduling); each accepted goal then
runs in a thread of its own (:class:`GoalThreadActionServer`), so the executor keeps serving while it runs. In a
process that also holds a client of the node, spin it with a MultiThreadedExecutor instead: the middleware delivers
that client's requests within the sending call, which keeps the interpreter lock the EventsExecutor's callback
waits for. (An rclpy timer in the executor cost three times the CPU and, since rcl skips missed periods, fell to
190–215 Hz on a loaded 2-core machine; the thread keeps 250 Hz there.)

If a physics tick fails (an exception from the simulator or the controller), the error is logged once, the
running goal is aborted with the error as its message, and physics stops for good: ``/joint_states`` falls
silent (so a client's watchdog sees it) and every later goal is refused, as a ros2_control controller whose
hardware reports an error is deactivated. Restart the node to go on.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable

from control_msgs.action import FollowJointTrajectory
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.context import Context
from rclpy.executors import Executor
from rclpy.experimental import EventsExecutor
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from sensor_msgs.msg import JointState as JointStateMsg
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory as JointTrajectoryMsg

from mtrl_robot.arms.loader import load_arm
from mtrl_robot.backends.controller import (
    ErrorCode,
    Execution,
    Goal,
    GoalRejected,
    Status,
    TrajectoryController,
)
from mtrl_robot.backends.factory import make_backend
from mtrl_robot.backends.mujoco_model import TIMESTEP
from mtrl_robot.core.errors import ConfigError
from mtrl_robot.core.paths import data_dir
from mtrl_robot.randomization import Randomizer, load_spec
from mtrl_robot.ros.conversions import (
    camera_info_msg,
    feedback_to_msg,
    fill_joint_state_msg,
    goal_from_msg,
    image_to_msg,
    randomization_to_json,
    seconds,
)
from mtrl_robot.ros.parameters import OneOf, Range, TopicName, declare_parameters
from mtrl_robot.ros.realtime import EXECUTOR_PRIORITY_PARAMETER, fifo_refusal, normal_scheduling, serve_at_priority
from mtrl_robot.ros.robot_description import RobotDescriptionPublisher
from mtrl_robot.ros.run import run_node
from mtrl_robot.scenes.puck_table import Scene, load_scene

MAX_CATCH_UP = 0.25  # s of physics stepped at most per tick; a longer stall is dropped, not replayed
CANCEL_HANDSHAKE = 1.0  # s to wait for the action server to register a cancel request
SHUTDOWN_DRAIN = 0.3  # s of spinning after SIGINT/SIGTERM so that aborted goals' results go out
FREE_CAMERA_SIZE = (320, 240)  # width, height without a scene camera

PARAMETERS = {  # name: (default, description[, Range or OneOf])
    "robot": ("panda", "Arm family name (panda, gen3, yumi, baxter, ur5e) or family file (a path), a "
                       "robot id of population_file, or 'urdf'"),
    "population_file": ("", "Population JSON to take the robot id from (empty: robot is a family name)"),
    "urdf_file": ("", "URDF to load when robot is 'urdf'"),
    "flange_link": ("", "Flange link of urdf_file when robot is 'urdf'"),
    "backend": ("mujoco", "Physics engine: mujoco or pybullet", OneOf(("mujoco", "pybullet"))),
    "scene": ("none", "Scene around the arm: none, or a scene name or YAML path such as puck_table"),
    "controller_name": ("joint_trajectory_controller", "Name the action and trajectory topic are under",
                        TopicName()),
    "joint_states_rate": (250.0, "Rate in Hz of physics ticks, each publishing /joint_states (above 500 Hz, MuJoCo "
                          "steps at the tick period instead of its 2 ms)", Range(1.0, 10_000.0)),
    "thread_priority": (50, "SCHED_FIFO priority of the physics thread, as ros2_control's controller manager (0: "
                            "normal scheduling; without the permission, a warning and normal scheduling)",
                        Range(0, 99)),
    **EXECUTOR_PRIORITY_PARAMETER,
    "tf_rate": (50.0, "Rate in Hz of the moving link frames on /tf (at most joint_states_rate: one per tick)",
                Range(1.0, 10_000.0)),
    "action_monitor_rate": (20.0, "Rate in Hz of FollowJointTrajectory feedback while a goal runs", Range(0.1, 1000.0)),
    "randomization_file": ("", "Domain-randomization spec YAML for ~/randomize (empty: the package's default)"),
    "seed": (0, "Seed of the domain-randomization sampler", Range(0, 2**32 - 1)),
    "paddle": (False, "Mount the puck-hitting paddle (a stick and ball) at the flange; for scenes with a puck"),
    "camera": (False, "Render and publish camera/image_raw and camera/camera_info (MuJoCo only)"),
    "camera_rate": (10.0, "Camera frame rate in Hz", Range(0.1, 1000.0)),
}


def fine_steps(backend: str, period: float) -> dict[str, float]:
    """MuJoCo's control and physics step shortened to a tick ``period`` below its default, so that every tick at a
    high rate publishes a new state (PyBullet keeps its step)."""
    return {"control_dt": period, "timestep": period} if backend == "mujoco" and period < TIMESTEP else {}


def load_scene_with(scene_name: str, paddle: bool) -> Scene | None:
    """The scene the parameters name (``none``: no scene), with the paddle at the flange if asked for."""
    scene = None if scene_name == "none" else load_scene(scene_name)
    if not paddle:
        return scene
    if scene is None:
        raise ConfigError(None, "paddle", "the paddle needs a scene (e.g. scene:=puck_table)")
    from mtrl_robot.motions.hitting import with_paddle

    return with_paddle(scene)


class GoalThreadActionServer(ActionServer):
    """An action server that runs each accepted goal's execute callback in a thread of its own, where rclpy runs it
    as an executor task: a goal that runs for seconds leaves the executor free for the next request."""

    def notify_execute(self, goal_handle: ServerGoalHandle,
                       execute_callback: Callable[[ServerGoalHandle], FollowJointTrajectory.Result] | None) -> None:
        callback = execute_callback or self._execute_callback
        if callback is not None:  # the coroutine rclpy's executor would run: it sets the goal's result when done
            threading.Thread(target=asyncio.run, args=(self._execute_goal(callback, goal_handle),),
                             daemon=True).start()


class ArmNode(Node):
    """A simulated arm that looks like a ros2_control robot with a joint trajectory controller."""

    def __init__(self, context: Context | None = None) -> None:
        super().__init__("arm_node", context=context)
        p = declare_parameters(self, PARAMETERS)
        if p["camera"] and p["backend"] != "mujoco":
            raise ConfigError(None, "camera", "the camera needs backend mujoco")
        self.arm = load_arm(p["robot"], p["population_file"], p["urdf_file"], p["flange_link"])
        period = 1.0 / p["joint_states_rate"]
        self.backend = make_backend(p["backend"], self.arm, load_scene_with(p["scene"], p["paddle"]),
                                    **fine_steps(p["backend"], period))
        self.control_dt = self.backend.control_dt
        self.controller = TrajectoryController(self.backend, self.control_dt)
        spec = load_spec(p["randomization_file"] or data_dir("config") / "randomization.yaml")
        self.randomizer = Randomizer(spec, self.backend.nominal_parameters(), seed=p["seed"])
        self.monitor_period = 1.0 / p["action_monitor_rate"]
        self._lock = threading.Lock()  # guards the backend and the controller
        self._executions: dict[bytes, Execution] = {}
        self._resets = 0  # resets so far: a goal accepted before a reset never starts after it
        self._accepted_at: dict[bytes, int] = {}  # goal id → resets when it was accepted, until it starts
        self._measured = self.backend.read_state().positions  # joint positions at the latest tick (or reset)
        self._closing = threading.Event()
        self._failure: str | None = None  # why physics stopped, after a failed tick
        self._debt = 0.0
        self._last_tick: float | None = None  # monotonic time of the previous physics tick
        self._tf_period = 1.0 / p["tf_rate"]
        self._next_tf = 0.0  # monotonic time from which the next tick publishes /tf

        controller = p["controller_name"]
        self._joint_states = self.create_publisher(JointStateMsg, "joint_states", 10)
        self._description = RobotDescriptionPublisher(self, self.arm)
        self.create_subscription(JointTrajectoryMsg, f"{controller}/joint_trajectory", self._on_trajectory, 10)
        self._action = GoalThreadActionServer(self, FollowJointTrajectory, f"{controller}/follow_joint_trajectory",
                                              self._execute, goal_callback=self._on_goal,
                                              handle_accepted_callback=self._on_accepted,
                                              cancel_callback=self._on_cancel)
        self.create_service(Trigger, "~/randomize", self._randomize)
        self.create_service(Trigger, "~/reset", self._reset)
        self.create_service(Trigger, "~/reset_scene", self._reset_scene)
        self._state_msg = JointStateMsg()  # filled and published by every tick
        serve_at_priority(self, p["executor_priority"])  # the threads started below inherit it
        self._physics = threading.Thread(target=self._physics_loop, args=(period, p["thread_priority"]), daemon=True)
        self._camera = None
        if p["camera"]:
            self._camera = threading.Thread(target=self._camera_loop, args=(p["camera_rate"], p["scene"]), daemon=True)
            self._images = self.create_publisher(Image, "camera/image_raw", 1)
            self._infos = self.create_publisher(CameraInfo, "camera/camera_info", 1)
            self._camera.start()
        self.get_logger().info(f"{self.arm.robot_id} ({len(self.arm.joint_names)} joints) on {p['backend']}, "
                               f"scene {p['scene']}; controller '{controller}', joint states at "
                               f"{p['joint_states_rate']:g} Hz")
        self._physics.start()

    # ------------------------------------------------------------------------------------------ physics

    def _physics_loop(self, period: float, priority: int) -> None:
        """Tick every ``period`` s on an absolute schedule; late ticks are made up, a long stall is dropped."""
        refusal = fifo_refusal(priority) if priority > 0 else None  # this thread only
        if refusal is not None:
            self.get_logger().warning(f"physics thread at normal priority: {refusal}; set thread_priority:=0 to "
                                      "silence this")
        # A thread holding the GIL delays a tick by at most a quarter period (Python's default is 5 ms).
        sys.setswitchinterval(min(sys.getswitchinterval(), period / 4))
        deadline = time.monotonic()
        while not self._closing.is_set():
            try:
                self._tick()
            except Exception as exc:  # noqa: BLE001 - any failure of the simulator ends physics, reported once
                self._fail(exc)
                return
            deadline += period
            delay = deadline - time.monotonic()
            if delay > 0:
                self._closing.wait(delay)
            elif delay < -MAX_CATCH_UP:
                deadline = time.monotonic()

    def _fail(self, exc: Exception) -> None:
        """Stop physics for good after ``exc``: log it once, abort the running goal, refuse every later one."""
        failure = f"physics stopped after an error in the simulation: {type(exc).__name__}: {exc}"
        self.get_logger().error(f"{failure}; the running goal is aborted, joint states are no longer "
                                "published and new goals are refused (restart the node)")
        with self._lock:
            self._failure = failure
            try:
                self.controller.abort(self._failure)
            except Exception as stop_error:  # noqa: BLE001 - the goal has ended; holding may fail too
                self.get_logger().error(f"holding the arm failed as well: {type(stop_error).__name__}: {stop_error}")

    def _tick(self) -> None:
        """Step physics up to now, update the controller, publish the joint state (and the link frames when due)."""
        now = time.monotonic()
        self._debt += now - (self._last_tick or now)
        self._last_tick = now
        if self._debt > MAX_CATCH_UP:
            self.get_logger().warning(f"physics fell {self._debt:.3f} s behind real time; skipping ahead",
                                      throttle_duration_sec=5.0)
            self._debt = MAX_CATCH_UP
        steps = int(self._debt / self.control_dt)
        self._debt -= steps * self.control_dt
        with self._lock:
            if steps:
                self.backend.step(steps)
            self.controller.update()
            state = self.backend.read_state()
            self._measured = state.positions
        stamp = self.get_clock().now().to_msg()
        self._joint_states.publish(fill_joint_state_msg(self._state_msg, state, stamp))
        if now >= self._next_tf:
            self._next_tf = max(self._next_tf + self._tf_period, now)  # after a stall, no burst to catch up
            self._description.publish_frames(state.positions, stamp)

    # ------------------------------------------------------------------------------ trajectory commands

    def _goal(self, msg: FollowJointTrajectory.Goal) -> Goal:
        """A validated-by-name goal; malformed messages become ``INVALID_GOAL``."""
        if self._closing.is_set():
            raise GoalRejected(ErrorCode.INVALID_GOAL, "the arm node is shutting down")
        if self._failure is not None:
            raise GoalRejected(ErrorCode.INVALID_GOAL, self._failure)
        self.controller.check_joint_names(msg.trajectory.joint_names)
        try:
            return goal_from_msg(msg, seconds(self.get_clock().now().to_msg()))
        except ValueError as exc:
            raise GoalRejected(ErrorCode.INVALID_GOAL, str(exc)) from None

    def _on_goal(self, request: FollowJointTrajectory.Goal) -> GoalResponse:
        """Reject, as ros2_control does, a goal the controller refuses (from where the arm was at the latest tick:
        no waiting for the physics lock)."""
        try:
            goal = self._goal(request)
            self.controller.check(goal, self._measured)  # the start is checked again, under the lock, when it starts
        except GoalRejected as exc:
            self.get_logger().warning(f"goal rejected: {exc.code.name}: {exc}")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _on_accepted(self, goal_handle: ServerGoalHandle) -> None:
        """Note how many resets came before the goal was accepted, then run it (in a thread of its own)."""
        with self._lock:
            self._accepted_at[bytes(goal_handle.goal_id.uuid)] = self._resets
        goal_handle.execute()

    def _on_trajectory(self, msg: JointTrajectoryMsg) -> None:
        try:
            self._start(self._goal(FollowJointTrajectory.Goal(trajectory=msg)))
        except GoalRejected as exc:
            self.get_logger().error(f"ignoring trajectory on the topic: {exc.code.name}: {exc}")

    def _start(self, goal: Goal, resets: int | None = None) -> Execution:
        """Start ``goal`` unless physics has stopped or, for a goal accepted after ``resets`` resets, the arm has
        been reset since (both checked under the lock, so no goal starts after a failure or a reset).

        Everything that does not need the arm's position is checked before taking the lock, which physics needs
        every tick: under it only the move from where the arm is is checked.
        """
        checked = self.controller.check(goal)
        with self._lock:
            if self._failure is not None:
                raise GoalRejected(ErrorCode.INVALID_GOAL, self._failure)
            if resets is not None and resets != self._resets:
                raise GoalRejected(ErrorCode.INVALID_GOAL, "the simulation was reset after the goal was accepted")
            return self.controller.start(goal, checked)

    def _execute(self, goal_handle: ServerGoalHandle) -> FollowJointTrajectory.Result:
        key = bytes(goal_handle.goal_id.uuid)
        resets = self._accepted_at.pop(key, None)
        if goal_handle.is_cancel_requested:  # its client gave up on it before it could start
            goal_handle.canceled()
            self.get_logger().warning("goal canceled before it started")
            return FollowJointTrajectory.Result(error_code=int(ErrorCode.SUCCESSFUL),
                                                error_string="canceled before it started")
        try:
            execution = self._start(self._goal(goal_handle.request), resets)
            self._executions[key] = execution
            if goal_handle.is_cancel_requested:  # asked while it was starting, before _on_cancel could find it
                with self._lock:
                    self.controller.cancel(execution)
        except GoalRejected as exc:
            self.get_logger().warning(f"goal refused: {exc.code.name}: {exc}")
            goal_handle.abort()
            return FollowJointTrajectory.Result(error_code=int(exc.code), error_string=str(exc))
        try:
            return self._follow(goal_handle, execution)
        finally:
            self._executions.pop(key, None)

    def _follow(self, goal_handle: ServerGoalHandle, execution: Execution) -> FollowJointTrajectory.Result:
        """Send feedback until ``execution`` ends, then report its outcome."""
        while not execution.finished.wait(self.monitor_period):
            if goal_handle.is_cancel_requested:  # asked before the execution was registered
                with self._lock:
                    self.controller.cancel(execution)
            elif execution.feedback is not None:
                goal_handle.publish_feedback(feedback_to_msg(execution.feedback, self.get_clock().now().to_msg()))
        outcome = execution.outcome
        result = FollowJointTrajectory.Result(error_code=int(outcome.code), error_string=outcome.message)
        if outcome.status is Status.CANCELED:
            deadline = time.monotonic() + CANCEL_HANDSHAKE
            while not goal_handle.is_cancel_requested and time.monotonic() < deadline:
                time.sleep(0.001)  # the server marks the goal canceling right after _on_cancel returns
        if outcome.status is Status.SUCCEEDED:
            goal_handle.succeed()
        elif outcome.status is Status.CANCELED and goal_handle.is_cancel_requested:
            goal_handle.canceled()
        else:
            goal_handle.abort()
        report = f"goal {outcome.status.value}: {outcome.code.name}: {outcome.message}"
        if outcome.code is ErrorCode.SUCCESSFUL:  # rclpy wants one severity per logging call site
            self.get_logger().info(report)
        else:
            self.get_logger().warning(report)
        return result

    def _on_cancel(self, goal_handle: ServerGoalHandle) -> CancelResponse:
        execution = self._executions.get(bytes(goal_handle.goal_id.uuid))
        if execution is not None:
            with self._lock:
                self.controller.cancel(execution)
        return CancelResponse.ACCEPT

    # ---------------------------------------------------------------------------------------- services

    def _randomize(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        try:
            with self._lock:
                sampled = self.randomizer.sample("reset")
                applied = self.backend.apply_randomization(sampled)
        except ValueError as exc:
            response.success, response.message = False, str(exc)
            return response
        response.success, response.message = True, randomization_to_json(sampled, applied)
        return response

    def _reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._lock:
            self._resets += 1
            self._measured = self.controller.reset().positions
        response.success, response.message = True, "arm at home, at rest; scene reset"
        return response

    def _reset_scene(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._lock:
            self._resets += 1
            self._measured = self.controller.reset_scene().positions
        response.success, response.message = True, "scene reset; arm at rest where it was"
        return response

    # ------------------------------------------------------------------------------------------ camera

    def _camera_loop(self, rate: float, scene_name: str) -> None:
        """Render and publish frames at ``rate``; owns the GL context, so it runs on one thread."""
        import mujoco

        normal_scheduling()  # rendering must not take the CPU ahead of the executor and other processes
        model, data = self.backend.model, self.backend.data
        if scene_name == "none":
            width, height = FREE_CAMERA_SIZE
            camera = mujoco.MjvCamera()
            camera.lookat[:] = (0.0, 0.0, 0.5)
            camera.distance, camera.azimuth, camera.elevation = 2.5, 135.0, -20.0
            fovy, frame = float(model.vis.global_.fovy), "camera_optical_frame"
        else:
            camera = "overhead"
            width, height = (int(v) for v in model.cam_resolution[model.camera(camera).id])
            fovy, frame = float(model.cam_fovy[model.camera(camera).id]), "overhead_camera_optical_frame"
        period, deadline = 1.0 / rate, time.monotonic()
        with mujoco.Renderer(model, height, width) as renderer:
            while not self._closing.wait(max(0.0, deadline - time.monotonic())):
                deadline = max(deadline + period, time.monotonic())  # a slow frame delays, never bunches, the next
                with self._lock:
                    renderer.update_scene(data, camera)
                rgb = renderer.render()
                stamp = self.get_clock().now().to_msg()
                self._images.publish(image_to_msg(rgb, stamp, frame))
                self._infos.publish(camera_info_msg(width, height, fovy, stamp, frame))

    # ---------------------------------------------------------------------------------------- shutdown

    def close(self) -> None:
        """Stop the physics and camera threads and end running goals; call before destroying the node."""
        self._closing.set()
        self._physics.join(timeout=5.0)
        with self._lock:
            self.controller.abort("the arm node is shutting down")
        if self._camera is not None:
            self._camera.join(timeout=5.0)

    def destroy_node(self) -> None:
        super().destroy_node()
        self.backend.close()


def _wind_down(node: ArmNode, executor: Executor) -> None:
    """Stop the node's threads, end running goals and let their results reach their clients."""
    node.close()
    drain = time.monotonic() + SHUTDOWN_DRAIN
    while time.monotonic() < drain:
        executor.spin_once(timeout_sec=0.05)


def main(args: list[str] | None = None) -> int:
    """Run the node until SIGINT or SIGTERM (exit code 0); exit code 1 on a configuration error."""
    return run_node("arm_node", ArmNode, lambda: EventsExecutor(), args, before_shutdown=_wind_down)


if __name__ == "__main__":
    sys.exit(main())
