"""Every motion a hitting VAE can decode, judged by a hardware preset's safety layer.

:func:`check_latent_grid` decodes a dense grid over the VAE's trained latent box (``per_axis`` latents per axis,
the edges included) and sends each motion through the preset's :class:`~mtrl_robot.hardware.safety.SafetyChecker`
from rest at its first posture, as the puck task runs a hit: positions, velocity, acceleration and jerk of what the
controller commands, and the workspace box. It counts the motions passed and refused (a latent whose motion cannot
be timed within the VAE's limits is refused by the VAE itself) and keeps the largest ratio of each quantity to its
limit over every decoded motion, with the joint. :func:`write_motion_check` writes the figures as JSON atomically.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mtrl_robot.backends.limits import QUANTITIES, motion_peaks
from mtrl_robot.backends.trajectory import JointState, TrajectoryError
from mtrl_robot.core.atomic import write_atomic
from mtrl_robot.hardware.presets import HardwarePreset
from mtrl_robot.hardware.safety import SafetyChecker
from mtrl_robot.models.hitting_vae import HittingVAE
from mtrl_robot.motions.path_timing import MotionRefused


@dataclass(frozen=True)
class WorstRatio:
    """The largest peak / limit of one quantity over the grid, and where."""

    ratio: float
    joint: str
    latent: list[float]


@dataclass(frozen=True)
class MotionCheck:
    """What a preset's safety layer made of the motions of a latent grid."""

    preset: str
    latents: int
    passed: int
    refused: int
    refusals: dict[str, int]  # first words of each refusal reason → count
    worst: dict[str, WorstRatio]  # velocity, acceleration, jerk
    longest_motion_s: float

    def summary(self) -> str:
        lines = [f"{self.latents} latents on the preset {self.preset}: {self.passed} passed, {self.refused} refused"]
        lines += [f"  {reason}: {count}" for reason, count in self.refusals.items()]
        for quantity, worst in self.worst.items():
            lines.append(f"  worst {quantity}: {worst.ratio:.3f} of the limit ({worst.joint}, latent "
                         f"{np.round(worst.latent, 4).tolist()})")
        lines.append(f"  longest motion: {self.longest_motion_s:.3f} s")
        return "\n".join(lines)


def check_latent_grid(vae: HittingVAE, preset: HardwarePreset, per_axis: int = 32) -> MotionCheck:
    """Decode ``per_axis``² latents spanning the trained box and check every motion with the preset's safety layer."""
    if per_axis < 2:
        raise ValueError(f"per_axis must be at least 2, got {per_axis}")
    if vae.latent_dim != 2:
        raise ValueError(f"the grid check spans a 2-D latent box, this VAE has {vae.latent_dim} dimensions")
    if sorted(preset.model_names) != sorted(vae.joint_names):
        raise ValueError(f"the preset {preset.name} drives joints {list(preset.model_names)}, the VAE's motions "
                         f"are for {list(vae.joint_names)}")
    checker = SafetyChecker(preset.safety_limits())
    limits = checker.motion_limits
    low, high = vae.latent_low.double().numpy(), vae.latent_high.double().numpy()
    axes = [np.linspace(low[i], high[i], per_axis) for i in range(2)]
    latents = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 2)
    reasons: Counter[str] = Counter()
    worst = {quantity: WorstRatio(0.0, "", []) for quantity, _ in QUANTITIES}
    passed, longest = 0, 0.0
    for z in latents:
        try:
            motion = preset.to_hardware(vae.decode_motion(z))
        except MotionRefused as exc:
            reasons[f"not timeable: {_reason(exc)}"] += 1
            continue
        longest = max(longest, motion.duration)
        peaks = motion_peaks(motion, limits.control_period)
        for quantity, _ in QUANTITIES:
            ratio = peaks.peak(quantity) / getattr(limits, quantity)
            j = int(np.argmax(ratio))
            if ratio[j] > worst[quantity].ratio:
                worst[quantity] = WorstRatio(float(ratio[j]), preset.joint_names[j], z.tolist())
        at_rest = JointState(preset.joint_names, motion.positions[0], np.zeros(len(preset.joint_names)), 0.0)
        try:
            checker.check(motion, at_rest)
            passed += 1
        except TrajectoryError as exc:
            reasons[f"safety layer: {_reason(exc)}"] += 1
    return MotionCheck(preset.name, len(latents), passed, len(latents) - passed, dict(reasons.most_common()), worst,
                       longest)


def _reason(exc: Exception) -> str:
    """A refusal's first words, numbers left out ("…"), so that alike refusals count together."""
    words = ["…" if re.match(r"[-+(]?[\d.]+", w) else w for w in str(exc).split()]
    return " ".join(words[:10])


def write_motion_check(check: MotionCheck, path: str | Path) -> Path:
    """The figures as JSON, written atomically."""
    return write_atomic(path, json.dumps(asdict(check), indent=1))
