"""A trajectory VAE over hitting motions: the 2-D latent action space of puck hitting.

A hitting motion is a path and a timing (:mod:`~mtrl_robot.motions.hitting`): the joint postures at the hitting
line's via points, through which the path's spline runs, and the paddle's speed at contact; the timing follows
from those and the arm's limits. The VAE models the first two; the one timing
(:meth:`~mtrl_robot.motions.hitting.HittingPath.time`) turns a decoded path and speed into a motion.

- **Data.** :func:`hitting_dataset` draws (angle, strength) uniformly over the generator's ranges (seeded) and
  returns their motions' via postures (``N_VIA`` × dof) and contact speeds; every one of them is timed within the
  limits.
- **Model.** The :class:`~mtrl_robot.models.trajectory_vae.TrajectoryVAE` with the
  :class:`~mtrl_robot.models.trajectory_vae.PrincipalPathScaler`: a motion is the path's coordinates along the
  training paths' first ``PATH_COMPONENTS`` principal directions and the speed, standardised per feature, so a
  decoded path is a smooth combination of training paths' shapes (the curvature that its timing must respect
  stays that of real hitting paths). The decoded speed bends smoothly into the
  generator's speed range (:meth:`HittingVAE.decode`), so that no latent of the box asks
  for a speed no training motion had (the trained box is the hull of the training latents, wider than their
  curved manifold).
- **Training.** :func:`train_hitting_vae`: Adam on minibatches, seeded (``torch.manual_seed`` and a
  ``torch.Generator``), tqdm progress; then the model is frozen (eval mode, no gradients) and the box
  spanned by the training set's latent means is kept as the trained range.
- **Decoding** (:meth:`HittingVAE.decode_motion`). A non-finite or misshapen latent raises ValueError; a latent
  outside the trained box, and a decoded path that cannot be timed within the limits at its decoded speed, are a
  :class:`~mtrl_robot.motions.path_timing.MotionRefused` (a refused hit), never moved to another hit. Otherwise
  the decoded path is timed by the hitting path's timing, within the limits it was trained with, and checked with
  the safety layer's check.
- **Files.** :meth:`HittingVAE.save` writes tensors and plain containers atomically (temporary file, then
  rename); :meth:`HittingVAE.load` reads them with :func:`~mtrl_robot.core.torch_files.load_torch_file`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mtrl_robot.arms.fk import CompiledChain
from mtrl_robot.backends.limits import MotionLimits
from mtrl_robot.backends.trajectory import JointLimits, JointTrajectory
from mtrl_robot.core.atomic import write_atomic
from mtrl_robot.core.torch_files import CheckpointError, first_line, load_torch_file
from mtrl_robot.core.torch_threads import torch_threads
from mtrl_robot.models.trajectory_vae import PrincipalPathScaler, TrajectoryVAE
from mtrl_robot.motions.hitting import ANGLE_RANGE, SPEED_RANGE, HittingMotionGenerator, HittingPath, paddle_arm
from mtrl_robot.motions.path_timing import MotionRefused

LATENT_DIM = 2
HIDDEN = (128, 128)
BETA = 1e-3  # weight of the KL term against the standardised reconstruction MSE
PATH_COMPONENTS = 6  # principal directions of the training paths a decoded path is made of
SPEED_SHARPNESS = 10.0  # per normalised unit: how sharply the decoded speed bends into its bounds
BOX_SLACK = 1e-6  # of the box's width: a latent this far outside an edge still counts as on it (round-off)
FILE_FORMAT = 3  # 3: (via postures, contact speed) with the hitting path and its motion limits


def hitting_dataset(generator: HittingMotionGenerator, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` motions for uniformly drawn (angle, strength): via postures (n, N_VIA, dof) and contact speeds (n,)."""
    if n < 2:
        raise ValueError(f"a dataset needs at least 2 motions, got {n}")
    rng = np.random.default_rng(seed)
    motions = generator.motions(rng.uniform(*ANGLE_RANGE, n), rng.uniform(*SPEED_RANGE, n))
    return motions.via_positions, motions.speeds


class HittingVAE(TrajectoryVAE):
    """The trajectory VAE over (via postures, contact speed) of one arm's hitting path, with the box of latents it
    was trained on; its motions are timed along ``path`` within the path's limits."""

    def __init__(self, limits: JointLimits, path: HittingPath, latent_dim: int = LATENT_DIM,
                 hidden: tuple[int, ...] = HIDDEN, beta: float = BETA):
        super().__init__(PrincipalPathScaler(len(path.via), len(limits.names), PATH_COMPONENTS), latent_dim, hidden,
                         beta)
        self.limits, self.path = limits, path
        self.register_buffer("latent_low", torch.full((latent_dim,), -np.inf, dtype=torch.float32))
        self.register_buffer("latent_high", torch.full((latent_dim,), np.inf, dtype=torch.float32))
        self.register_buffer("speed_range", torch.tensor(SPEED_RANGE))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z → normalised features, the contact speed bent smoothly into ``speed_range`` (the speeds the generator
        makes): equal to the network's output well inside it, never beyond it."""
        features = self.decoder(z)
        low, high = (self.speed_range - self.normalizer.mean[-1]) / self.normalizer.std[-1]
        speed = features[..., -1:]
        bent = (low + torch.nn.functional.softplus(speed - low, beta=SPEED_SHARPNESS)
                - torch.nn.functional.softplus(speed - high, beta=SPEED_SHARPNESS))
        return torch.cat([features[..., :-1], bent], dim=-1)

    @property
    def joint_names(self) -> tuple[str, ...]:
        return self.limits.names

    def check_latent(self, z) -> np.ndarray:
        """``z`` as an array: ValueError for a wrong shape or NaN, ``MotionRefused`` outside the trained box."""
        z = np.asarray(z, dtype=float)
        if z.shape != (self.latent_dim,):
            raise ValueError(f"a latent action has shape ({self.latent_dim},), got {z.shape}")
        if not np.all(np.isfinite(z)):
            raise ValueError(f"latent action {z.tolist()} has NaN or inf")
        low, high = self.latent_low.double().numpy(), self.latent_high.double().numpy()
        slack = BOX_SLACK * (high - low)
        outside = np.flatnonzero((z < low - slack) | (z > high + slack))
        if outside.size:
            i = outside[0]
            raise MotionRefused(f"latent action {np.round(z, 4).tolist()} is outside the trained box: component {i} "
                                f"is {z[i]:.4g}, the box holds [{low[i]:.4g}, {high[i]:.4g}]")
        return z

    @torch.no_grad()
    def decode_motion(self, z) -> JointTrajectory:
        """The motion of latent ``z``: its decoded path timed within the limits (``MotionRefused`` if it cannot be,
        or if ``z`` is outside the trained box)."""
        z = self.check_latent(z)
        postures, speeds = self.normalizer.denormalize(self.decode(torch.as_tensor(z, dtype=torch.float32)[None]))
        hit = self.path.time(self.path.spline(postures[0].double().numpy()), float(speeds[0]), self.joint_names)
        return JointTrajectory(self.joint_names, hit.times, hit.positions, hit.velocities)

    def freeze(self) -> HittingVAE:
        """Evaluation mode, no gradients: the decoder is a fixed action map."""
        self.eval()
        self.requires_grad_(False)
        return self

    def save(self, path: str | Path) -> Path:
        """Write weights and settings atomically (a temporary file in the same folder, then a rename)."""
        motion = self.path.limits
        payload = {"format": FILE_FORMAT, "joint_names": list(self.joint_names), "latent_dim": self.latent_dim,
                   "hidden": list(self.hidden), "beta": self.beta,
                   "limits": {k: torch.as_tensor(getattr(self.limits, k)) for k in ("lower", "upper", "velocity",
                                                                                   "effort")},
                   "path": {"via": torch.as_tensor(self.path.via), "contact": self.path.contact,
                            "n_waypoints": self.path.n_waypoints, "control_period": motion.control_period,
                            **{k: torch.as_tensor(getattr(motion, k)) for k in ("velocity", "acceleration", "jerk")}},
                   "state_dict": self.state_dict()}
        return write_atomic(path, lambda f: torch.save(payload, f))

    @staticmethod
    def load(path: str | Path) -> HittingVAE:
        """A frozen model from :meth:`save` (``weights_only=True``: tensors and plain containers only);
        ``CheckpointError`` (a ``ValueError``) for a missing, unreadable or foreign file."""
        payload = load_torch_file(path, "hitting VAE")
        if not isinstance(payload, dict) or payload.get("format") != FILE_FORMAT:
            raise CheckpointError(f"{path}: not a hitting VAE file of format {FILE_FORMAT}")
        try:
            limits = JointLimits(tuple(payload["joint_names"]), *(payload["limits"][k].numpy() for k in
                                                                 ("lower", "upper", "velocity", "effort")))
            p = payload["path"]
            motion = MotionLimits(*(p[k].numpy() for k in ("velocity", "acceleration", "jerk")),
                                  float(p["control_period"]))
            hitting_path = HittingPath(p["via"].numpy(), float(p["contact"]), motion, int(p["n_waypoints"]))
            vae = HittingVAE(limits, hitting_path, payload["latent_dim"], tuple(payload["hidden"]), payload["beta"])
            vae.load_state_dict(payload["state_dict"])
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
            raise CheckpointError(f"{path}: does not fit the hitting VAE it describes: {first_line(e)}") from e
        return vae.freeze()


@dataclass(frozen=True)
class ReconstructionError:
    """How well a VAE reproduces motions it encodes and decodes (through the latent means)."""

    joint_rms: float  # rad, over all via postures and joints
    joint_max: float  # rad
    paddle_rms: float  # m, paddle ball position (FK) at every via posture
    paddle_max: float  # m
    speed_max: float  # m/s, contact speed


@torch.no_grad()
def reconstruction_error(vae: HittingVAE, generator: HittingMotionGenerator, postures: np.ndarray,
                         speeds: np.ndarray) -> ReconstructionError:
    """Errors of encode (mean) → decode on the given motions, in joint space and at the paddle."""
    mean, _ = vae.encode(vae.normalizer.normalize(postures, speeds))
    decoded, decoded_speeds = (t.double().numpy() for t in vae.normalizer.denormalize(vae.decode(mean)))
    kin = CompiledChain(paddle_arm(generator.arm, generator.scene))
    paddle_error = np.linalg.norm(kin.frames(decoded)[..., -1, :3, 3] - kin.frames(postures)[..., -1, :3, 3], axis=-1)
    joint_error = decoded - postures
    return ReconstructionError(float(np.sqrt(np.mean(joint_error**2))), float(np.abs(joint_error).max()),
                               float(np.sqrt(np.mean(paddle_error**2))), float(paddle_error.max()),
                               float(np.abs(decoded_speeds - speeds).max()))


def train_hitting_vae(generator: HittingMotionGenerator, n_motions: int = 20000, steps: int = 3000,
                      batch_size: int = 256, learning_rate: float = 2e-3, seed: int = 0,
                      progress: bool = True) -> HittingVAE:
    """Train a VAE on ``n_motions`` generated motions and return it frozen, with its trained latent range."""
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be positive, got {steps} and {batch_size}")
    postures, speeds = hitting_dataset(generator, n_motions, seed)
    torch.manual_seed(seed)
    vae = HittingVAE(generator.limits, generator.path)
    vae.normalizer.set_statistics(postures, speeds)
    features = vae.normalizer.normalize(postures, speeds)
    rng = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(vae.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    with torch_threads(1):
        bar = tqdm(range(steps), desc="hitting VAE", disable=not progress)
        for step in bar:
            batch = features[torch.randint(len(features), (batch_size,), generator=rng)]
            loss, reconstruction, _ = vae.loss(batch, rng)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            if step % 100 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}", mse=f"{reconstruction.item():.5f}")
    vae.freeze()
    with torch.no_grad():
        mean, _ = vae.encode(features)
    vae.latent_low.copy_(mean.min(dim=0).values)
    vae.latent_high.copy_(mean.max(dim=0).values)
    return vae
