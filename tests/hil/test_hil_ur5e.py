"""The HIL suite's core on a six-joint arm (simulation only): ``arm_node robot:=ur5e`` serving the controller of
``config/hardware/sim_ur5e.yaml`` (Universal_Robots_ROS2_Driver's ``scaled_joint_trajectory_controller`` and joint
names), driven by the hardware client through the safety layer with the UR5e limits.

The tests are test_hil.py's own, collected here again with this module's ``rig``, except the trajectory-topic motion:
its path does not depend on the joint count and test_hil.py runs it; here, late in a long ROS run, a trajectory
published right after the client saw the controller's subscription was sometimes not executed (the arm did not
move), which points at the subscription not yet having matched the new publisher (DDS discovery is not
symmetric). On a real arm, run test_hil.py with ``MTRL_HIL_PRESET=universal_robots_ur5e``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import test_hil

from mtrl_robot.hardware.presets import load_preset

if TYPE_CHECKING:
    from conftest import Rig


@pytest.fixture(scope="module")
def rig(ros_env: None, rig_opener, real_arm_preset: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    if real_arm_preset:
        pytest.skip("simulation only; a real arm runs test_hil.py with its preset")
    with rig_opener(load_preset("sim_ur5e"), True, tmp_path_factory.mktemp("hil_ur5e")) as rig:
        yield rig


def test_the_arm_node_serves_the_ur5e_controller(rig: Rig):
    assert rig.backend.joint_names == load_preset("universal_robots_ur5e").model_names  # six joints, UR names
    assert rig.preset.action == "/scaled_joint_trajectory_controller/follow_joint_trajectory"
    assert rig.backend.limits.velocity.tolist() == [1.5707963267948966] * 6


test_joint_states_are_live_at_the_preset_rate = test_hil.test_joint_states_are_live_at_the_preset_rate
test_refused_trajectories_send_nothing = test_hil.test_refused_trajectories_send_nothing
test_flange_outside_the_workspace_is_refused = test_hil.test_flange_outside_the_workspace_is_refused
test_small_motion_in_shuffled_joint_order_tracks = test_hil.test_small_motion_in_shuffled_joint_order_tracks
test_stop_cancels_and_holds_position = test_hil.test_stop_cancels_and_holds_position
