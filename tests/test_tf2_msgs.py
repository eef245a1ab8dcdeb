"""tf2_msgs/TFMessage as RViz2, Foxglove and robot_state_publisher use it.

The type comes from a system ROS 2 install or, without one, from interfaces/tf2_msgs built by
scripts/build_interfaces.sh. Its RIHS01 type hash must be the one of tf2_msgs in ROS 2 Kilted, or no subscriber
of a real ROS 2 install would match our /tf publisher.
"""

from __future__ import annotations

import json
import pathlib

KILTED_HASH = "RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087"


def test_tf_message_fields_and_type_hash_match_kilted():
    import tf2_msgs
    from rosbags.typesys import Stores, get_typestore
    from tf2_msgs.msg import TFMessage

    assert TFMessage.get_fields_and_field_types() == {"transforms": "sequence<geometry_msgs/TransformStamped>"}
    share = next(parent / "share" / "tf2_msgs" for parent in pathlib.Path(tf2_msgs.__file__).resolve().parents
                 if (parent / "share" / "tf2_msgs" / "package.xml").is_file())
    hashes = json.loads((share / "msg" / "TFMessage.json").read_text())["type_hashes"]
    assert hashes[0] == {"type_name": "tf2_msgs/msg/TFMessage", "hash_string": KILTED_HASH}
    assert get_typestore(Stores.ROS2_KILTED).hash_rihs01("tf2_msgs/msg/TFMessage") == KILTED_HASH
