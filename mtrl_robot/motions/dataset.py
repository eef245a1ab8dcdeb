"""The demonstration dataset: one ``.npz`` file holding every demo of one or many robots.

A dataset is N demonstrations, each T time-stamped waypoints of a ``dof``-joint robot, plus the full
parameters of every robot that made them. On disk it is one numpy ``.npz`` archive:

================  ==============  =====================================================================
array             shape / dtype   meaning
================  ==============  =====================================================================
``positions``     (N, T, dof) f8  joint positions, rad, columns in the demo's robot's joint order
``velocities``    (N, T, dof) f8  joint velocities, rad/s
``times``         (N, T) f8       seconds from the demo's start, strictly increasing
``targets``       (N, 3) f8       flange target, m, in the robot's world frame
``robot_index``   (N,) i8         which robot made the demo: index into ``metadata.robots``
``metadata``      () str          JSON, below
================  ==============  =====================================================================

``metadata`` is ``{"format": "mtrl_robot.demos", "version": 1, "robots": [Arm.to_dict(), …],
"info": {…}}``: each robot's complete parameters (id, family, joint names and limits, perturbed
kinematics, masses, …) so ``Arm.from_dict`` rebuilds it exactly, and free-form ``info`` on how the
demos were made (planner seed and settings, IK failures, or the source recording).

Invariants, checked whenever a dataset is built or loaded: at least one demo; every robot has at least
one demo; ids unique; all robots have the same number of joints; shapes agree; every value finite;
times strictly increasing; every position within its robot's joint limits (give or take
``LIMIT_TOLERANCE``). Files are written atomically (temporary file, then rename), so a failed or
interrupted save leaves any earlier file untouched.
"""

from __future__ import annotations

import contextlib
import json
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mtrl_robot.arms.chain import Arm
from mtrl_robot.backends.trajectory import JointTrajectory
from mtrl_robot.core.atomic import write_atomic

FORMAT = "mtrl_robot.demos"
VERSION = 1
_ARRAYS = ("positions", "velocities", "times", "targets", "robot_index")
LIMIT_TOLERANCE = 0.01  # rad beyond a joint limit still accepted: measured positions may overshoot a little


class DatasetError(ValueError):
    """A dataset that cannot be built, loaded or used; the message names the file (if any) and the problem."""

    def __init__(self, source: str | Path | None, problem: str):
        self.source = str(source) if source is not None else None
        self.problem = problem
        super().__init__(f"{self.source}: {problem}" if self.source else problem)


@contextlib.contextmanager
def about_file(source: str | Path) -> Iterator[None]:
    """Re-raise a ``DatasetError`` without a file name as one naming ``source``."""
    try:
        yield
    except DatasetError as exc:
        if exc.source is not None:
            raise
        raise DatasetError(source, exc.problem) from None


def _frozen(array: np.ndarray, dtype) -> np.ndarray:
    out = np.array(array, dtype=dtype, copy=True)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class DemoDataset:
    """Demonstrations of one or many robots; see the module docstring for the meaning of each field."""

    robots: tuple[Arm, ...]
    robot_index: np.ndarray  # (N,)
    targets: np.ndarray  # (N, 3)
    times: np.ndarray  # (N, T)
    positions: np.ndarray  # (N, T, dof)
    velocities: np.ndarray  # (N, T, dof)
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen dataclass: store validated, read-only copies
        set_(self, "robots", tuple(self.robots))
        index = np.asarray(self.robot_index)
        if index.size and not np.issubdtype(index.dtype, np.integer):
            raise DatasetError(None, f"robot_index must hold integers, got dtype {index.dtype}")
        set_(self, "robot_index", _frozen(index, np.int64))
        for name in ("targets", "times", "positions", "velocities"):
            try:
                set_(self, name, _frozen(getattr(self, name), np.float64))
            except (TypeError, ValueError) as exc:
                raise DatasetError(None, f"{name} is not a numeric array ({exc})") from None
        set_(self, "info", dict(self.info))
        self._validate()

    # ---------------------------------------------------------------- checks
    def _validate(self) -> None:
        robots, index = self.robots, self.robot_index
        if not robots:
            raise DatasetError(None, "dataset is empty (no robots)")
        ids = [r.robot_id for r in robots]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise DatasetError(None, f"robot ids are not unique: {', '.join(duplicates)}")
        dofs = {r.dof for r in robots}
        if len(dofs) > 1:
            raise DatasetError(None, "robots have different numbers of joints: "
                               + ", ".join(f"{r.robot_id} {r.dof}" for r in robots))
        dof = robots[0].dof
        if index.ndim != 1:
            raise DatasetError(None, f"robot_index must have shape (N,), got {index.shape}")
        n = len(index)
        if n == 0:
            raise DatasetError(None, "dataset is empty (no demonstrations)")
        t = self.times.shape[1] if self.times.ndim == 2 else -1
        expected = {"targets": (n, 3), "times": (n, t), "positions": (n, t, dof), "velocities": (n, t, dof)}
        for name, shape in expected.items():
            actual = getattr(self, name).shape
            if actual != shape:
                shown = tuple("T" if s == -1 else s for s in shape)
                raise DatasetError(None, f"inconsistent shapes: {name} has shape {actual}, expected {shown} "
                                   f"(N={n} demos, dof={dof})")
        if t < 2:
            raise DatasetError(None, f"each demo needs at least 2 waypoints, got T={t}")
        bad = np.flatnonzero((index < 0) | (index >= len(robots)))
        if bad.size:
            raise DatasetError(None, f"demo {bad[0]}: robot_index {index[bad[0]]} does not name one of the "
                               f"{len(robots)} robots")
        unused = [ids[i] for i in sorted(set(range(len(robots))) - set(index.tolist()))]
        if unused:
            raise DatasetError(None, f"robots without demonstrations: {', '.join(unused)}")
        for name in ("positions", "velocities", "times", "targets"):
            arr = getattr(self, name)
            finite = np.isfinite(arr).reshape(n, -1).all(axis=1)
            if not finite.all():
                i = int(np.flatnonzero(~finite)[0])
                raise DatasetError(None, f"demo {i} (robot {self.robot_of(i)}) has NaN or inf in {name}")
        steps = np.diff(self.times, axis=1)
        bad = np.flatnonzero((steps <= 0).any(axis=1) | (self.times[:, 0] < 0))
        if bad.size:
            i = int(bad[0])
            raise DatasetError(None, f"demo {i} (robot {self.robot_of(i)}): times must start at or after 0 "
                               "and increase strictly")
        self._check_joint_limits()

    def _check_joint_limits(self) -> None:
        """Every position within its robot's joint limits, give or take :data:`LIMIT_TOLERANCE`."""
        for r, robot in enumerate(self.robots):
            demos = np.flatnonzero(self.robot_index == r)
            q = self.positions[demos]
            outside = (q < robot.lower - LIMIT_TOLERANCE) | (q > robot.upper + LIMIT_TOLERANCE)
            if outside.any():
                d, t, j = np.argwhere(outside)[0]
                joint = robot.joints[j]
                raise DatasetError(None, f"demo {demos[d]} (robot {robot.robot_id}): {joint.name} is at "
                                   f"{q[d, t, j]:.6g} rad at waypoint {t}, outside its limits [{joint.lower:.4g}, "
                                   f"{joint.upper:.4g}] rad (tolerance {LIMIT_TOLERANCE} rad)")

    # ---------------------------------------------------------------- looking things up
    def __len__(self) -> int:
        return len(self.robot_index)

    @property
    def n_waypoints(self) -> int:
        return self.times.shape[1]

    @property
    def dof(self) -> int:
        return self.positions.shape[2]

    @property
    def robot_ids(self) -> tuple[str, ...]:
        return tuple(r.robot_id for r in self.robots)

    def _robot_position(self, robot_id: str) -> int:
        ids = self.robot_ids
        if robot_id not in ids:
            shown = ", ".join(ids[:5]) + (", …" if len(ids) > 5 else "")
            raise DatasetError(None, f"no robot '{robot_id}' in this dataset (it has {shown})")
        return ids.index(robot_id)

    def arm(self, robot_id: str) -> Arm:
        """The robot's full parameters, exactly as they were when its demos were made."""
        return self.robots[self._robot_position(robot_id)]

    def robot_of(self, i: int) -> str:
        """Id of the robot that made demo ``i``."""
        return self.robots[int(self.robot_index[i])].robot_id

    def joint_names_of(self, robot_id: str) -> tuple[str, ...]:
        return self.arm(robot_id).joint_names

    @property
    def joint_names(self) -> tuple[str, ...]:
        """The joint names of every robot in the dataset, in column order.

        A dataset mixing joint sets (several arm families) has no single answer: this raises
        ``DatasetError``; use ``for_robot(id).joint_names`` or ``joint_names_of(id)`` there.
        """
        sets = {r.joint_names for r in self.robots}
        if len(sets) > 1:
            families = sorted({r.family for r in self.robots})
            raise DatasetError(None, f"the dataset mixes {len(sets)} joint sets (families {', '.join(families)}); "
                               "select one robot or family first")
        return self.robots[0].joint_names

    def require_joint_names(self, names: Sequence[str]) -> None:
        """Raise ``DatasetError`` unless every robot's demos have exactly the joints ``names``, in that order."""
        names = tuple(names)
        for robot in self.robots:
            have = robot.joint_names
            if have == names:
                continue
            missing = [n for n in names if n not in have]
            unknown = [n for n in have if n not in names]
            if missing or unknown:
                raise DatasetError(None, f"demos of {robot.robot_id} come from a different joint set: "
                                   f"missing {missing}, unexpected {unknown} (expected {list(names)})")
            raise DatasetError(None, f"demos of {robot.robot_id} have the joints in the order {list(have)}, "
                               f"expected {list(names)}")

    def demos_of(self, robot_id: str) -> np.ndarray:
        """Indices of the robot's demos, in dataset order."""
        return np.flatnonzero(self.robot_index == self._robot_position(robot_id))

    def trajectory(self, i: int) -> JointTrajectory:
        """Demo ``i`` as a trajectory for the robot interface (joints named, so any backend can reorder)."""
        return JointTrajectory(self.joint_names_of(self.robot_of(i)), self.times[i].copy(),
                               self.positions[i].copy(), self.velocities[i].copy())

    # ---------------------------------------------------------------- subsets
    def subset(self, indices: Sequence[int] | np.ndarray) -> DemoDataset:
        """The demos at ``indices`` (in that order); robots left without demos are dropped."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size == 0:
            raise DatasetError(None, "the selection is empty (no demonstrations)")
        used = sorted(set(self.robot_index[indices].tolist()))
        remap = np.full(len(self.robots), -1, dtype=np.int64)
        remap[used] = np.arange(len(used))
        return DemoDataset(robots=tuple(self.robots[i] for i in used), robot_index=remap[self.robot_index[indices]],
                           targets=self.targets[indices], times=self.times[indices],
                           positions=self.positions[indices], velocities=self.velocities[indices], info=self.info)

    def for_robot(self, robot_id: str) -> DemoDataset:
        """Only the demos of ``robot_id``."""
        return self.subset(self.demos_of(robot_id))

    def select(self, robot_ids: Sequence[str]) -> DemoDataset:
        """Only the demos of the robots ``robot_ids`` (e.g. meta-training vs held-out robots)."""
        positions = [self._robot_position(r) for r in robot_ids]
        return self.subset(np.flatnonzero(np.isin(self.robot_index, positions)))

    def split(self, k: int, rng: np.random.Generator) -> tuple[DemoDataset, DemoDataset]:
        """Support and query sets: for every robot, ``k`` random demos to support and the rest to query."""
        if k < 1:
            raise DatasetError(None, f"a support set needs k ≥ 1 demos per robot, got k={k}")
        support, query = [], []
        for r, robot in enumerate(self.robots):
            mine = np.flatnonzero(self.robot_index == r)
            if len(mine) <= k:
                raise DatasetError(None, f"robot {robot.robot_id} has {len(mine)} demos; a split with k={k} "
                                   f"support demos needs at least {k + 1}")
            chosen = np.zeros(len(mine), dtype=bool)
            chosen[rng.choice(len(mine), size=k, replace=False)] = True
            support.extend(mine[chosen])
            query.extend(mine[~chosen])
        return self.subset(np.sort(support)), self.subset(np.sort(query))

    # ---------------------------------------------------------------- files
    def save(self, path: str | Path) -> Path:
        """Write the dataset to ``path`` (conventionally ``*.npz``), atomically; returns the path."""
        path = Path(path)
        try:
            metadata = json.dumps({"format": FORMAT, "version": VERSION,
                                   "robots": [r.to_dict() for r in self.robots], "info": self.info})
        except (TypeError, ValueError) as exc:
            raise DatasetError(path, f"metadata is not JSON-serializable: {exc}") from None
        arrays = {"metadata": np.array(metadata), "positions": self.positions, "velocities": self.velocities,
                  "times": self.times, "targets": self.targets, "robot_index": self.robot_index}
        return write_atomic(path, lambda f: np.savez(f, **arrays))

    @staticmethod
    def load(path: str | Path) -> DemoDataset:
        """Same as the module's :func:`load`."""
        return load(path)

    @staticmethod
    def concat(datasets: Sequence[DemoDataset]) -> DemoDataset:
        """Same as the module's :func:`concat`."""
        return concat(datasets)


def load(path: str | Path) -> DemoDataset:
    """Read and validate a dataset file; ``DatasetError`` names the file and what is wrong with it."""
    src = Path(path)
    if not src.is_file():
        raise DatasetError(src, "dataset file not found")
    try:
        with np.load(src, allow_pickle=False) as archive:
            keys = set(archive.files)
            if "metadata" not in keys:
                raise DatasetError(src, f"not a demonstration dataset (no metadata; expected format '{FORMAT}')")
            text = str(archive["metadata"][()])
            missing = [k for k in _ARRAYS if k not in keys]
            arrays = {k: archive[k] for k in _ARRAYS if k in keys}
    except DatasetError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise DatasetError(src, f"not a readable .npz dataset (corrupt or another kind of file: {exc})") from None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(src, f"metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise DatasetError(src, f"not a demonstration dataset (format {found!r}, expected '{FORMAT}')")
    if meta.get("version") != VERSION:
        raise DatasetError(src, f"unsupported dataset version {meta.get('version')!r} (this reader: {VERSION})")
    if missing:
        raise DatasetError(src, f"arrays missing from the dataset: {', '.join(missing)}")
    try:
        robots = tuple(Arm.from_dict(r) for r in meta["robots"])
    except (KeyError, TypeError, AttributeError) as exc:
        raise DatasetError(src, f"malformed robot parameters in the metadata: {exc}") from None
    with about_file(src):
        return DemoDataset(robots=robots, info=meta.get("info", {}), **arrays)


def concat(datasets: Sequence[DemoDataset]) -> DemoDataset:
    """All demos of ``datasets`` in order; a robot in several parts must have identical parameters."""
    datasets = list(datasets)
    if not datasets:
        raise DatasetError(None, "nothing to concatenate (no datasets given)")
    first = datasets[0]
    robots: list[Arm] = []
    where: dict[str, int] = {}
    indices = []
    for k, ds in enumerate(datasets):
        if ds.n_waypoints != first.n_waypoints or ds.dof != first.dof:
            raise DatasetError(None, f"dataset {k} has demos of {ds.n_waypoints} waypoints × {ds.dof} joints, "
                               f"dataset 0 has {first.n_waypoints} × {first.dof}")
        remap = []
        for robot in ds.robots:
            if robot.robot_id not in where:
                where[robot.robot_id] = len(robots)
                robots.append(robot)
            elif robots[where[robot.robot_id]].to_dict() != robot.to_dict():
                raise DatasetError(None, f"robot {robot.robot_id} appears in dataset {k} with different parameters")
            remap.append(where[robot.robot_id])
        indices.append(np.asarray(remap, dtype=np.int64)[ds.robot_index])
    info = first.info if len(datasets) == 1 else {"parts": [ds.info for ds in datasets]}
    return DemoDataset(robots=tuple(robots), robot_index=np.concatenate(indices),
                       targets=np.concatenate([d.targets for d in datasets]),
                       times=np.concatenate([d.times for d in datasets]),
                       positions=np.concatenate([d.positions for d in datasets]),
                       velocities=np.concatenate([d.velocities for d in datasets]), info=info)
