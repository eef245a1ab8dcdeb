"""System identification for puck hitting: estimate the puck's friction and mass from the hits so far by matching
simulated hits to the observed ones, then choose every hit in simulation under the estimate.

The method (:class:`SystemIdMethod`, an :class:`~mtrl_robot.learning.puck.methods.AdaptationMethod`), top to bottom:

1. **Search space.** The identified parameters (``identified``: sliding friction along x and y, mass) over their
   ranges in the randomization spec the policies train on (``config/randomization.yaml``); a parameter drawn
   relative to another (μy = μx × factor) is searched as that factor. A candidate is a point of the unit cube,
   every parameter not identified keeps its nominal value. Before any hit the estimate is the middle of the ranges.
2. **Identification** (:meth:`SystemIdMethod.identify`, after every adaptation step). The cross-entropy method
   (CEM, Rubinstein 1999): ``population`` candidates per iteration, ``iterations`` iterations, each drawn from a
   Gaussian around the ``elites`` best of the previous one. The first identification of a puck starts uniform over
   the cube; a later one starts from the Gaussian the previous one ended with, widened to at least
   ``carried_std``, so the candidates of every step build on what the earlier hits taught. A candidate's
   score is the mean distance between where its simulated hits left the puck and where the observed ones did, on
   the ``matched_hits`` most recent observed hits (same latents, same puck starts); a hit refused or lost on
   either side counts :data:`~mtrl_robot.tasks.puck.MISSED_DISTANCE`. The estimate is the best candidate of the
   identification, the previous estimate (scored on the same hits) included.
3. **Choosing a hit** (:meth:`SystemIdMethod.propose`). Under the estimate, a ``grid`` × ``grid`` grid of latents
   over the VAE's box is simulated once (from the puck's nominal start); each goal, shifted by its puck's start
   offset, takes the grid latent whose puck came to rest nearest, then a Newton step through the grid's local
   Jacobian (finite differences), then ``refinements`` corrections, each one simulated hit from the puck's actual
   start under the estimate. Exploratory hits are chosen the same way: every hit aims at its goal.

Every simulated hit runs on a simulated puck table of the method's own (:func:`simulator`), the engine and world
the policies are trained in; the hits of the puck being identified are never the method's to make. The CEM draws
come from the seed :meth:`begin` receives.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mtrl_robot.core.config import check_settings, setting
from mtrl_robot.core.errors import ConfigError
from mtrl_robot.learning.puck.methods import AdaptationMethod
from mtrl_robot.learning.puck.presets import HITS, PuckMetaRLConfig
from mtrl_robot.learning.puck.train import VAE_FILE, simulated_world
from mtrl_robot.models.hitting_vae import HittingVAE
from mtrl_robot.randomization import RandomizationSpec
from mtrl_robot.tasks.puck import MISSED_DISTANCE, OFFSETS, HitBatch, Layout, PuckHittingEnv, PuckWorld

IDENTIFIED = ("puck.friction.slide_x", "puck.friction.slide_y", "puck.mass")


@dataclass(frozen=True)
class SystemIdConfig:
    """Every hyperparameter of system identification."""

    identified: tuple[str, ...] = setting(IDENTIFIED, "randomized parameters estimated (uniform in the spec)")
    population: int = setting(10, "CEM candidates per iteration", minimum=2, maximum=HITS)
    elites: int = setting(3, "best candidates the next CEM iteration is drawn around", above=0)
    iterations: int = setting(2, "CEM iterations per identification", above=0, maximum=HITS)
    min_std: float = setting(0.05, "floor of the CEM standard deviation, in units of each range", above=0)
    carried_std: float = setting(0.15, "least standard deviation a later identification starts with, in units of "
                                 "each range", above=0)
    matched_hits: int = setting(6, "most recent observed hits a candidate is simulated on", above=0, maximum=HITS)
    grid: int = setting(7, "latents per axis of the grid a hit is chosen from", minimum=2, maximum=HITS)
    refinements: int = setting(1, "simulated Newton corrections per chosen hit", minimum=0, maximum=HITS)
    max_newton_step: float = setting(0.5, "longest Newton step, in normalised latent units", above=0)

    def __post_init__(self) -> None:
        check_settings(self)
        if self.elites > self.population:
            raise ConfigError(None, "elites", f"at most population ({self.population}), got {self.elites}")
        if not self.identified:
            raise ConfigError(None, "identified", "expected a non-empty list")


def search_ranges(spec: RandomizationSpec, identified: tuple[str, ...]) -> list[tuple[str, float, float, str | None]]:
    """(name, low, high, relative_to) of each identified parameter, in the spec's dependency order."""
    by_name = {p.name: p for p in spec.parameters}
    missing = [name for name in identified if name not in by_name]
    if missing:
        raise ValueError(f"system identification: {missing} are not randomized in {spec.source or 'the spec'}")
    ranges = []
    for p in spec.parameters:
        if p.name not in identified:
            continue
        if p.distribution.kind == "normal":
            raise ValueError(f"system identification searches ranges; {p.name} is drawn from a normal distribution")
        if p.relative_to not in (None, *identified):
            raise ValueError(f"{p.name} is drawn relative to {p.relative_to}, which is not identified")
        ranges.append((p.name, *p.distribution.support, p.relative_to))
    return ranges


class SystemIdMethod(AdaptationMethod):
    """Identify the puck's physics from the hits so far (CEM), then choose each hit in simulation under them.

    ``table`` is the simulated puck table ``simulator`` hits on when the method owns it (:func:`build`): then
    :meth:`close` closes it, and the method simulates no more.
    """

    def __init__(self, simulator: PuckWorld, config: SystemIdConfig = SystemIdConfig(),
                 table: PuckHittingEnv | None = None):
        if simulator.randomization is None:
            raise ValueError("system identification needs a simulated world with a randomization spec")
        self.simulator, self.config, self.table = simulator, config, table
        self.closed = False
        self.ranges = search_ranges(simulator.randomization, config.identified)
        self.nominal = simulator.scene.nominal_parameters()
        self.rng = np.random.default_rng(0)
        g = np.linspace(-1.0, 1.0, config.grid)
        self.grid_actions = np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1).reshape(-1, 2)
        self.begin(0)

    # -------------------------------------------------------------------------------------- the estimate

    def physics(self, point: np.ndarray) -> dict[str, float]:
        """The identified parameters at ``point`` of the unit cube (relative draws multiplied through)."""
        values: dict[str, float] = {}
        for (name, low, high, relative_to), u in zip(self.ranges, point, strict=True):
            value = low + float(u) * (high - low)
            if relative_to is not None:
                value *= values[relative_to] if relative_to in values else self.nominal[relative_to]
            values[name] = value
        return values

    def begin(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.observed: list[HitBatch] = []
        self.point = np.full(len(self.ranges), 0.5)  # the middle of the ranges
        self.spread: np.ndarray | None = None  # the CEM's standard deviation at the end of the last identification
        self.estimate = self.physics(self.point)
        self._grid_finals: np.ndarray | None = None

    def simulate(self, physics: dict[str, float], starts: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Where the simulated puck comes to rest, (n, 2) m (NaN: refused or lost), for each latent and start."""
        if self.closed:
            raise RuntimeError("this system identification method is closed: its simulated puck table is released")
        offsets = starts - self.simulator.start
        layout = Layout([{**physics, OFFSETS[0]: float(dx), OFFSETS[1]: float(dy)} for dx, dy in offsets], starts)
        return self.simulator.strike(layout, starts, torch.as_tensor(actions)).finals

    def mismatch(self, physics: dict[str, float], observed: HitBatch) -> float:
        """Mean distance (m) between simulated and observed resting places of the ``observed`` hits."""
        simulated = self.simulate(physics, observed.starts, observed.actions)
        gap = np.linalg.norm(simulated - observed.finals, axis=1)
        return float(np.where(np.isfinite(gap), gap, MISSED_DISTANCE).mean())

    def identify(self) -> dict[str, float]:
        """The CEM estimate of the identified parameters from the most recent observed hits."""
        c = self.config
        hits = [h for batch in self.observed for h in zip(*batch, strict=True)][-c.matched_hits:]
        observed = HitBatch(*(np.array(column) for column in zip(*hits, strict=True)))
        dims = len(self.ranges)
        best_point, best_score = self.point, self.mismatch(self.estimate, observed)
        mean = self.point
        std = None if self.spread is None else np.maximum(self.spread, c.carried_std)
        for _ in range(c.iterations):
            if std is None:
                points = self.rng.uniform(0.0, 1.0, (c.population, dims))
            else:
                points = np.clip(mean + std * self.rng.standard_normal((c.population, dims)), 0.0, 1.0)
            scores = np.array([self.mismatch(self.physics(p), observed) for p in points])
            order = np.argsort(scores, kind="stable")
            if scores[order[0]] < best_score:
                best_point, best_score = points[order[0]], float(scores[order[0]])
            elites = np.vstack([points[order[:c.elites]], best_point])
            mean, std = elites.mean(axis=0), np.maximum(elites.std(axis=0), c.min_std)
        self.point, self.spread = best_point, std
        return self.physics(best_point)

    # -------------------------------------------------------------------------------------- the interface

    def close(self) -> None:
        if self.table is not None:
            self.table.close()
            self.table = None
        self.closed = True

    def learn(self, hits: HitBatch) -> None:
        self.observed.append(hits)
        self.estimate = self.identify()
        self._grid_finals = None

    def grid_finals(self) -> np.ndarray:
        """Where each grid latent leaves the puck under the estimate, from its nominal start: (grid, grid, 2) m."""
        if self._grid_finals is None:
            starts = np.tile(self.simulator.start, (len(self.grid_actions), 1))
            finals = self.simulate(self.estimate, starts, self.grid_actions)
            self._grid_finals = finals.reshape(self.config.grid, self.config.grid, 2)
        return self._grid_finals

    def propose(self, goals: np.ndarray, starts: np.ndarray, explore: bool) -> np.ndarray:
        c = self.config
        finals = self.grid_finals()
        spacing = 2.0 / (c.grid - 1)
        jacobians = np.stack(np.gradient(finals, spacing, axis=(0, 1)), axis=-1)  # (grid, grid, 2 outputs, 2 inputs)
        targets = goals - (starts - self.simulator.start)  # the goal as seen from the nominal start
        flat = finals.reshape(-1, 2)
        gaps = np.linalg.norm(flat[None] - targets[:, None], axis=2)
        nearest = np.argmin(np.where(np.isfinite(gaps), gaps, np.inf), axis=1)
        actions = self.grid_actions[nearest].copy()
        jacobian = jacobians.reshape(-1, 2, 2)[nearest]
        actions = self._newton(actions, jacobian, targets - flat[nearest])
        for _ in range(c.refinements):
            reached = self.simulate(self.estimate, starts, actions)
            actions = self._newton(actions, jacobian, goals - reached)
        return actions

    def _newton(self, actions: np.ndarray, jacobian: np.ndarray, miss: np.ndarray) -> np.ndarray:
        """``actions`` moved by J⁻¹·miss (at most ``max_newton_step``), kept in the VAE's box; unchanged where the
        Jacobian or the miss is unknown or singular."""
        usable = np.all(np.isfinite(jacobian), axis=(1, 2)) & np.all(np.isfinite(miss), axis=1)
        usable &= np.abs(np.linalg.det(np.where(usable[:, None, None], jacobian, np.eye(2)))) > 1e-9
        steps = np.zeros_like(actions)
        if usable.any():
            steps[usable] = np.linalg.solve(jacobian[usable], miss[usable][..., None])[..., 0]
        lengths = np.linalg.norm(steps, axis=1, keepdims=True)
        steps *= np.minimum(1.0, self.config.max_newton_step / np.maximum(lengths, 1e-12))
        return np.clip(actions + steps, -1.0, 1.0)


def simulator(vae: HittingVAE, config: PuckMetaRLConfig) -> tuple[PuckHittingEnv, PuckWorld]:
    """A simulated puck table of its own (close the env when done) and its world: the policies' training world."""
    env = PuckHittingEnv(config.arm, motion_vae=vae)
    return env, simulated_world(env, config)


def build(run: Path, world: PuckWorld, config: PuckMetaRLConfig) -> SystemIdMethod:
    """The method for a run's VAE, simulating on a puck table of its own, which :meth:`SystemIdMethod.close`
    closes (``world`` is where it is measured)."""
    table, simulated = simulator(HittingVAE.load(Path(run) / VAE_FILE), config)
    try:
        return SystemIdMethod(simulated, table=table)
    except ValueError:
        table.close()
        raise
