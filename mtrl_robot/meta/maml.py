"""Model-agnostic meta-learning (Finn et al., 2017) for any ``torch.nn.Module`` and any loss, on ``torch.func``.

A task is a support set and a query set. The inner loop takes a few gradient steps on the support set,
starting from the meta-parameters; the outer loop moves the meta-parameters (Adam) so that the adapted
parameters do well on the query set. Second-order MAML differentiates through the inner gradients,
first-order MAML treats them as constants, and Meta-SGD (Li et al., 2017) also learns the inner step sizes,
one per parameter tensor or one per element.

The tasks of a meta-batch are adapted together with ``torch.func.vmap``, not in a Python loop over tasks
(``mtrl-robot bench meta`` times a meta-step against the same MAML written with the ``higher`` library, one task at
a time).
Buffers that change in the forward pass (batch norm in training mode) are not supported under ``vmap``.

Only parameters with ``requires_grad`` are meta-learned; the others stay as they are. The inner loop adapts all
of them, or with ``MAMLConfig.adapt_only`` only those whose names start with one of its prefixes (e.g. a head or a
decoder); the rest are then meta-learned but shared by every task, as in ANIL (Raghu et al., 2020).

The inner loop always fits the support set with the loss function. The query (outer) loss is the same loss unless a
``query_loss`` is given: a function of every task's query predictions, query set and task ids (``TaskBatch.task_ids``,
from the sampler), e.g. a loss that uses what is known about each training task but not at adaptation time.

When every adapted parameter is the weight or bias of an ``nn.Linear`` and the inner step sizes are not per element,
the meta-loss need not build a task's adapted weight matrices. A gradient step changes such a layer's weight by
``−α Dᵀ X`` (X: the layer's inputs on the support set, D: the loss gradient with respect to its outputs) and its
bias by ``−α Σ D``, so the adapted layer's output on an input u is the meta-trained one minus ``α (u Xᵀ) D`` and
``α Σ D`` summed over the steps taken: products with factors of (steps × support points) rows instead of a
(tasks, outputs, inputs) weight tensor per step and its backward pass, and all tasks go through the model as one
batch. The meta-loss takes this way when the factors are the smaller (steps × support points × (inputs + outputs)
≤ inputs × outputs, summed over the layers). The function is the same; only the floating-point rounding differs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from mtrl_robot.core.atomic import write_atomic
from mtrl_robot.core.torch_files import CheckpointError, load_torch_file
from mtrl_robot.meta.step_sizes import STEP_SIZE_MODES, StepSizes

Params = dict[str, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]  # (prediction, target) -> scalar
# (predictions (tasks, points, outputs), query_x, query_y, task_ids or None) -> each task's query loss (tasks,)
QueryLossFn = Callable[[Tensor, Tensor, Tensor, Tensor | None], Tensor]

FORMAT = "mtrl_robot.meta"  # checkpoint format tag
VERSION = 1


@dataclass
class MAMLConfig:
    inner_steps: int = 1  # gradient steps on the support set
    inner_lr: float = 0.01  # inner step size (the initial value when learned)
    first_order: bool = False  # treat inner gradients as constants (FOMAML)
    learn_inner_lr: str = "none"  # Meta-SGD: "none", "per_tensor" or "per_element"
    outer_lr: float = 1e-3  # Adam step size on the meta-parameters
    meta_batch_size: int = 25  # tasks per meta-step in fit()
    seed: int = 0  # task sampling and latent noise
    # probabilistic variant: latent_dim > 0 selects ProbabilisticMAML (see mtrl_robot.meta.make_meta_learner)
    latent_dim: int = 0  # size of the latent task variable z
    kl_weight: float = 0.1  # beta, the weight of KL(q(z | support) || N(0, I)) in the meta-loss
    encoder_hidden: int = 64  # width of the support-set encoder
    adapt_only: tuple[str, ...] = ()  # name prefixes of the parameters the inner loop adapts; empty: all

    def __post_init__(self) -> None:
        problems = []
        if isinstance(self.adapt_only, str) or not all(isinstance(p, str) and p for p in self.adapt_only):
            problems.append(f"adapt_only must be a list of parameter-name prefixes, got {self.adapt_only!r}")
        else:
            self.adapt_only = tuple(self.adapt_only)
        if self.inner_steps < 0:
            problems.append(f"inner_steps must be >= 0, got {self.inner_steps}")
        if not self.inner_lr > 0:
            problems.append(f"inner_lr must be > 0, got {self.inner_lr}")
        if self.learn_inner_lr not in STEP_SIZE_MODES:
            problems.append(f"learn_inner_lr must be one of {STEP_SIZE_MODES}, got {self.learn_inner_lr!r}")
        if not self.outer_lr > 0:
            problems.append(f"outer_lr must be > 0, got {self.outer_lr}")
        if self.meta_batch_size < 1:
            problems.append(f"meta_batch_size must be >= 1, got {self.meta_batch_size}")
        if self.latent_dim < 0 or self.encoder_hidden < 1 or self.kl_weight < 0:
            problems.append("latent_dim must be >= 0, encoder_hidden >= 1 and kl_weight >= 0")
        if problems:
            raise ValueError("MAMLConfig: " + "; ".join(problems))


class TaskBatch(NamedTuple):
    """A meta-batch: every tensor has a leading task dimension, then points, then features."""

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor
    task_ids: Tensor | None = None  # (tasks,) which task each is, for a query_loss that needs per-task data


TaskSampler = Callable[[int, torch.Generator], TaskBatch]  # (number of tasks, generator) -> meta-batch


class MAML:
    """Meta-learns the initial parameters of ``model`` (and, with Meta-SGD, its inner step sizes).

    ``query_loss`` (None: ``loss_fn`` on each task's query set) is only used by the meta-loss, so it may be set on a
    learner loaded from a checkpoint to train it on.
    """

    uses_latent: ClassVar[bool] = False

    def __init__(self, model: nn.Module, loss_fn: LossFn = F.mse_loss, config: MAMLConfig | None = None,
                 query_loss: QueryLossFn | None = None):
        self.config = config if config is not None else MAMLConfig()
        if self.config.latent_dim > 0 and not self.uses_latent:
            raise ValueError("MAMLConfig.latent_dim > 0 selects ProbabilisticMAML; build it with make_meta_learner")
        self.model, self.loss_fn, self.query_loss = model, loss_fn, query_loss
        self.names = _adapted_names(model, self.config.adapt_only)
        self.linears = _adapted_linears(model, self.names) if self.config.learn_inner_lr != "per_element" else None
        self.meta = nn.ModuleDict(self._meta_modules())
        self.optimizer = torch.optim.Adam(self.meta.parameters(), lr=self.config.outer_lr, foreach=True)
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self.step = 0

    def _meta_modules(self) -> dict[str, nn.Module]:
        """Everything the outer loop learns: the model and, with Meta-SGD, the inner step sizes."""
        return {"model": self.model,
                "inner_lrs": StepSizes(self.params(), self.config.inner_lr, self.config.learn_inner_lr)}

    # ---- the algorithm

    def params(self) -> Params:
        """The meta-parameters that the inner loop adapts."""
        named = dict(self.model.named_parameters())
        return {name: named[name] for name in self.names}

    def inner_lrs(self) -> dict[str, Tensor | float]:
        """The inner step size of each adapted parameter tensor (learned tensors with Meta-SGD)."""
        return self.meta["inner_lrs"]()

    def _call(self, params: Params, x: Tensor) -> Tensor:
        return functional_call(self.model, params, (x,))

    def _adapt(self, params: Params, x: Tensor, y: Tensor, steps: int, step_scale: float = 1.0) -> Params:
        """``steps`` gradient steps on (x, y), each step size times ``step_scale``; differentiable w.r.t. the
        starting parameters and the step sizes."""

        def support_loss(p: Params) -> Tensor:
            return self.loss_fn(self._call(p, x), y)

        lrs = self.inner_lrs()
        if step_scale != 1.0:
            lrs = {name: step_scale * lr for name, lr in lrs.items()}
        for _ in range(steps):
            grads = grad(support_loss)(params)
            if self.config.first_order:
                grads = {name: g.detach() for name, g in grads.items()}
            params = {name: p - lrs[name] * grads[name] for name, p in params.items()}
        return params

    def adapt(self, support_x: Tensor, support_y: Tensor, steps: int | None = None,
              step_scale: float = 1.0) -> Params:
        """Parameters adapted to one task's support set (step sizes times ``step_scale``); under
        ``torch.no_grad()`` they carry no graph."""
        return self._adapt(self.params(), support_x, support_y, self.config.inner_steps if steps is None else steps,
                           step_scale)

    def unadapted(self) -> Params:
        """What ``adapt`` returns without adapting: the meta-trained initialisation, for ``predict``."""
        return self.params()

    def predict(self, params: Params, x: Tensor) -> Tensor:
        """The model's output with ``params`` (e.g. from ``adapt``)."""
        return self._call(params, x)

    def _query_losses(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor,
                      task_ids: Tensor | None = None) -> Tensor:
        """Each task's query loss after adaptation on its support set, all tasks at once."""
        params, steps = self.params(), self.config.inner_steps

        def task_prediction(sx: Tensor, sy: Tensor, qx: Tensor) -> Tensor:
            return self._call(self._adapt(params, sx, sy, steps), qx)

        def task_loss(sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor) -> Tensor:
            return self.loss_fn(task_prediction(sx, sy, qx), qy)

        if self._factors_pay(support_x.shape[-2]):
            return self._factored_query_losses(support_x, support_y, query_x, query_y, task_ids)
        if self.query_loss is None:
            return vmap(task_loss, randomness="different")(support_x, support_y, query_x, query_y)
        predictions = vmap(task_prediction, randomness="different")(support_x, support_y, query_x)
        return self.query_loss(predictions, query_x, query_y, task_ids)

    def _factors_pay(self, support_points: int) -> bool:
        """Whether the adapted layers can be factored and their factors are smaller than their weights."""
        if self.linears is None:
            return False
        layers = [adapted.layer for adapted in self.linears.values()]
        rank = self.config.inner_steps * support_points
        return rank * sum(a.in_features + a.out_features for a in layers) <= sum(a.in_features * a.out_features
                                                                               for a in layers)

    def _factored_query_losses(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor,
                               task_ids: Tensor | None = None) -> Tensor:
        """:meth:`_query_losses` with every adapted linear layer kept as its meta-trained weights plus the factors of
        its updates (see the module docstring); the tasks go through the model as one batch (a leading dimension)."""
        lrs, task_losses = self.inner_lrs(), vmap(self.loss_fn)
        factors: dict[str, tuple[Tensor, Tensor]] = {}  # layer → X and D of every step taken, stacked along points
        for _ in range(self.config.inner_steps):
            zeros = {name: support_x.new_zeros(*support_x.shape[:-1], adapted.layer.out_features, requires_grad=True)
                     for name, adapted in self.linears.items()}
            inputs: Params = {}
            with torch.enable_grad():
                loss = task_losses(self._call_factored(support_x, lrs, factors, zeros, inputs), support_y).sum()
                output_grads = torch.autograd.grad(loss, list(zeros.values()), create_graph=not self.config.first_order)
            for name, d in zip(self.linears, output_grads, strict=True):
                x = inputs[name].detach() if self.config.first_order else inputs[name]
                factors[name] = (x, d) if name not in factors else \
                    (torch.cat([factors[name][0], x], dim=-2), torch.cat([factors[name][1], d], dim=-2))
        predictions = self._call_factored(query_x, lrs, factors)
        if self.query_loss is None:
            return task_losses(predictions, query_y)
        return self.query_loss(predictions, query_x, query_y, task_ids)

    def _call_factored(self, x: Tensor, lrs: dict[str, Tensor | float], factors: dict[str, tuple[Tensor, Tensor]],
                       perturbations: Params | None = None, inputs: Params | None = None) -> Tensor:
        """The model on x (tasks, points, features) with its adapted linear layers updated by the steps whose
        ``factors`` (X, D) are given; each such layer's output plus its entry of ``perturbations`` (zeros whose
        gradient is D), its input recorded in ``inputs``."""

        def hook(name: str, weight: str | None, bias: str | None, layer: nn.Linear, args: tuple[Tensor, ...],
                 output: Tensor) -> Tensor:
            u = args[0]
            if inputs is not None:
                if name in inputs:
                    raise ValueError(f"adapted layer {name} is called more than once per forward pass")
                inputs[name] = u
            if name in factors:
                xs, ds = factors[name]
                if weight is not None:
                    output = output - lrs[weight] * ((u @ xs.mT) @ ds)
                if bias is not None:
                    output = output - lrs[bias] * ds.sum(dim=-2, keepdim=True)
            if perturbations is not None:
                if perturbations[name].shape != output.shape:
                    raise ValueError(f"adapted layer {name} gives outputs of shape {tuple(output.shape)} for inputs "
                                     f"of shape {tuple(x.shape)}: each input row must give one output row")
                output = output + perturbations[name]
            return output

        handles = [adapted.layer.register_forward_hook(partial(hook, name, adapted.weight, adapted.bias))
                   for name, adapted in self.linears.items()]
        try:
            return self.model(x)
        finally:
            for handle in handles:
                handle.remove()

    def meta_loss(self, tasks: TaskBatch) -> Tensor:
        """Mean query loss over the meta-batch after adaptation, differentiable w.r.t. the meta-parameters."""
        return self._query_losses(*tasks).mean()

    def meta_step(self, tasks: TaskBatch) -> float:
        """One Adam step on the meta-parameters; returns the meta-loss before the step."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.meta_loss(tasks)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return loss.item()

    def fit(self, sample_tasks: TaskSampler, meta_steps: int) -> list[float]:
        """``meta_steps`` meta-steps, each on a fresh meta-batch drawn with this learner's seeded generator."""
        return [self.meta_step(sample_tasks(self.config.meta_batch_size, self.generator)) for _ in range(meta_steps)]

    # ---- state and checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: meta-parameters, optimiser, task generator, step count and config."""
        return {"format": FORMAT, "version": VERSION, "kind": type(self).__name__, "config": asdict(self.config),
                "step": self.step, "meta": self.meta.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any], source: str = "state") -> None:
        """Restore a ``state_dict()``; raises ``CheckpointError`` and changes nothing when it does not fit."""
        _check_header(state, source)
        if state.get("kind") != type(self).__name__:
            raise CheckpointError(f"{source}: holds a {state.get('kind')} learner, this is a {type(self).__name__}")
        try:
            config = MAMLConfig(**state["config"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{source}: invalid config: {e}") from e
        for key in ("learn_inner_lr", "adapt_only"):
            if getattr(config, key) != getattr(self.config, key):
                raise CheckpointError(f"{source}: {key} is {getattr(config, key)!r} in the checkpoint, "
                                      f"{getattr(self.config, key)!r} here")
        _check_shapes(state.get("meta"), self.meta.state_dict(), source)
        backup = copy.deepcopy(self.state_dict())
        try:
            self._restore(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            self._restore(backup)
            raise CheckpointError(f"{source}: cannot restore the optimiser or generator state: {e}") from e
        self.config = config

    def _restore(self, state: dict[str, Any]) -> None:
        self.meta.load_state_dict(state["meta"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.step = int(state["step"])

    def save_checkpoint(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write ``state_dict()`` plus ``extra`` atomically: a failed write leaves any old file untouched.

        ``extra`` may hold tensors, numbers, strings, lists and dicts (what ``weights_only`` loading accepts);
        the file is read back with :func:`~mtrl_robot.core.torch_files.load_torch_file` before it replaces the
        old one.
        """
        path = Path(path)
        state = {**self.state_dict(), "extra": extra or {}}

        def load_back(tmp: Path) -> None:
            try:
                load_torch_file(tmp)
            except CheckpointError as e:
                raise CheckpointError(f"{path}: would not load back (is there an object in extra, or NaN or inf?): "
                                      f"{e}") from e

        return write_atomic(path, lambda f: torch.save(state, f), verify=load_back)

    def load_checkpoint(self, path: str | Path) -> dict[str, Any]:
        """Restore a checkpoint written by ``save_checkpoint``; returns its ``extra``."""
        state = read_checkpoint(path)
        self.load_state_dict(state, source=str(path))
        return state.get("extra", {})


def _adapted_names(model: nn.Module, prefixes: tuple[str, ...]) -> list[str]:
    """Names of the trainable parameters the inner loop adapts; every prefix must select at least one."""
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    unused = [prefix for prefix in prefixes if not any(name.startswith(prefix) for name in names)]
    if unused:
        raise ValueError(f"MAMLConfig.adapt_only: no trainable parameter name starts with {unused} "
                         f"(parameters: {names[:8]}{', …' if len(names) > 8 else ''})")
    return [name for name in names if not prefixes or name.startswith(prefixes)]


class _AdaptedLinear(NamedTuple):
    """A linear layer with adapted parameters: the names of its weight and bias, None for one not adapted."""

    layer: nn.Linear
    weight: str | None
    bias: str | None


def _adapted_linears(model: nn.Module, names: list[str]) -> dict[str, _AdaptedLinear] | None:
    """The ``nn.Linear`` layers that own the adapted parameters, by module name; None unless every adapted parameter
    is the weight or bias of one."""
    kinds: dict[str, dict[str, str]] = {}
    for name in names:
        module_name, _, kind = name.rpartition(".")
        if not isinstance(model.get_submodule(module_name), nn.Linear) or kind not in ("weight", "bias"):
            return None
        kinds.setdefault(module_name, {})[kind] = name
    return {module_name: _AdaptedLinear(model.get_submodule(module_name), kind.get("weight"), kind.get("bias"))
            for module_name, kind in kinds.items()}


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and check a checkpoint file (``weights_only=True``) without applying it, e.g. to read its config."""
    state = load_torch_file(path)
    _check_header(state, str(path))
    return state


def _check_header(state: Any, source: str) -> None:
    tag = state.get("format") if isinstance(state, dict) else None
    if tag != FORMAT:
        raise CheckpointError(f"{source}: not a {FORMAT} checkpoint (format tag {tag!r})")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{source}: checkpoint version {state.get('version')!r}, this code reads {VERSION}")


def _check_shapes(theirs: Any, mine: dict[str, Tensor], source: str) -> None:
    if not isinstance(theirs, dict):
        raise CheckpointError(f"{source}: no meta-parameters")
    missing, unexpected = sorted(mine.keys() - theirs.keys()), sorted(theirs.keys() - mine.keys())
    if missing or unexpected:
        raise CheckpointError(f"{source}: model does not match: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for key, tensor in mine.items():
        other = theirs[key]
        if not isinstance(other, Tensor) or other.shape != tensor.shape:
            shape = tuple(other.shape) if isinstance(other, Tensor) else type(other).__name__
            raise CheckpointError(f"{source}: model does not match: {key} is {shape} in the checkpoint, "
                                  f"{tuple(tensor.shape)} here")
