"""Probabilistic MAML: MAML whose model also sees a low-dimensional latent task variable z.

An amortised encoder q(z | support set) -- an MLP on each (x, y) pair, mean-pooled, so the order of the
support points does not matter -- gives a diagonal Gaussian over z. The model takes ``cat(x, z)`` as input,
so it must be built with ``x_dim + latent_dim`` inputs. For each task of a meta-batch, z is drawn from q
(reparameterised), the model is adapted on the support set with the usual inner loop, and the meta-loss is
the query loss plus ``kl_weight`` times KL(q(z | support) || N(0, I)). Few shots leave z uncertain: drawing
several z, adapting for each and predicting gives a predictive mean and spread (``predict_distribution``).

The draws alone are overconfident: the KL-regularised encoder and the inner loop pull them together, and they leave
out what no latent explains. A :class:`SpreadCalibration` (fitted on validation tasks, set as
``spread_calibration``) widens them into a calibrated predictive distribution: per number of support points K, the
draws' deviations from their mean are scaled by ``scale`` (a variance inflation) and output noise of scale ``noise``
is added (in the model's output units, the same for every output), i.e. the mixture over the draws of
ȳ + scale · (y_z − ȳ) + noise · ε. The noise ε is standard normal, or, with ``noise_dof``, a multivariate Student-t
(:func:`noise_draws`): mostly small, now and then large in every output of a point at once, for errors with heavier
tails than a Gaussian's. Between the fitted K scale and noise are interpolated linearly, beyond them the nearest
fitted K's are kept.

This is in the spirit of Bayesian meta-learning (PLATIPUS, Finn et al., 2018; neural processes, Garnelo et
al., 2018), kept deliberately simple: the latent is inferred by the encoder, not adapted by the inner loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import vmap

from mtrl_robot.meta.guard import STEP_SCALES
from mtrl_robot.meta.maml import MAML, LossFn, MAMLConfig, Params, TaskBatch
from mtrl_robot.models.gaussian import kl_to_standard_normal, split_gaussian
from mtrl_robot.models.mlp import mlp

LATENT = "latent:z"  # the key under which adapt() returns z with the parameters (no module name has a ':')


def widen(samples: Tensor, scale: float, noise: float, standard_noise: Tensor) -> Tensor:
    """Draws (num_samples, ...) → their mean plus ``scale`` times each draw's deviation from it, plus ``noise`` times
    ``standard_noise`` (of the draws' shape)."""
    mean = samples.mean(dim=0, keepdim=True)
    return mean + scale * (samples - mean) + noise * standard_noise


def noise_draws(shape: tuple[int, ...], dof: int | None, generator: torch.Generator,
                 dtype: torch.dtype = torch.float32) -> Tensor:
    """Standard output noise for draws of ``shape`` (..., outputs): normal (``dof`` None), or Student-t with ``dof``
    degrees of freedom, the normal vector of each point divided by one sqrt(χ²_dof / dof) for all its outputs."""
    normal = torch.randn(shape, generator=generator, dtype=dtype)
    if dof is None:
        return normal
    chi2 = torch.randn((dof, *shape[:-1], 1), generator=generator, dtype=dtype).square().sum(dim=0)
    return normal * (dof / chi2).sqrt()


@dataclass(frozen=True)
class SpreadCalibration:
    """Per number of support points ``ks`` (ascending), the ``scales`` and ``noises`` of :func:`widen`; the output
    noise is Student-t with ``noise_dof`` degrees of freedom (None: Gaussian)."""

    ks: tuple[int, ...]
    scales: tuple[float, ...]
    noises: tuple[float, ...]
    noise_dof: int | None = None

    def __post_init__(self):
        if not self.ks or len(self.scales) != len(self.ks) or len(self.noises) != len(self.ks):
            raise ValueError(f"a spread calibration needs one scale and one noise per K, got ks {list(self.ks)}, "
                             f"scales {list(self.scales)}, noises {list(self.noises)}")
        if list(self.ks) != sorted(set(self.ks)) or min(self.ks) < 0:
            raise ValueError(f"a spread calibration's ks must be distinct numbers >= 0 in order, got {list(self.ks)}")
        if not all(math.isfinite(v) and v > 0 for v in self.scales):
            raise ValueError(f"a spread calibration's scales must be finite and positive, got {list(self.scales)}")
        if not all(math.isfinite(v) and v >= 0 for v in self.noises):
            raise ValueError(f"a spread calibration's noises must be finite and >= 0, got {list(self.noises)}")
        if self.noise_dof is not None and (isinstance(self.noise_dof, bool) or not isinstance(self.noise_dof, int)
                                           or self.noise_dof < 1):
            raise ValueError(f"a spread calibration's noise_dof must be a whole number >= 1 or None (Gaussian), got "
                             f"{self.noise_dof!r}")

    def at(self, k: int) -> tuple[float, float]:
        """(scale, noise) for K support points."""
        return (float(np.interp(k, self.ks, self.scales)), float(np.interp(k, self.ks, self.noises)))

    def to_dict(self) -> dict[str, list | int | None]:
        return {"ks": list(self.ks), "scales": list(self.scales), "noises": list(self.noises),
                "noise_dof": self.noise_dof}

    @classmethod
    def from_dict(cls, data: dict[str, Sequence]) -> SpreadCalibration:
        """The inverse of :meth:`to_dict` (without ``noise_dof``: Gaussian noise); ValueError for anything else."""
        try:
            return cls(tuple(int(k) for k in data["ks"]), tuple(float(v) for v in data["scales"]),
                       tuple(float(v) for v in data["noises"]), data.get("noise_dof"))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a spread calibration (ks, scales, noises, noise_dof): {exc}") from None


class SetEncoder(nn.Module):
    """q(z | support set): a shared MLP on each (x, y) pair, mean-pooled, then the mean and log-variance of z."""

    def __init__(self, pair_dim: int, hidden: int, latent_dim: int):
        super().__init__()
        self.pair = mlp([pair_dim, hidden, hidden], activation=nn.ReLU, final_activation=True)
        self.head = nn.Linear(hidden, 2 * latent_dim)

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        pooled = self.pair(torch.cat([x, y], dim=-1)).mean(dim=-2)
        return split_gaussian(self.head(pooled))


class ProbabilisticMAML(MAML):
    """MAML with a latent task variable; same API as ``MAML`` plus ``encode`` and ``predict_distribution``."""

    uses_latent = True

    def __init__(self, model: nn.Module, x_dim: int, y_dim: int, loss_fn: LossFn = F.mse_loss,
                 config: MAMLConfig | None = None):
        config = config if config is not None else MAMLConfig(latent_dim=4)
        if config.latent_dim < 1:
            raise ValueError(f"ProbabilisticMAML needs MAMLConfig.latent_dim >= 1, got {config.latent_dim}")
        self.x_dim, self.y_dim = x_dim, y_dim
        self.spread_calibration: SpreadCalibration | None = None  # None: the raw latent draws
        super().__init__(model, loss_fn, config)

    def _meta_modules(self) -> dict[str, nn.Module]:
        with torch.random.fork_rng():  # the encoder's initial weights follow config.seed, not the global RNG
            torch.manual_seed(self.config.seed)
            encoder = SetEncoder(self.x_dim + self.y_dim, self.config.encoder_hidden, self.config.latent_dim)
        return {**super()._meta_modules(), "encoder": encoder}

    def encode(self, support_x: Tensor, support_y: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of q(z | support set); leading batch dimensions are kept."""
        return self.meta["encoder"](support_x, support_y)

    def _sample(self, mean: Tensor, log_var: Tensor, num: tuple[int, ...] = ()) -> Tensor:
        noise = torch.randn((*num, *mean.shape), generator=self.generator, dtype=mean.dtype)
        return mean + (0.5 * log_var).exp() * noise

    @staticmethod
    def _condition(x: Tensor, z: Tensor) -> Tensor:
        """``cat(x, z)`` for every point: x is (..., points, x_dim), z is (..., latent_dim)."""
        return torch.cat([x, z.unsqueeze(-2).expand(*x.shape[:-1], -1)], dim=-1)

    def meta_loss(self, tasks: TaskBatch) -> Tensor:
        """Query loss after adaptation with z ~ q(z | support), plus ``kl_weight`` times the KL to N(0, I)."""
        mean, log_var = self.encode(tasks.support_x, tasks.support_y)
        z = self._sample(mean, log_var)
        query = self._query_losses(self._condition(tasks.support_x, z), tasks.support_y,
                                   self._condition(tasks.query_x, z), tasks.query_y, tasks.task_ids).mean()
        return query + self.config.kl_weight * kl_to_standard_normal(mean, log_var)

    def adapt(self, support_x: Tensor, support_y: Tensor, steps: int | None = None, step_scale: float = 1.0,
              sample: bool = False) -> Params:
        """Adapted parameters for one task, with z (the posterior mean, or a draw) under the key ``LATENT``."""
        mean, log_var = self.encode(support_x, support_y)
        z = self._sample(mean, log_var) if sample else mean
        return {**super().adapt(self._condition(support_x, z), support_y, steps, step_scale), LATENT: z}

    def unadapted(self) -> Params:
        """The meta-trained initialisation with z at the prior's mean (0), as the model predicts with no demos."""
        return {**self.params(), LATENT: torch.zeros(self.config.latent_dim)}

    def predict(self, params: Params, x: Tensor) -> Tensor:
        """The model's output for x with the parameters and latent returned by ``adapt``."""
        params = dict(params)
        z = params.pop(LATENT)
        return self._call(params, self._condition(x, z))

    def predictive_samples(self, support_x: Tensor, support_y: Tensor, x: Tensor, num_samples: int = 32,
                           steps: int | None = None, calibrated: bool = True, step_scale: float = 1.0) -> Tensor:
        """Predictions at x (num_samples, ...) for draws of z from q(z | support), each adapted separately with the
        step sizes times ``step_scale`` (what :func:`~mtrl_robot.meta.guard.guarded_adapt` kept); with an empty
        support set (K = 0) or ``step_scale`` 0 (the guard fell back to the initialisation) z comes from the prior
        N(0, I) and nothing is adapted. A draw far in the posterior's tail can make the steps diverge: a draw whose
        prediction is NaN or inf is adapted again with the guard's smaller steps in turn, and left unadapted when
        every one diverges. With ``calibrated`` and a ``spread_calibration``, the draws are widened by it
        (:meth:`calibrate`)."""
        steps = self.config.inner_steps if steps is None else steps
        params = self.params()

        def predictions(z: Tensor, scale: float) -> Tensor:
            if scale == 0.0:
                return vmap(lambda z: self._call(params, self._condition(x, z)))(z)

            def one_draw(z: Tensor) -> Tensor:
                adapted = self._adapt(params, self._condition(support_x, z), support_y, steps, scale)
                return self._call(adapted, self._condition(x, z))

            return vmap(one_draw, randomness="different")(z)

        if support_x.shape[-2] == 0 or step_scale == 0.0:
            z = torch.randn((num_samples, self.config.latent_dim), generator=self.generator, dtype=x.dtype)
            draws = predictions(z, 0.0)
        else:
            z = self._sample(*self.encode(support_x, support_y), (num_samples,))
            draws = predictions(z, step_scale)
            for smaller in (*(step_scale * s for s in STEP_SCALES[1:]), 0.0):
                diverged = ~torch.isfinite(draws).flatten(1).all(dim=1)
                if not diverged.any():
                    break
                draws = draws.clone()
                draws[diverged] = predictions(z[diverged], smaller)
        return self.calibrate(draws, support_x.shape[-2]) if calibrated else draws

    def calibrate(self, draws: Tensor, k: int, output_noise: bool = True) -> Tensor:
        """Raw predictive draws after K support points, widened by ``spread_calibration`` (unchanged without one);
        the output noise comes from this learner's generator. Without ``output_noise`` only the draws' spread is
        scaled: the part of the spread that more support points can shrink."""
        calibration = self.spread_calibration
        if calibration is None:
            return draws
        scale, noise = calibration.at(k)
        if not output_noise:
            return widen(draws, scale, 0.0, torch.zeros_like(draws))
        return widen(draws, scale, noise, noise_draws(draws.shape, calibration.noise_dof, self.generator, draws.dtype))

    def predict_distribution(self, support_x: Tensor, support_y: Tensor, x: Tensor, num_samples: int = 32,
                             steps: int | None = None) -> tuple[Tensor, Tensor]:
        """Predictive mean and standard deviation at x over ``num_samples`` draws of z, calibrated when the learner
        has a ``spread_calibration`` (:meth:`predictive_samples`). With heavy-tailed (Student-t) output noise the
        standard deviation is that of these draws and varies from call to call; intervals come from the draws."""
        predictions = self.predictive_samples(support_x, support_y, x, num_samples, steps)
        return predictions.mean(dim=0), predictions.std(dim=0)
