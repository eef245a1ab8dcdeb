"""The simulated arm node as a ROS 2 client sees it: ``/joint_states`` rate and jitter, the CPU it uses, action
round trips.

The node runs as a real subprocess on a ROS domain of its own with localhost discovery; this process is the
client. The rate is counted by the node's stamps; stamp intervals are the gaps between the node's own
publications (the subscription keeps half a second of messages, so a stall of this process drops none),
inter-arrival times are taken on arrival here (they add delivery and this process's scheduling).
The node's CPU is its process CPU time (all threads, user and system, from ``/proc``) over the wall time of the
same window, 1.0 being one core; the one-minute load average at the start of the window says how busy the
machine was.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from control_msgs.action import FollowJointTrajectory
from rclpy.action import ActionClient
from rclpy.executors import SingleThreadedExecutor
from rclpy.task import Future
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectoryPoint

from mtrl_robot.ros.conversions import seconds as stamp_seconds
from mtrl_robot.ros.conversions import to_duration
from mtrl_robot.ros.futures import wait_for
from mtrl_robot.ros.run import node_command

STARTUP_TIMEOUT = 30.0  # s for the node to come up and publish
REPLY_TIMEOUT = 10.0  # s for any one action reply
STOP_TIMEOUT = 10.0  # s for a node to exit after SIGTERM before it is killed
GOAL_DURATION = 0.1  # s, time_from_start of the single point of each timed goal
QUEUE_SECONDS = 0.5  # of joint states kept for this process: stamp intervals are the node's, not this process's gaps
GOAL_STEP = 0.02  # rad moved by the first joint in each timed goal, alternately up and down


def wait_reply(future: Future, timeout: float = REPLY_TIMEOUT):
    """The result of ``future``; ``TimeoutError`` if the arm node has not replied within ``timeout`` s."""
    if not wait_for(future, timeout):
        raise TimeoutError(f"no reply from the arm node within {timeout} s")
    return future.result()


def percentiles_ms(values: list[float], prefix: str) -> dict[str, float]:
    """p50, p99 and max of ``values`` (s) in ms, as ``<prefix>_p50_ms``, ``<prefix>_p99_ms``, ``<prefix>_max_ms``."""
    ms = 1e3 * np.asarray(values)
    return {f"{prefix}_p50_ms": float(np.percentile(ms, 50)), f"{prefix}_p99_ms": float(np.percentile(ms, 99)),
            f"{prefix}_max_ms": float(ms.max())}


def spin_until(executor: SingleThreadedExecutor, done: threading.Event) -> None:
    """Spin until ``done``; stopping here, not by ``executor.shutdown`` from another thread, avoids an rclpy race."""
    while not done.is_set():
        executor.spin_once(timeout_sec=0.05)


def client_context(domain: int) -> rclpy.Context:
    """An rclpy context on ``domain`` with localhost discovery, like the node's."""
    key, previous = "ROS_AUTOMATIC_DISCOVERY_RANGE", os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE")
    os.environ[key] = "LOCALHOST"
    try:
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=domain)
    finally:
        if previous is None:
            del os.environ[key]
        else:
            os.environ[key] = previous
    return context


class BenchClient:
    """The benchmark's rclpy node, on a context of its own on ``domain``, spun by a background thread."""

    def __init__(self, domain: int, name: str):
        self.context = client_context(domain)
        self.node = rclpy.create_node(name, context=self.context)
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self.node)
        self._done = threading.Event()
        self._spinner = threading.Thread(target=spin_until, args=(self._executor, self._done), daemon=True)

    def start(self) -> None:
        self._spinner.start()

    def close(self) -> None:
        self._done.set()
        self._spinner.join(timeout=5.0)
        self._executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def stop_process(process: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM ``process`` and wait for it; SIGKILL it if it has not exited after ``timeout`` s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) process ``pid`` has used so far, from ``/proc`` (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_ros(seconds: float = 5.0, goals: int = 20, backend: str = "mujoco", robot: str = "panda",
              rate: float = 250.0) -> dict[str, float]:
    """Joint-state rate, jitter and the node's CPU over ``seconds``, then ``goals`` short FollowJointTrajectory
    goals."""
    domain = 1 + os.getpid() % 100
    with tempfile.TemporaryDirectory(prefix="mtrl_ros_bench_") as tmp:
        env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
               "ROS_LOG_DIR": tmp}
        log_path = Path(tmp) / "arm_node.log"
        with log_path.open("w") as log:
            command = node_command("arm_node", {"robot": robot, "backend": backend, "joint_states_rate": rate})
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        client = BenchClient(domain, "ros_bench_client")
        arrivals: list[tuple[float, float, JointState]] = []
        client.node.create_subscription(  # a queue of QUEUE_SECONDS of messages: a stall here loses none
            JointState, "/joint_states", lambda m: arrivals.append((time.perf_counter(), stamp_seconds(m.header.stamp),
                                                                    m)), max(50, round(QUEUE_SECONDS * rate)))
        client.start()
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT
            while not arrivals:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"arm node did not publish joint states:\n{log_path.read_text()[-2000:]}")
                time.sleep(0.05)
            figures = {"joint_states_target_hz": rate, **_joint_states(arrivals, seconds, process.pid)}
            figures.update(_round_trips(client.node, arrivals, goals))
        finally:
            client.close()
            stop_process(process)
    return figures


def _joint_states(arrivals: list, seconds: float, pid: int) -> dict[str, float]:
    load = os.getloadavg()[0]
    start, cpu, wall = len(arrivals), process_cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    cpu, wall = process_cpu_seconds(pid) - cpu, time.monotonic() - wall
    window = arrivals[start:]
    received = np.array([a[0] for a in window])
    stamps = np.array([a[1] for a in window])
    return {"joint_states_rate_hz": float((len(stamps) - 1) / (stamps[-1] - stamps[0])),
            **percentiles_ms(np.diff(received), "joint_states_interarrival"),
            **percentiles_ms(np.diff(stamps), "joint_states_stamp_interval"),
            "arm_node_cpu_per_wall": cpu / wall, "load_average_1min": load}


def _round_trips(node, arrivals: list, goals: int) -> dict[str, float]:
    client = ActionClient(node, FollowJointTrajectory, "/joint_trajectory_controller/follow_joint_trajectory")
    if not client.wait_for_server(timeout_sec=REPLY_TIMEOUT):
        raise TimeoutError("FollowJointTrajectory server not found")
    accepted, finished, succeeded = [], [], 0
    for k in range(goals):
        state = arrivals[-1][2]
        positions = list(state.position)
        positions[0] += GOAL_STEP if k % 2 == 0 else -GOAL_STEP
        goal = FollowJointTrajectory.Goal()
        goal.trajectory.joint_names = list(state.name)
        goal.trajectory.points = [JointTrajectoryPoint(positions=positions, time_from_start=to_duration(GOAL_DURATION))]
        t0 = time.perf_counter()
        handle = wait_reply(client.send_goal_async(goal))
        accepted.append(time.perf_counter() - t0)
        response = wait_reply(handle.get_result_async())
        finished.append(time.perf_counter() - t0)
        succeeded += response.result.error_code == FollowJointTrajectory.Result.SUCCESSFUL
    return {**percentiles_ms(accepted, "goal_accept"), **percentiles_ms(finished, "goal_result"),
            "goal_trajectory_s": GOAL_DURATION, "goals_succeeded": succeeded, "goals": goals}
