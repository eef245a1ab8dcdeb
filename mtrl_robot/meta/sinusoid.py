"""The sinusoid regression tasks of Finn et al. (2017): y = A sin(x - phase) with a random A and phase per task."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from mtrl_robot.meta.maml import TaskBatch, TaskSampler
from mtrl_robot.models.mlp import mlp


@dataclass
class SinusoidTasks:
    amplitude: tuple[float, float] = (0.1, 5.0)  # A ~ U[0.1, 5]
    phase: tuple[float, float] = (0.0, math.pi)  # phase ~ U[0, pi]
    x_range: tuple[float, float] = (-5.0, 5.0)  # x ~ U[-5, 5]

    def sample(self, num_tasks: int, support_size: int, query_size: int, generator: torch.Generator) -> TaskBatch:
        """``num_tasks`` fresh tasks, each with its own support and query points, shaped (tasks, points, 1)."""

        def uniform(bounds: tuple[float, float], *shape: int) -> torch.Tensor:
            return bounds[0] + (bounds[1] - bounds[0]) * torch.rand(shape, generator=generator)

        amplitude, phase = uniform(self.amplitude, num_tasks, 1, 1), uniform(self.phase, num_tasks, 1, 1)
        x = uniform(self.x_range, num_tasks, support_size + query_size, 1)
        y = amplitude * torch.sin(x - phase)
        return TaskBatch(x[:, :support_size], y[:, :support_size], x[:, support_size:], y[:, support_size:])

    def sampler(self, support_size: int | tuple[int, int], query_size: int) -> TaskSampler:
        """A sampler for ``MAML.fit``; a (low, high) support size draws K uniformly in [low, high] per meta-batch."""

        def sample(num_tasks: int, generator: torch.Generator) -> TaskBatch:
            k = support_size
            if isinstance(k, tuple):
                k = int(torch.randint(k[0], k[1] + 1, (), generator=generator))
            return self.sample(num_tasks, k, query_size, generator)

        return sample


def make_mlp(in_dim: int = 1, hidden: int = 40, out_dim: int = 1, seed: int = 0) -> nn.Sequential:
    """The regressor of Finn et al. (2017): two hidden ReLU layers of 40 units, initialised from ``seed``."""
    with torch.random.fork_rng(devices=[]):  # leaves the global random state as it was
        torch.manual_seed(seed)
        return mlp([in_dim, hidden, hidden, out_dim], activation=nn.ReLU)
