"""Forward kinematics of every family against independently derived DH chains, and numpy FK against torch FK.

The DH tables are those of ``shared/reference/arm_parameters.md``; their chains are built here from
plain rotations and translations, without the package's own transform helpers.
"""


import numpy as np
import pytest
import torch
from arm_variants import perturbed

from mtrl_robot.arms.chain import Arm
from mtrl_robot.arms.families import load_family
from mtrl_robot.arms.fk import CompiledChain, flange_pose, flange_position, joint_frames
from mtrl_robot.arms.fk_torch import TorchFK
from mtrl_robot.core.errors import JointVectorError

PI = np.pi
FAMILIES = ("panda", "gen3", "yumi", "baxter", "ur5e")

# Franka FCI, modified DH (Craig): α_{i-1}, a_{i-1}, d_i, θ offset; the last row is the flange.
PANDA_MDH = [(0, 0, 0.333, 0), (-PI / 2, 0, 0, 0), (PI / 2, 0, 0.316, 0), (PI / 2, 0.0825, 0, 0),
             (-PI / 2, -0.0825, 0.384, 0), (PI / 2, 0, 0, 0), (PI / 2, 0.088, 0, 0), (0, 0, 0.107, 0)]
# Kinova Gen3 User Guide, classic DH: a_i, α_i, d_i, θ offset; the base → frame 0 row is a fixed Rx(π).
GEN3_SDH = [(0, PI / 2, -0.2848, 0), (0, PI / 2, -0.0118, PI), (0, PI / 2, -0.4208, PI), (0, PI / 2, -0.0128, PI),
            (0, PI / 2, -0.3143, PI), (0, PI / 2, 0, PI), (0, PI, -0.1674, PI)]
# Baxter right arm, standard DH (Ju, Yang, Ma 2015 structure). d3 is written as the sum the reference derives it
# from: its printed 0.36435 is 0.07 mm short of 0.102 + 0.26242.
BAXTER_SDH = [(0.069, -PI / 2, 0.27035, 0), (0, PI / 2, 0, PI / 2), (0.069, -PI / 2, 0.102 + 0.26242, 0),
              (0, PI / 2, 0, 0), (0.010, -PI / 2, 0.10359 + 0.2707, 0), (0, PI / 2, 0, 0),
              (0, 0, 0.115975 + 0.11355, 0)]
# Single-arm YuMi (IRB 14050), modified DH in mm, with d1 = 305 mm replaced by the URDF's 100 mm.
YUMI_MDH_MM = [(0, 0, 100, 0), (-PI / 2, -30, 0, 0), (PI / 2, 30, 251.5, 0), (-PI / 2, 40.5, 0, PI / 2),
               (PI / 2, -40.5, 265, 0), (-PI / 2, 27, 0, 0), (PI / 2, -27, 36, 0)]
# YuMi right-arm mount in yumi_body (URDF joint_1 origin).
YUMI_MOUNT_XYZ, YUMI_MOUNT_RPY = (0.05355, -0.0725, 0.41492), (-0.9795, -0.5682, -2.3155)


def rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0, 0], [0, c, -s, 0], [0, s, c, 0], [0, 0, 0, 1.0]])


def rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s, 0], [0, 1, 0, 0], [-s, 0, c, 0], [0, 0, 0, 1.0]])


def rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])


def trans(x: float, y: float, z: float) -> np.ndarray:
    t = np.eye(4)
    t[:3, 3] = x, y, z
    return t


def modified_dh(rows, q: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Craig: T = Rx(α_{i-1}) · Tx(a_{i-1}) · Rz(θ_i) · Tz(d_i); rows beyond len(q) are fixed."""
    t = base
    for i, (alpha, a, d, offset) in enumerate(rows):
        theta = (q[i] if i < len(q) else 0.0) + offset
        t = t @ rot_x(alpha) @ trans(a, 0, 0) @ rot_z(theta) @ trans(0, 0, d)
    return t


def standard_dh(rows, q: np.ndarray, base: np.ndarray) -> np.ndarray:
    """T = Rz(θ_i) · Tz(d_i) · Tx(a_i) · Rx(α_i)."""
    t = base
    for (a, alpha, d, offset), qi in zip(rows, q, strict=True):
        t = t @ rot_z(qi + offset) @ trans(0, 0, d) @ trans(a, 0, 0) @ rot_x(alpha)
    return t


def random_q(arm: Arm, n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(arm.lower, arm.upper, size=(n, arm.dof))


def max_pose_error(arm: Arm, reference, q: np.ndarray) -> tuple[float, float]:
    """Largest flange position (m) and rotation-element differences between the arm and ``reference(q)``."""
    ours = flange_pose(arm, q)
    theirs = np.stack([reference(qi) for qi in q])
    return (float(np.linalg.norm(ours[:, :3, 3] - theirs[:, :3, 3], axis=-1).max()),
            float(np.abs(ours[:, :3, :3] - theirs[:, :3, :3]).max()))


def test_panda_flange_at_zero():
    np.testing.assert_allclose(flange_position(load_family("panda"), np.zeros(7)), [0.088, 0.0, 0.926], atol=1e-12)


def test_panda_matches_modified_dh():
    arm = load_family("panda")
    position, rotation = max_pose_error(arm, lambda q: modified_dh(PANDA_MDH, q, np.eye(4)), random_q(arm, 300))
    assert position < 1e-9 and rotation < 1e-9


def test_gen3_matches_classic_dh():
    arm = load_family("gen3")
    position, rotation = max_pose_error(arm, lambda q: standard_dh(GEN3_SDH, q, rot_x(PI)), random_q(arm, 500))
    assert position <= 0.5e-3  # the guide rounds the URDF's lateral offsets (0.006375, 0.00017505 m)
    assert rotation < 1e-4


def test_baxter_matches_standard_dh():
    arm = load_family("baxter")
    base = trans(0.055695, 0, 0.011038)  # S0 frame in right_arm_mount
    position, rotation = max_pose_error(arm, lambda q: standard_dh(BAXTER_SDH, q, base), random_q(arm, 500))
    assert position <= 1e-6 and rotation <= 1e-6


def test_yumi_matches_independent_modified_dh():
    arm = load_family("yumi")
    rows = [(alpha, a / 1000, d / 1000, offset) for alpha, a, d, offset in YUMI_MDH_MM]
    roll, pitch, yaw = YUMI_MOUNT_RPY
    base = trans(*YUMI_MOUNT_XYZ) @ rot_z(yaw) @ rot_y(pitch) @ rot_x(roll) @ rot_z(PI)
    position, rotation = max_pose_error(arm, lambda q: modified_dh(rows, q, base), random_q(arm, 500))
    assert position <= 1.5e-3  # the two models differ in the elbow offset (41.88 vs 40.5 mm)
    assert rotation < 1e-9


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("make", [lambda a: a, perturbed], ids=["nominal", "perturbed"])
def test_numpy_and_torch_fk_agree(family, make):
    arm = make(load_family(family))
    q = random_q(arm, 24, seed=2).reshape(4, 6, arm.dof)
    torch_pose = TorchFK(arm)(torch.from_numpy(q)).numpy()
    assert np.abs(torch_pose - flange_pose(arm, q)).max() <= 1e-12


@pytest.mark.parametrize("family", FAMILIES)
def test_flange_positions_and_lever_arms(family):
    """The flange-only FK equals the frames' flange; turning the joints moves the flange by no more than the lever
    arms times the joint differences, far or near."""
    arm = perturbed(load_family(family))
    chain = CompiledChain(arm)
    q = random_q(arm, 200, seed=5)
    flange = chain.flange_positions(q)
    assert np.abs(flange - chain.frames(q)[:, -1, :3, 3]).max() <= 1e-12
    near = q + np.random.default_rng(6).uniform(-0.02, 0.02, q.shape)
    for other, then in ((q[::-1], flange[::-1]), (near, chain.flange_positions(near))):
        ratio = np.linalg.norm(then - flange, axis=1) / (np.abs(other - q) @ chain.lever_arms)
        assert ratio.max() <= 1.0
    assert np.median(ratio) > 0.15  # near postures: a bound, not a vacuous one


@pytest.mark.parametrize("family", FAMILIES)
def test_torch_fk_gradients_match_finite_differences(family):
    fk = TorchFK(perturbed(load_family(family)))
    q = torch.from_numpy(random_q(load_family(family), 3, seed=3)).requires_grad_()
    assert torch.autograd.gradcheck(fk.position, (q,))


@pytest.mark.parametrize("family", FAMILIES)
def test_the_ik_jacobian_matches_finite_differences(family):
    arm = perturbed(load_family(family))
    q, eps = random_q(arm, 1, seed=4)[0], 1e-6
    numeric = np.stack([(flange_position(arm, q + eps * e) - flange_position(arm, q - eps * e)) / (2 * eps)
                        for e in np.eye(arm.dof)], axis=-1)
    np.testing.assert_allclose(CompiledChain(arm).position_and_jacobian(q)[1], numeric, atol=1e-8)


@pytest.mark.parametrize("batch", [(), (5,), (2, 3)])
def test_batched_shapes(batch):
    arm = load_family("panda")
    q = np.zeros(batch + (7,))
    assert flange_pose(arm, q).shape == batch + (4, 4)
    assert flange_position(arm, q).shape == batch + (3,)
    assert joint_frames(arm, q).shape == batch + (8, 4, 4)
    fk = TorchFK(arm)
    assert fk(torch.zeros(batch + (7,))).shape == batch + (4, 4)
    assert fk.position(torch.zeros(batch + (7,))).shape == batch + (3,)


def test_wrong_joint_vectors_are_rejected():
    arm = load_family("panda")
    with pytest.raises(JointVectorError, match="7 values"):
        flange_position(arm, np.zeros(6))
    with pytest.raises(JointVectorError, match="NaN"):
        flange_position(arm, np.array([0, 0, np.nan, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match="length 7"):
        TorchFK(arm)(torch.zeros(3, 6))
