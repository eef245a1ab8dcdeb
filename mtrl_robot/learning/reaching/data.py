"""Demonstrations as tensors for learning: one joint set (arm family) at a time, or pooled, and a task sampler.

A demo becomes (target, offsets): the flange target (3,) in m and the joint offsets from its first waypoint
(T, dof) in rad. Each robot is a task; a meta-batch draws robots without replacement and, for each, K support
and Q query demos without replacement, all from one ``torch.Generator``; the batch's task ids are the robots'
indices into ``robot_ids``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mtrl_robot.meta import TaskBatch
from mtrl_robot.meta.maml import TaskSampler
from mtrl_robot.models.joint_padding import pad_joints
from mtrl_robot.motions.dataset import DatasetError, DemoDataset
from mtrl_robot.motions.dataset import load as load_demos

DEMOS_FILE = "demos.npz"  # a run's demos; with arms of several joint counts, one file per count (demos_file)


@dataclass(frozen=True)
class RobotDemos:
    """The demos of robots that share one joint set, as float32 tensors, grouped by robot."""

    joint_names: tuple[str, ...]
    robot_ids: tuple[str, ...]
    targets: Tensor  # (N, 3) m
    offsets: Tensor  # (N, T, dof) rad from each demo's first waypoint
    demos_of: tuple[Tensor, ...]  # per robot: indices into targets / offsets
    codes: Tensor | None = None  # (N, families) one-hot of each demo's family (pooled with a family code)

    @property
    def inputs(self) -> Tensor:
        """What the learner takes: the targets, and with family codes ``cat(target, code)``."""
        return self.targets if self.codes is None else torch.cat([self.targets, self.codes], dim=1)

    @property
    def n_waypoints(self) -> int:
        return self.offsets.shape[1]

    @property
    def dof(self) -> int:
        return self.offsets.shape[2]


def demos_file(run_dir: str | Path, dof: int | None = None) -> Path:
    """Where a run keeps its demos: ``demos.npz``, or with ``dof`` (arms of several joint counts in one run) the
    file of the arms with that many joints, ``demos-<dof>joints.npz``."""
    return Path(run_dir) / (DEMOS_FILE if dof is None else f"demos-{dof}joints.npz")


def demos_files(run_dir: str | Path) -> list[Path]:
    """A run's demos files that exist (see :func:`demos_file`)."""
    single = demos_file(run_dir)
    return [single] if single.is_file() else sorted(Path(run_dir).glob("demos-*joints.npz"))


def run_demos(run_dir: str | Path) -> dict[str, DemoDataset]:
    """A run's demos by arm family, from its demos file or files (``DatasetError`` when there are none)."""
    files = demos_files(run_dir)
    if not files:
        raise DatasetError(demos_file(run_dir), "no such file: the run has no demos")
    return {family: ds for path in files for family, ds in by_family(load_demos(path)).items()}


def by_family(dataset: DemoDataset) -> dict[str, DemoDataset]:
    """The dataset split by arm family, in order of first appearance."""
    families = dict.fromkeys(r.family for r in dataset.robots)
    return {f: dataset.select([r.robot_id for r in dataset.robots if r.family == f]) for f in families}


def to_tensors(dataset: DemoDataset, joint_names: Sequence[str] | None = None,
               n_waypoints: int | None = None) -> RobotDemos:
    """Tensors of a one-joint-set dataset; with ``joint_names``/``n_waypoints`` given, demos must match them."""
    names = dataset.joint_names  # raises DatasetError if the dataset mixes joint sets
    if joint_names is not None:
        dataset.require_joint_names(joint_names)
    if n_waypoints is not None and dataset.n_waypoints != n_waypoints:
        raise DatasetError(None, f"demos have {dataset.n_waypoints} waypoints, the model expects {n_waypoints}")
    positions = np.asarray(dataset.positions)
    if not (np.isfinite(positions).all() and np.isfinite(dataset.targets).all()):
        raise DatasetError(None, "demos contain NaN or inf")  # DemoDataset refuses these too; never train on them
    return RobotDemos(
        joint_names=names, robot_ids=dataset.robot_ids,
        targets=torch.tensor(dataset.targets, dtype=torch.float32),
        offsets=torch.tensor(positions - positions[:, :1], dtype=torch.float32),
        demos_of=tuple(torch.from_numpy(dataset.demos_of(r)) for r in dataset.robot_ids))


def pool(groups: Sequence[RobotDemos], codes: bool = False) -> RobotDemos:
    """Several joint sets' demos as one (columns by position, named ``joint_1``…; arms with fewer joints than the
    most padded with NaN, :mod:`~mtrl_robot.models.joint_padding`), with ``codes`` a one-hot of each demo's group;
    one group without codes is returned as is."""
    if len(groups) == 1 and not codes:
        return groups[0]
    waypoints = {g.n_waypoints for g in groups}
    if len(waypoints) != 1:
        raise DatasetError(None, f"pooled demos need one number of waypoints, got {sorted(waypoints)}")
    starts = np.cumsum([0] + [len(g.targets) for g in groups[:-1]])
    dof = max(g.dof for g in groups)
    return RobotDemos(
        joint_names=tuple(f"joint_{i + 1}" for i in range(dof)),
        robot_ids=tuple(r for g in groups for r in g.robot_ids),
        targets=torch.cat([g.targets for g in groups]),
        offsets=torch.cat([pad_joints(g.offsets, dof) for g in groups]),
        codes=torch.cat([torch.eye(len(groups))[i].expand(len(g.targets), -1) for i, g in enumerate(groups)])
        if codes else None,
        demos_of=tuple(i + int(start) for g, start in zip(groups, starts, strict=True) for i in g.demos_of))


def task_sampler(demos: RobotDemos, normalize: Callable[[Tensor], Tensor], k_support: int,
                 k_query: int) -> TaskSampler:
    """Meta-batches of robots, each with ``k_support`` + ``k_query`` of its demos; y is ``normalize(offsets)``."""
    short = [(r, len(i)) for r, i in zip(demos.robot_ids, demos.demos_of, strict=True) if len(i) < k_support + k_query]
    if short:
        raise DatasetError(None, f"robot {short[0][0]} has {short[0][1]} demos; a task needs k_support + k_query = "
                           f"{k_support + k_query}")
    y, inputs = normalize(demos.offsets), demos.inputs
    counts = torch.tensor([len(i) for i in demos.demos_of])
    table = torch.nn.utils.rnn.pad_sequence(list(demos.demos_of), batch_first=True)  # (robots, max demos)

    def sample(num_tasks: int, generator: torch.Generator) -> TaskBatch:
        if num_tasks > len(demos.robot_ids):
            raise ValueError(f"{num_tasks} tasks per meta-batch, but only {len(demos.robot_ids)} robots")
        robots = torch.randperm(len(demos.robot_ids), generator=generator)[:num_tasks]
        # a random permutation of each robot's own demos: argsort of uniform keys, padding sorted last
        keys = torch.rand(num_tasks, table.shape[1], generator=generator)
        keys[torch.arange(table.shape[1]) >= counts[robots, None]] = 2.0
        chosen = table[robots[:, None], keys.argsort(dim=1)[:, :k_support + k_query]]
        x, t = inputs[chosen], y[chosen]
        return TaskBatch(x[:, :k_support], t[:, :k_support], x[:, k_support:], t[:, k_support:], robots)

    return sample
