"""What RViz2 and Foxglove need from the arm node, on a perturbed population robot: a subscriber that starts after the
node receives ``robot_description`` (the URDF of exactly that robot) and the fixed frames; the frames on ``tf``,
composed from the root to the flange, equal the arm's kinematics at the joint state with the same stamp."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
from arm_variants import STRONG, perturbed
from ros_events import Messages, matched_publisher, publish_acknowledged
from scipy.spatial.transform import Rotation
from std_msgs.msg import String
from tf2_msgs.msg import TFMessage
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from mtrl_robot.arms import population as populations
from mtrl_robot.arms.families import load_family
from mtrl_robot.arms.fk import flange_pose
from mtrl_robot.arms.urdf import arm_to_urdf, load_urdf_arm
from mtrl_robot.ros.conversions import to_duration
from mtrl_robot.ros.robot_description import LATCHED_QOS, TF_QOS

ARM = perturbed(load_family("gen3"))
NAMESPACE = "/described"
TOLERANCE = 1e-3  # m between the flange from TF and from the kinematics
MOVING = 0.05  # rad from home: a joint state taken while the arm moves


@pytest.fixture(scope="module")
def described(module_launcher, tmp_path_factory):
    """The arm node simulating ``ARM`` (a population member), its joint states, and late subscriptions to its
    description and frames."""
    population = populations.save(populations.Population((ARM,), STRONG),
                                  tmp_path_factory.mktemp("population") / "population.json")
    node, states = module_launcher.start(NAMESPACE, robot=ARM.robot_id, population_file=str(population))
    client = module_launcher.client
    received = {"description": Messages(), "tf_static": Messages(), "tf": Messages()}
    subscriptions = [
        client.between_waits(lambda: client.node.create_subscription(String, node.name("robot_description"),
                                                                     received["description"], LATCHED_QOS)),
        client.between_waits(lambda: client.node.create_subscription(TFMessage, node.name("tf_static"),
                                                                     received["tf_static"], LATCHED_QOS)),
        client.between_waits(lambda: client.node.create_subscription(TFMessage, node.name("tf"), received["tf"],
                                                                     TF_QOS))]
    yield node, states, received
    for subscription in subscriptions:
        client.destroy(subscription)


def test_a_late_subscriber_receives_the_urdf_of_the_simulated_robot(described, tmp_path):
    _, _, received = described
    text = received["description"].wait_for(what="robot_description").data
    robot = ET.fromstring(text)
    assert robot.tag == "robot" and robot.get("name") == ARM.robot_id
    assert tuple(j.get("name") for j in robot.iter("joint") if j.get("type") == "revolute") == ARM.joint_names
    assert text == arm_to_urdf(ARM)
    urdf = tmp_path / "described.urdf"
    urdf.write_text(text)
    loaded = load_urdf_arm(urdf, flange_link=ARM.flange_link)  # the robot it describes, through the URDF reader
    q = np.random.default_rng(0).uniform(ARM.lower, ARM.upper, (10, ARM.dof))
    np.testing.assert_allclose(flange_pose(loaded, q), flange_pose(ARM, q), atol=1e-9)


def pose(transform) -> np.ndarray:
    t, r = transform.translation, transform.rotation
    matrix = np.eye(4)
    matrix[:3, :3] = Rotation.from_quat([r.x, r.y, r.z, r.w]).as_matrix()
    matrix[:3, 3] = t.x, t.y, t.z
    return matrix


def compose(transforms: dict[str, object], frame: str) -> tuple[np.ndarray, str]:
    """The pose of ``frame`` in the root of the tree ``transforms`` (child: TransformStamped), and that root."""
    result = np.eye(4)
    while frame in transforms:
        result = pose(transforms[frame].transform) @ result
        frame = transforms[frame].header.frame_id
    return result, frame


def test_the_flange_from_tf_equals_the_kinematics_of_the_joint_state_with_its_stamp(described, ros_client):
    node, states, received = described
    static = received["tf_static"].wait_for(what="tf_static")
    links = {link.get("name") for link in ET.fromstring(arm_to_urdf(ARM)).iter("link")}
    publisher = matched_publisher(ros_client.node, JointTrajectory, node.name("joint_trajectory_controller/"
                                                                                "joint_trajectory"))
    goal = ARM.home_q + 0.4 * np.sign(np.random.default_rng(0).uniform(-1, 1, ARM.dof))
    goal = np.clip(goal, ARM.lower + 0.05, ARM.upper - 0.05)
    start = len(received["tf"])
    publish_acknowledged(publisher, JointTrajectory(joint_names=list(ARM.joint_names), points=[JointTrajectoryPoint(
        positions=goal.tolist(), velocities=[0.0] * ARM.dof, time_from_start=to_duration(1.5))]))
    ros_client.destroy(publisher)  # once the arm node has the trajectory: destroyed before, it could lose it

    def stamp(header) -> tuple[int, int]:
        return header.stamp.sec, header.stamp.nanosec

    by_stamp: dict[tuple[int, int], np.ndarray] = {}

    def joint_state_of(msg: TFMessage) -> np.ndarray | None:
        """The positions of the joint state stamped like ``msg`` once the arm is under way, else None."""
        for state in states.messages[-500:]:
            by_stamp.setdefault(stamp(state.header), np.array(state.position))
        q = by_stamp.get(stamp(msg.transforms[0].header))
        return q if q is not None and np.abs(q - ARM.home_q).max() > MOVING else None

    moving = received["tf"].wait_for(lambda msg: joint_state_of(msg) is not None, timeout=15.0, start=start,
                                     what="/tf while the arm moves")
    q = joint_state_of(moving)
    assert len({stamp(t.header) for t in moving.transforms}) == 1
    tree = {t.child_frame_id: t for t in [*static.transforms, *moving.transforms]}
    assert set(tree) | {"world"} == links
    flange, root = compose(tree, ARM.flange_link)
    assert root == "world"
    expected = flange_pose(ARM, q)
    assert np.linalg.norm(flange[:3, 3] - expected[:3, 3]) <= TOLERANCE
    np.testing.assert_allclose(flange[:3, :3], expected[:3, :3], atol=1e-6)
