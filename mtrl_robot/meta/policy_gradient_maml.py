"""Policy-gradient MAML in plain torch: a functional policy-gradient step and a PPO-clip outer loss, for a policy
like :class:`~mtrl_robot.models.policy.GaussianPolicy` (obs → mean action and log standard deviation).

A task is a bandit: an observation in, one action out, one reward back (an episode of one step). For a batch of
K such episodes sampled from the policy with parameters θ_old:

- **Advantages** (:func:`advantages`): the rewards minus a linear baseline in the observation, fitted to the
  batch itself by ridge least squares on ``[1, obs]``; it removes the part of the reward that the observation
  alone explains (e.g. far goals are harder than near ones).
- **Inner step** (:func:`adapt`): θ' = θ − α ⊙ ∇θ L_in(θ) with ``L_in(θ) = −mean(π_θ(a)/π_old(a) · A)``. At
  θ = θ_old its gradient is the REINFORCE estimate; its second derivative carries the term
  ∇log π ∇log π^T · A that accounts for the samples depending on θ (ProMP's low-variance curvature, Rothfuss et
  al., 2019). With ``create_graph`` the step is differentiable (second-order MAML), without it first-order.
- **Step sizes**: α per parameter element from :class:`~mtrl_robot.meta.step_sizes.StepSizes`, learnable
  (Meta-SGD, Li et al., 2017) or fixed.
- **Outer loss** (:func:`clip_loss`): PPO's clipped surrogate (Schulman et al., 2017) of the adapted policy on
  the batches sampled with the adapted parameters; gradients flow back through the inner steps.

Functions take the parameters as a dict (``torch.func.functional_call``), so the same module serves the
meta-parameters and every adapted copy of them.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.func import functional_call

Params = dict[str, Tensor]
RIDGE = 1e-3  # regularisation of the linear baseline's least squares


class Batch(NamedTuple):
    """K one-step episodes of one task, sampled with one set of parameters."""

    obs: Tensor  # (K, obs_dim)
    actions: Tensor  # (K, act_dim)
    log_probs: Tensor  # (K,) under the parameters that sampled the actions
    advantages: Tensor  # (K,)


def meta_parameters(policy: nn.Module) -> Params:
    """The policy's parameters by name (with their autograd graph: the meta-parameters)."""
    return dict(policy.named_parameters())


def detached(params: Params) -> Params:
    """A graph-free copy that still accepts gradients (for rollouts and adaptation without meta-gradients)."""
    return {name: p.detach().requires_grad_() for name, p in params.items()}


def log_prob(policy: nn.Module, params: Params, obs: Tensor, actions: Tensor) -> Tensor:
    """log π_params(actions | obs), summed over action dimensions: (K,)."""
    mean, log_std = functional_call(policy, params, (obs,))
    return torch.distributions.Normal(mean, log_std.exp()).log_prob(actions).sum(-1)


@torch.no_grad()
def sample(policy: nn.Module, params: Params, obs: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Actions drawn from π_params(· | obs) with ``generator``, and their log-probabilities."""
    mean, log_std = functional_call(policy, params, (obs,))
    actions = mean + log_std.exp() * torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
    if not torch.all(torch.isfinite(actions)):
        raise FloatingPointError("the policy produced non-finite actions (diverged parameters?)")
    return actions, log_prob(policy, params, obs, actions)


@torch.no_grad()
def mean_action(policy: nn.Module, params: Params, obs: Tensor) -> Tensor:
    """The policy's mean action (its deterministic choice)."""
    return functional_call(policy, params, (obs,))[0]


def advantages(obs: Tensor, rewards: Tensor) -> Tensor:
    """Rewards minus their ridge least-squares fit on ``[1, obs]`` over the batch."""
    features = torch.cat([torch.ones(len(obs), 1, dtype=obs.dtype), obs], dim=1)
    gram = features.T @ features + RIDGE * torch.eye(features.shape[1], dtype=obs.dtype)
    weights = torch.linalg.solve(gram, features.T @ rewards)
    return rewards - features @ weights


def inner_loss(policy: nn.Module, params: Params, batch: Batch) -> Tensor:
    """−mean(π_θ(a)/π_old(a) · A): the policy gradient at θ_old, with the low-variance curvature term."""
    ratio = (log_prob(policy, params, batch.obs, batch.actions) - batch.log_probs).exp()
    return -(ratio * batch.advantages).mean()


def adapt(policy: nn.Module, params: Params, batch: Batch, lrs: dict[str, Tensor], create_graph: bool) -> Params:
    """One inner policy-gradient step on ``batch``; differentiable through the step when ``create_graph``."""
    loss = inner_loss(policy, params, batch)
    grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
    if not all(torch.all(torch.isfinite(g)) for g in grads):
        raise FloatingPointError("non-finite inner policy gradient")
    return {name: p - lrs[name] * g for (name, p), g in zip(params.items(), grads, strict=True)}


def clip_loss(policy: nn.Module, params: Params, batch: Batch, clip: float) -> Tensor:
    """PPO's clipped surrogate, negated: −mean(min(r·A, clip(r, 1 ± ε)·A)) with r = π_params(a)/π_old(a)."""
    ratio = (log_prob(policy, params, batch.obs, batch.actions) - batch.log_probs).exp()
    unclipped, clipped = ratio * batch.advantages, ratio.clamp(1 - clip, 1 + clip) * batch.advantages
    return -torch.minimum(unclipped, clipped).mean()
