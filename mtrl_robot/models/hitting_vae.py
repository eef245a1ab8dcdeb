"""A trajectory VAE over hitting motions: the 2-D latent action space of puck hitting.

- **Data.** :func:`hitting_dataset` draws (angle, strength) uniformly over the generator's ranges (seeded)
  and returns their motions: ``N_WAYPOINTS`` joint positions evenly spaced in time, plus the duration.
- **Model.** The :class:`~mtrl_robot.models.trajectory_vae.TrajectoryVAE` with the
  :class:`~mtrl_robot.models.trajectory_vae.TimedPathScaler`: a motion is the flat vector (positions,
  duration), standardised per feature with the training set's mean and spread.
- **Training.** :func:`train_hitting_vae`: Adam on minibatches, seeded (``torch.manual_seed`` and a
  ``torch.Generator``), tqdm progress; then the model is frozen (eval mode, no gradients) and the box
  spanned by the training set's latent means is kept as the trained range.
- **Decoding** (:meth:`HittingVAE.decode_motion`). A latent outside the trained range is **clipped** to it
  (reported, never an error, never NaN); a non-finite latent raises ValueError. The decoded positions are
  clipped into the joint limits, the duration is at least half the training mean, velocities come from a
  clamped cubic spline (start and end at rest), and if a joint would exceed ``VELOCITY_FRACTION`` of its
  limit the duration is stretched until it does not: every decoded motion passes
  :func:`~mtrl_robot.backends.trajectory.check_trajectory`.
- **Files.** :meth:`HittingVAE.save` writes tensors and plain containers atomically (temporary file, then
  rename); :meth:`HittingVAE.load` reads them with :func:`~mtrl_robot.core.torch_files.load_torch_file`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.interpolate import CubicSpline
from tqdm import tqdm

from mtrl_robot.arms.fk import CompiledChain
from mtrl_robot.backends.trajectory import JointLimits, JointTrajectory
from mtrl_robot.core.atomic import write_atomic
from mtrl_robot.core.torch_files import CheckpointError, first_line, load_torch_file
from mtrl_robot.models.trajectory_vae import TimedPathScaler, TrajectoryVAE
from mtrl_robot.motions.hitting import ANGLE_RANGE, SPEED_RANGE, HittingMotionGenerator, paddle_arm

LATENT_DIM = 2
HIDDEN = (128, 128)
BETA = 1e-3  # weight of the KL term against the standardised reconstruction MSE
VELOCITY_FRACTION = 0.95  # of each joint's limit, the most a decoded motion may ask for
FILE_FORMAT = 2  # 2: the normaliser's buffers are normalizer.mean and normalizer.std


def hitting_dataset(generator: HittingMotionGenerator, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` motions for uniformly drawn (angle, strength): positions (n, T, dof) and durations (n,)."""
    if n < 2:
        raise ValueError(f"a dataset needs at least 2 motions, got {n}")
    rng = np.random.default_rng(seed)
    motions = generator.motions(rng.uniform(*ANGLE_RANGE, n), rng.uniform(*SPEED_RANGE, n))
    return motions.positions, motions.durations


class HittingVAE(TrajectoryVAE):
    """The trajectory VAE over (positions, duration) of one arm's joints, with the box of latents it was trained on."""

    def __init__(self, limits: JointLimits, n_waypoints: int, latent_dim: int = LATENT_DIM,
                 hidden: tuple[int, ...] = HIDDEN, beta: float = BETA):
        super().__init__(TimedPathScaler(n_waypoints, len(limits.names)), latent_dim, hidden, beta)
        self.limits, self.n_waypoints = limits, n_waypoints
        self.register_buffer("latent_low", torch.full((latent_dim,), -np.inf, dtype=torch.float32))
        self.register_buffer("latent_high", torch.full((latent_dim,), np.inf, dtype=torch.float32))

    @property
    def joint_names(self) -> tuple[str, ...]:
        return self.limits.names

    def clip_latent(self, z) -> tuple[np.ndarray, bool]:
        """``z`` clipped into the trained range, and whether it had to be; ValueError for a wrong or NaN latent."""
        z = np.asarray(z, dtype=float)
        if z.shape != (self.latent_dim,):
            raise ValueError(f"a latent action has shape ({self.latent_dim},), got {z.shape}")
        if not np.all(np.isfinite(z)):
            raise ValueError(f"latent action {z.tolist()} has NaN or inf")
        low, high = self.latent_low.double().numpy(), self.latent_high.double().numpy()
        clipped = np.clip(z, low, high)
        return clipped, bool(np.any(clipped != z))

    @torch.no_grad()
    def decode_motion(self, z) -> tuple[JointTrajectory, bool]:
        """A valid joint trajectory for latent ``z`` (clipped into the trained range; the flag says if it was)."""
        z, clipped = self.clip_latent(z)
        positions, duration = self.normalizer.denormalize(self.decode(torch.as_tensor(z, dtype=torch.float32)[None]))
        positions = np.clip(positions[0].double().numpy(), self.limits.lower, self.limits.upper)
        duration = max(float(duration[0]), float(self.normalizer.mean[-1]) / 2)
        times = np.linspace(0.0, 1.0, self.n_waypoints)
        velocities = CubicSpline(times, positions, bc_type="clamped")(times, 1)  # per unit of normalised time
        velocities[[0, -1]] = 0.0  # at rest exactly (the spline's end slopes are zero up to round-off)
        steps = np.abs(np.diff(positions, axis=0)) * (self.n_waypoints - 1)
        demand = np.max(np.maximum(np.abs(velocities[1:]), steps) / (VELOCITY_FRACTION * self.limits.velocity))
        duration = max(duration, float(demand))
        return JointTrajectory(self.joint_names, times * duration, positions, velocities / duration), clipped

    def freeze(self) -> HittingVAE:
        """Evaluation mode, no gradients: the decoder is a fixed action map."""
        self.eval()
        self.requires_grad_(False)
        return self

    def save(self, path: str | Path) -> Path:
        """Write weights and settings atomically (a temporary file in the same folder, then a rename)."""
        payload = {"format": FILE_FORMAT, "joint_names": list(self.joint_names), "n_waypoints": self.n_waypoints,
                   "latent_dim": self.latent_dim, "hidden": list(self.hidden), "beta": self.beta,
                   "limits": {k: torch.as_tensor(getattr(self.limits, k)) for k in ("lower", "upper", "velocity",
                                                                                   "effort")},
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
            vae = HittingVAE(limits, payload["n_waypoints"], payload["latent_dim"], tuple(payload["hidden"]),
                             payload["beta"])
            vae.load_state_dict(payload["state_dict"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{path}: does not fit the hitting VAE it describes: {first_line(e)}") from e
        return vae.freeze()


@dataclass(frozen=True)
class ReconstructionError:
    """How well a VAE reproduces motions it encodes and decodes (through the latent means)."""

    joint_rms: float  # rad, over all waypoints and joints
    joint_max: float  # rad
    paddle_rms: float  # m, paddle ball position (FK) at every waypoint
    paddle_max: float  # m
    duration_max: float  # s


@torch.no_grad()
def reconstruction_error(vae: HittingVAE, generator: HittingMotionGenerator, positions: np.ndarray,
                         durations: np.ndarray) -> ReconstructionError:
    """Errors of encode (mean) → decode on the given motions, in joint space and at the paddle."""
    mean, _ = vae.encode(vae.normalizer.normalize(positions, durations))
    decoded, decoded_durations = (t.double().numpy() for t in vae.normalizer.denormalize(vae.decode(mean)))
    kin = CompiledChain(paddle_arm(generator.arm, generator.scene))
    paddle_error = np.linalg.norm(kin.frames(decoded)[..., -1, :3, 3] - kin.frames(positions)[..., -1, :3, 3], axis=-1)
    joint_error = decoded - positions
    return ReconstructionError(float(np.sqrt(np.mean(joint_error**2))), float(np.abs(joint_error).max()),
                               float(np.sqrt(np.mean(paddle_error**2))), float(paddle_error.max()),
                               float(np.abs(decoded_durations - durations).max()))


def train_hitting_vae(generator: HittingMotionGenerator, n_motions: int = 20000, steps: int = 3000,
                      batch_size: int = 256, learning_rate: float = 2e-3, seed: int = 0,
                      progress: bool = True) -> HittingVAE:
    """Train a VAE on ``n_motions`` generated motions and return it frozen, with its trained latent range."""
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be positive, got {steps} and {batch_size}")
    positions, durations = hitting_dataset(generator, n_motions, seed)
    torch.manual_seed(seed)
    vae = HittingVAE(generator.limits, generator.n_waypoints)
    vae.normalizer.set_statistics(positions, durations)
    features = vae.normalizer.normalize(positions, durations)
    rng = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(vae.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small only loses time to thread hand-offs
    try:
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
    finally:
        torch.set_num_threads(threads)
    vae.freeze()
    with torch.no_grad():
        mean, _ = vae.encode(features)
    vae.latent_low.copy_(mean.min(dim=0).values)
    vae.latent_high.copy_(mean.max(dim=0).values)
    return vae
