"""Meta-step time of our ``torch.func`` MAML against the ``higher`` library on the same model and data, and of the
reaching meta-loss against the same loss with every task's adapted weights built.

``higher`` 0.2.1 (2020) still works with torch 2.13: its canonical MAML loop -- one ``innerloop_ctx`` per
task, a differentiable SGD inner optimiser, ``backward`` of each task's query loss -- runs without warnings
and gives the same meta-loss and meta-gradient as ours. Both learners start from identical weights, see the
identical meta-batch, take second-order inner steps and an Adam outer step.

The reaching comparison takes the model, meta-batch and inner loop of a training preset (``full`` by default) on
demos of a few robots of one family: :meth:`MAML.meta_loss` (adapted linear layers factored, tasks as one batch)
against ``adapt`` then ``predict`` vmapped over the tasks, which builds each task's adapted weights, both with
the backward pass of the meta-gradient.
"""

from __future__ import annotations

import statistics
import time
from functools import partial
from importlib.metadata import version

import higher
import torch
import torch.nn.functional as F
from torch.func import vmap

from mtrl_robot.core.torch_threads import torch_threads
from mtrl_robot.meta.maml import MAML, MAMLConfig, TaskBatch
from mtrl_robot.meta.sinusoid import SinusoidTasks, make_mlp


def _higher_meta_step(model: torch.nn.Module, outer: torch.optim.Optimizer, inner_lr: float, inner_steps: int,
                      tasks: TaskBatch) -> float:
    """One second-order MAML meta-step written with ``higher``; returns the meta-loss."""
    inner = torch.optim.SGD(model.parameters(), lr=inner_lr)
    outer.zero_grad(set_to_none=True)
    num_tasks, total = tasks.support_x.shape[0], 0.0
    for sx, sy, qx, qy in zip(*tasks[:4], strict=True):
        with higher.innerloop_ctx(model, inner, copy_initial_weights=False) as (fmodel, diffopt):
            for _ in range(inner_steps):
                diffopt.step(F.mse_loss(fmodel(sx), sy))
            loss = F.mse_loss(fmodel(qx), qy) / num_tasks
            loss.backward()
            total += loss.item()
    outer.step()
    return total


def bench_meta(seconds: float = 4.0, meta_batch_size: int = 25, support_size: int = 10, inner_steps: int = 1,
               threads: int | None = 1) -> dict[str, float | int | str]:
    """Per-meta-step time of ours and of ``higher``, and their ratio (> 1: ours is faster).

    Sinusoid tasks, the 1-40-40-1 MLP of Finn et al. (2017), second order. Meta-steps of the two alternate
    so that load on the machine hits both alike; each figure is the fastest step. ``threads`` sets torch's
    intra-op threads for the run (restored afterwards); ``None`` keeps the current setting.
    """
    with torch_threads(threads):
        config = MAMLConfig(inner_steps=inner_steps, inner_lr=0.01, outer_lr=1e-3, meta_batch_size=meta_batch_size)
        ours = MAML(make_mlp(seed=0), config=config)
        theirs = make_mlp(seed=0)
        theirs_outer = torch.optim.Adam(theirs.parameters(), lr=config.outer_lr)
        tasks = SinusoidTasks().sample(meta_batch_size, support_size, support_size, torch.Generator().manual_seed(0))

        ours_loss = ours.meta_step(tasks)  # first steps also check that both compute the same thing
        theirs_loss = _higher_meta_step(theirs, theirs_outer, config.inner_lr, inner_steps, tasks)
        grad_pairs = list(zip(ours.model.parameters(), theirs.parameters(), strict=True))  # .grad kept after step
        grad_gap = max((a.grad - b.grad).abs().max().item() for a, b in grad_pairs)
        grad_scale = max(a.grad.abs().max().item() for a, _ in grad_pairs)
        ours_times, theirs_times = [], []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(ours_times) < 3:
            t0 = time.perf_counter()
            ours.meta_step(tasks)
            t1 = time.perf_counter()
            _higher_meta_step(theirs, theirs_outer, config.inner_lr, inner_steps, tasks)
            ours_times.append(t1 - t0)
            theirs_times.append(time.perf_counter() - t1)
    ours_ms, theirs_ms = min(ours_times) * 1e3, min(theirs_times) * 1e3
    return {
        "baseline": f"higher {version('higher')}",
        "threads": threads if threads is not None else torch.get_num_threads(),
        "meta_batch_size": meta_batch_size,
        "support_size": support_size,
        "inner_steps": inner_steps,
        "meta_steps_timed": len(ours_times),
        "ours_meta_step_ms": ours_ms,
        "higher_meta_step_ms": theirs_ms,
        "speedup_vs_higher": theirs_ms / ours_ms,
        "first_meta_loss_gap": abs(ours_loss - theirs_loss),
        "first_meta_grad_relative_gap": grad_gap / grad_scale,
    }


def _built_weights_loss(learner: MAML, tasks: TaskBatch) -> torch.Tensor:
    """The meta-loss with every task's adapted weights built: ``adapt`` then ``predict``, vmapped over the tasks."""

    def task_loss(sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor, qy: torch.Tensor) -> torch.Tensor:
        return learner.loss_fn(learner.predict(learner.adapt(sx, sy), qx), qy)

    return vmap(task_loss, randomness="different")(*tasks[:4]).mean()


def bench_reaching_meta_step(preset: str = "full", family: str = "panda", seconds: float = 4.0,
                             threads: int | None = 1) -> dict[str, float | int | str]:
    """CPU time per meta-loss and meta-gradient of the preset's reaching learner (MAML variant), ours against the
    adapted weights built, on one meta-batch; each figure is the median of alternating runs."""
    from mtrl_robot.arms.population import generate, load_config
    from mtrl_robot.distributed.compute import IN_THIS_PROCESS
    from mtrl_robot.learning.reaching.checkpoint import make_learner
    from mtrl_robot.learning.reaching.data import task_sampler, to_tensors
    from mtrl_robot.learning.reaching.presets import load_preset
    from mtrl_robot.learning.reaching.pretrain import build_model
    from mtrl_robot.motions.generate import generate_demos

    config = load_preset(preset, ["meta.variant=maml"])
    meta = config.meta
    with torch_threads(threads):
        robots = generate(load_config(seed=0, families=[family], robots_per_family=meta.meta_batch_size))
        demos = to_tensors(generate_demos(robots, meta.k_support + meta.k_query, 0, IN_THIS_PROCESS, False))
        vae, model = build_model(config.model, demos.n_waypoints, demos.dof, seed=0)
        vae.normalizer.set_statistics(demos.offsets)
        model.policy.set_statistics(demos.targets)
        learner = make_learner(model, meta)
        tasks = task_sampler(demos, model.normalize, meta.k_support, meta.k_query)(meta.meta_batch_size,
                                                                                  torch.Generator().manual_seed(0))
        parameters = list(learner.meta.parameters())
        ours_loss, theirs_loss = learner.meta_loss(tasks), _built_weights_loss(learner, tasks)
        ours_grads = torch.autograd.grad(ours_loss, parameters)
        theirs_grads = torch.autograd.grad(theirs_loss, parameters)
        grad_gap = max((a - b).abs().max().item() for a, b in zip(ours_grads, theirs_grads, strict=True))
        grad_scale = max(b.abs().max().item() for b in theirs_grads)
        ours_times, theirs_times = [], []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(ours_times) < 5:
            for loss_of, times in ((learner.meta_loss, ours_times), (partial(_built_weights_loss, learner),
                                                                     theirs_times)):
                start = time.process_time()
                torch.autograd.grad(loss_of(tasks), parameters)
                times.append(time.process_time() - start)
    ours_ms, theirs_ms = statistics.median(ours_times) * 1e3, statistics.median(theirs_times) * 1e3
    return {
        "preset": preset, "family": family, "threads": threads if threads is not None else torch.get_num_threads(),
        "meta_batch_size": meta.meta_batch_size, "k_support": meta.k_support, "k_query": meta.k_query,
        "inner_steps": meta.inner_steps, "adapt_only": ", ".join(meta.adapt_only),
        "meta_losses_timed": len(ours_times),
        "ours_cpu_ms": ours_ms,
        "built_weights_cpu_ms": theirs_ms,
        "speedup_vs_built_weights": theirs_ms / ours_ms,
        "meta_loss_relative_gap": abs(ours_loss.item() - theirs_loss.item()) / abs(theirs_loss.item()),
        "meta_grad_relative_gap": grad_gap / grad_scale,
    }
