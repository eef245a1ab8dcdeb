"""Fixtures for tests against real arm_node processes.

Each pytest process gets a ROS domain of its own (1-100, from its process id) with localhost discovery and
its ROS logs in a temporary folder. Nodes run as subprocesses with their output in a file; teardown stops
each one (SIGTERM, then SIGKILL) so none outlives the tests. The client is an rclpy node in this process,
spun by a background thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from node_process import NodeProcess, domain_id, ros_environment
from rcl_interfaces.msg import Log
from rclpy.subscription import Subscription
from ros_client import RosClient
from ros_events import Messages, rosout
from sensor_msgs.msg import JointState

from mtrl_robot.arms import population as populations
from mtrl_robot.learning.reaching import checkpoint as checkpoints
from mtrl_robot.learning.reaching.presets import load_preset as load_training_preset
from mtrl_robot.learning.reaching.train import train_from_preset
from mtrl_robot.ros.run import node_command

STARTUP_TIMEOUT = 60.0  # s for a node to come up and publish joint states (on a loaded machine)
REPLY_TIMEOUT = 10.0  # s for a service or action reply


class ArmNodeProcess(NodeProcess):
    """An arm_node subprocess; ``namespace`` prefixes every name it uses."""

    def __init__(self, env: dict[str, str], log_dir: Path, namespace: str, parameters: dict[str, object]):
        self.namespace = namespace
        super().__init__(node_command("arm_node", parameters, namespace),
                         log_dir / f"arm_node{namespace.replace('/', '_') or '_root'}.log", env)

    def name(self, relative: str) -> str:
        """The absolute name of ``relative`` (``~/x`` names are under ``<namespace>/arm_node``)."""
        return f"{self.namespace}/{relative.replace('~', 'arm_node')}"


class JointStateLog(Messages[JointState]):
    """Every message received on a JointState topic."""

    def after(self, moment: float, timeout: float = REPLY_TIMEOUT) -> JointState:
        """The first message stamped after ``moment`` (``time.time()``; the node stamps with the system clock).

        Stamps, not arrival order: a service reply may overtake joint states published before it.
        """
        return self.stamped_after(moment, timeout)


@pytest.fixture(scope="session")
def ros_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """This process's ROS environment (also set in ``os.environ`` for the client), given to every node."""
    with ros_environment(tmp_path_factory.mktemp("ros_log"), domain_id(1)) as env:
        yield env


@pytest.fixture(scope="session")
def ros_client(ros_env: dict[str, str]) -> Iterator[RosClient]:
    client = RosClient()
    yield client
    client.close()


@pytest.fixture(scope="session")
def ros_log(ros_client: RosClient) -> Messages[Log]:
    """Every node's log messages on ``/rosout`` (this test process's domain) from the start of the session."""
    return rosout(ros_client.node)


class NodeLauncher:
    """Starts arm nodes and stops all of them on :meth:`close`."""

    def __init__(self, env: dict[str, str], client: RosClient, log_dir: Path):
        self.env, self.client, self.log_dir = env, client, log_dir
        self._started: list[tuple[ArmNodeProcess, Subscription]] = []

    def start(self, namespace: str = "", **parameters: object) -> tuple[ArmNodeProcess, JointStateLog]:
        """A node publishing joint states, and the log of those; fails with the node's output if it does not."""
        node = ArmNodeProcess(self.env, self.log_dir, namespace, parameters)
        states = JointStateLog()
        subscription = self.client.node.create_subscription(JointState, node.name("joint_states"), states, 50)
        self._started.append((node, subscription))
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:  # in slices, to notice a node that exits
            try:
                states.wait_for(timeout=1.0)
                return node, states
            except AssertionError:
                if node.process.poll() is not None or time.monotonic() > deadline:
                    seen = self.client.node.count_publishers(node.name("joint_states"))
                    pytest.fail(f"no joint states from the arm node (exit code {node.process.poll()}, {seen} "
                                f"publishers discovered):\n{node.output()}")

    def close(self) -> None:
        for node, subscription in self._started:
            node.stop()
            self.client.destroy(subscription)


DemoRun = tuple[Path, Path, str]  # checkpoint, population file, a held-out robot id


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], DemoRun]:
    """``family`` → a one-family run of the demo preset (about 10 s to train), its checkpoint, population file and
    first held-out robot id. Each family is trained once per session, on first use, and shared by the tests that
    ask for it: they read the run; an adapted model written beside the checkpoint (as ``mtrl-robot teach`` does)
    has a name of its own and changes nothing another test reads."""
    runs: dict[str, DemoRun] = {}

    def run(family: str) -> DemoRun:
        if family not in runs:
            folder = tmp_path_factory.mktemp(f"{family}_run")
            preset = load_training_preset("demo", [f"data.families=[{family}]", "compute.workers=1"])
            out = train_from_preset(preset, folder / "run", progress=False)
            data = preset.data
            config = populations.load_config(data.population_config, seed=data.population_seed,
                                             families=list(data.families), robots_per_family=data.robots_per_family)
            population = populations.save(populations.generate(config), folder / "population.json")
            checkpoint = out / "checkpoints" / f"{family}.pt"
            runs[family] = checkpoint, population, checkpoints.load(checkpoint).info["held_out"][0]
        return runs[family]

    return run


@pytest.fixture(scope="module")
def module_launcher(ros_env: dict[str, str], ros_client: RosClient,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeLauncher]:
    """Nodes that live as long as the test module."""
    launcher = NodeLauncher(ros_env, ros_client, tmp_path_factory.mktemp("arm_node"))
    yield launcher
    launcher.close()


@pytest.fixture
def launcher(ros_env: dict[str, str], ros_client: RosClient, tmp_path: Path) -> Iterator[NodeLauncher]:
    """Nodes that live as long as one test."""
    launcher = NodeLauncher(ros_env, ros_client, tmp_path)
    yield launcher
    launcher.close()
