"""Test-time adaptation of a puck-hitting policy: a few inner policy-gradient steps on hits of one puck.

:func:`adapt_policy` is the procedure, on any :class:`~mtrl_robot.tasks.puck.PuckWorld` (simulated or a real
arm): the test-time procedure of every method (:func:`~mtrl_robot.learning.puck.methods.adaptation_curve`) with
the policy as the method (:class:`~mtrl_robot.learning.puck.methods.PolicyMethod`): at steps 0..``steps`` the
mean final distance of the policy's mean action on ``eval_goals`` fresh goals, and between steps K = ``rollouts``
exploratory hits and one inner step (the policy's learned or tuned step sizes); it also returns the adapted
parameters, which the puck node (:mod:`mtrl_robot.ros.puck_node`) keeps.

:func:`adapt_trained` adapts a trained policy on any world; :func:`adapt` (``mtrl-robot puck adapt``) does it for
one fixed condition of the simulated puck table and writes the adapted policy file (atomically; read it with
:func:`~mtrl_robot.learning.puck.train.load_policy`), as the puck node does for a real arm (``policy_file``).
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import numpy as np

from mtrl_robot.core.torch_threads import torch_threads
from mtrl_robot.learning.puck.methods import PolicyMethod, adaptation_curve
from mtrl_robot.learning.puck.train import (
    BASELINE_FILE,
    META_FILE,
    VAE_FILE,
    PuckMetaRLConfig,
    TrainedPolicy,
    load_policy,
    save_policy,
    simulated_world,
)
from mtrl_robot.meta.policy_gradient_maml import Params
from mtrl_robot.meta.step_sizes import StepSizes
from mtrl_robot.models.hitting_vae import HittingVAE
from mtrl_robot.models.policy import GaussianPolicy
from mtrl_robot.tasks.puck import PuckHittingEnv, PuckWorld, Task, condition_task

POLICY_FILES = {"meta": META_FILE, "baseline": BASELINE_FILE}
ADAPT_STREAM = 4  # seed stream of adaptation (training uses the run's seed, tuning 1 and 2, the evaluation 3)


def adapt_policy(policy: GaussianPolicy, lrs: StepSizes, world: PuckWorld, task: Task,
                 config: PuckMetaRLConfig, steps: int, seed: int | list[int]) -> tuple[np.ndarray, Params]:
    """Mean final distance (m) of the policy's mean action on fresh goals before each of ``steps`` inner steps and
    after (:func:`~mtrl_robot.learning.puck.methods.adaptation_curve`), and the adapted parameters."""
    method = PolicyMethod(policy, lrs, config, world)
    return adaptation_curve(method, world, task, config, steps, seed), method.params


def adapt_trained(trained: TrainedPolicy, world: PuckWorld, task: Task, config: PuckMetaRLConfig, steps: int,
                  seed: int | list[int]) -> tuple[TrainedPolicy, np.ndarray]:
    """``trained`` adapted with :func:`adapt_policy` (its step sizes, config and history kept) and the curve."""
    curve, params = adapt_policy(trained.policy, trained.lrs, world, task, config, steps, seed)
    policy = copy.deepcopy(trained.policy)
    policy.load_state_dict({**policy.state_dict(), **{name: p.detach() for name, p in params.items()}})
    return TrainedPolicy(trained.kind, trained.config, policy, trained.lrs, trained.history), curve


def adapt(run_dir: str | Path, out: str | Path, condition: str, steps: int, policy: str = "meta", seed: int = 0,
          rollouts: int | None = None) -> tuple[Path, np.ndarray]:
    """Adapt the ``policy`` (meta or baseline) of a run to ``condition`` with ``steps`` inner steps of K hits each
    (K: ``rollouts``, default the run's); write the adapted policy to ``out``. Returns ``out`` and the curve (m)."""
    if policy not in POLICY_FILES:
        raise ValueError(f"policy must be one of {', '.join(POLICY_FILES)}, got {policy!r}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if rollouts is not None and rollouts < 2:
        raise ValueError(f"rollouts must be at least 2, got {rollouts}")
    task = condition_task(condition)
    run = Path(run_dir)
    trained = load_policy(run / POLICY_FILES[policy])
    config = trained.config if rollouts is None else replace(trained.config, rollouts=rollouts)
    env = PuckHittingEnv(config.arm, motion_vae=HittingVAE.load(run / VAE_FILE))
    try:
        with torch_threads(1):
            adapted, curve = adapt_trained(trained, simulated_world(env, config), task, config, steps,
                                           [config.seed, ADAPT_STREAM, seed])
    finally:
        env.close()
    return save_policy(adapted, out), curve
