"""Ways to hit a puck of unknown physics from a few hits, behind one small interface, and the one procedure that
measures them.

An :class:`AdaptationMethod` proposes hits (normalised VAE latents, one per goal) given where the puck stands
before each, and learns from the outcomes of the hits it asked to learn from. :func:`adaptation_curve` is the
test-time procedure every method follows on one puck (:class:`~mtrl_robot.tasks.puck.Task`): at steps
0..``steps`` the mean final distance of its proposals on ``eval_goals`` fresh goals (``explore=False``; these hits
are the measurement, the method never sees their outcomes), and between steps K = ``rollouts`` hits proposed with
``explore=True`` whose outcomes it receives (:meth:`AdaptationMethod.learn`). So every method spends the same
hits on learning, and a repeat's goals and puck starts are the same for every method (common random numbers).

:data:`METHODS` names the methods the evaluation (:mod:`mtrl_robot.learning.puck.evaluate`) can run: each is
built from a training run's folder, the world it will be measured in (for its geometry: goals, puck start, VAE
box; its hits are the procedure's, never the method's) and the run's config. :class:`PolicyMethod` is the
goal-conditioned policy adapted by inner policy-gradient steps: the meta-policy and the domain-randomized baseline.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from mtrl_robot.learning.puck.presets import PuckMetaRLConfig
from mtrl_robot.learning.puck.train import BASELINE_FILE, META_FILE, load_policy
from mtrl_robot.meta.policy_gradient_maml import (
    Batch,
    Params,
    adapt,
    advantages,
    detached,
    mean_action,
    meta_parameters,
    sample,
)
from mtrl_robot.meta.step_sizes import StepSizes
from mtrl_robot.models.policy import GaussianPolicy
from mtrl_robot.tasks.puck import HitBatch, PuckWorld, Task


class AdaptationMethod(ABC):
    """Hits a puck of unknown physics: proposes the next hits given the hits so far, receives their outcomes.

    A method that holds resources (a simulator of its own) releases them in :meth:`close`; ``with method:`` closes
    it on leaving, as the evaluation does.
    """

    def __enter__(self) -> AdaptationMethod:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:  # noqa: B027 - optional hook, most methods hold nothing to release
        """Release what the method holds; it proposes no hits afterwards."""

    @abstractmethod
    def begin(self, seed: int) -> None:
        """A new puck: forget every hit; ``seed`` seeds whatever the method draws at random."""

    @abstractmethod
    def propose(self, goals: np.ndarray, starts: np.ndarray, explore: bool) -> np.ndarray | torch.Tensor:
        """Normalised VAE latents (n, 2) for ``goals`` (n, 2) with the puck at ``starts`` (n, 2) before each hit;
        ``explore``: hits to learn from (their outcomes come to :meth:`learn`), else the method's best hits."""

    @abstractmethod
    def learn(self, hits: HitBatch) -> None:
        """The outcomes of the hits last proposed with ``explore=True`` (one adaptation step)."""


def adaptation_curve(method: AdaptationMethod, world: PuckWorld, task: Task, config: PuckMetaRLConfig, steps: int,
                     seed: int | list[int]) -> np.ndarray:
    """Mean final distance (m) of ``method``'s best hits on ``config.eval_goals`` fresh goals before each of
    ``steps`` adaptation steps and after; each step learns from ``config.rollouts`` exploratory hits."""
    rng = np.random.default_rng(seed)
    method.begin(int(rng.integers(2**62)))
    curve = []
    for h in range(steps + 1):
        goals = world.goals(config.eval_goals, rng)
        layout = world.layout(task, config.eval_goals, rng)
        curve.append(world.strike(layout, goals, method.propose(goals, layout.starts, explore=False)).distances.mean())
        if h < steps:
            goals = world.goals(config.rollouts, rng)
            layout = world.layout(task, config.rollouts, rng)
            method.learn(world.strike(layout, goals, method.propose(goals, layout.starts, explore=True)))
    return np.array(curve)


class PolicyMethod(AdaptationMethod):
    """A goal → latent Gaussian policy; each adaptation step is one inner policy-gradient step with its step sizes
    (:func:`~mtrl_robot.meta.policy_gradient_maml.adapt`) on the exploratory hits, sampled from the policy."""

    def __init__(self, policy: GaussianPolicy, lrs: StepSizes, config: PuckMetaRLConfig, world: PuckWorld):
        self.policy, self.config, self.world = policy, config, world
        self.rates = {name: rate.detach() for name, rate in lrs().items()}
        self.params: Params = detached(meta_parameters(policy))
        self.generator = torch.Generator()
        self._explored: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def begin(self, seed: int) -> None:
        self.generator.manual_seed(seed)
        self.params, self._explored = detached(meta_parameters(self.policy)), None

    def observe(self, goals: np.ndarray, starts: np.ndarray) -> torch.Tensor:
        """The policy's input (the puck's starts only if it was trained to see them; then a start not measured,
        NaN, is a ValueError)."""
        if not self.config.observe_start:
            return self.world.observe(goals, None)
        if not np.isfinite(starts).all():
            raise ValueError("the policy observes where the puck stands before each hit, but no measured start is "
                             "available")
        return self.world.observe(goals, starts)

    def propose(self, goals: np.ndarray, starts: np.ndarray, explore: bool) -> torch.Tensor:
        obs = self.observe(goals, starts)
        if not explore:
            return mean_action(self.policy, self.params, obs)
        actions, log_probs = sample(self.policy, self.params, obs, self.generator)
        self._explored = obs, actions, log_probs
        return actions

    def learn(self, hits: HitBatch) -> None:
        if self._explored is None or len(self._explored[0]) != len(hits.distances):
            raise ValueError("learn() takes the outcomes of the hits last proposed with explore=True")
        obs, actions, log_probs = self._explored
        rewards = torch.as_tensor(-hits.distances / self.config.reward_scale, dtype=torch.float32)
        batch = Batch(obs, actions, log_probs, advantages(obs, rewards))
        self.params = detached(adapt(self.policy, self.params, batch, self.rates, create_graph=False))
        self._explored = None


def _trained_policy(file: str) -> Callable[[Path, PuckWorld, PuckMetaRLConfig], PolicyMethod]:
    def build(run: Path, world: PuckWorld, config: PuckMetaRLConfig) -> PolicyMethod:
        trained = load_policy(run / file)
        return PolicyMethod(trained.policy, trained.lrs, trained.config, world)

    return build


def _system_id(run: Path, world: PuckWorld, config: PuckMetaRLConfig) -> AdaptationMethod:
    from mtrl_robot.learning.puck.system_id import build  # here: it builds on this module

    return build(run, world, config)


def _history_policy(run: Path, world: PuckWorld, config: PuckMetaRLConfig) -> AdaptationMethod:
    from mtrl_robot.learning.puck.history_policy import build  # here: it builds on this module

    return build(run, world, config)


MethodBuilder = Callable[[Path, PuckWorld, PuckMetaRLConfig], AdaptationMethod]
METHODS: dict[str, MethodBuilder] = {  # name -> builder from (run folder, world, the run's config)
    "meta": _trained_policy(META_FILE),
    "baseline": _trained_policy(BASELINE_FILE),
    "sysid": _system_id,  # learning/puck/system_id.py: CEM over the randomized friction and mass
    "history": _history_policy,  # learning/puck/history_policy.py (mtrl-robot puck train-history RUN first)
}
