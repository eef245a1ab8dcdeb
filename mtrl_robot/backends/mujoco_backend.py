"""The MuJoCo implementation of the robot interface: one arm, optionally on the puck table.

Trajectories are sampled once, when sent, into one position-actuator set point per control step (with
velocity feed-forward ``p + kv/kp · v``, which turns the actuator into a PD on position and velocity
error), so stepping costs little more than ``mj_step`` itself. Randomization edits the compiled
``MjModel`` in place; the model is never rebuilt. With a scene, the puck's physics are ``table``, a
:class:`~mtrl_robot.scenes.puck_table.MujocoPuckTable` over this model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import mujoco
import numpy as np
from mujoco import rollout

from mtrl_robot.arms.chain import Arm
from mtrl_robot.backends.interface import ExecutionResult, SimBackend
from mtrl_robot.backends.mujoco_model import TIMESTEP, build_model, build_puck_model
from mtrl_robot.backends.trajectory import GoalTolerance, JointLimits, JointState, JointTrajectory, start_from
from mtrl_robot.randomization import check_sample
from mtrl_robot.scenes.puck_table import PUCK_TIMESTEP, MujocoPuckTable, Scene, world_nominal_parameters

_SETTLE_CHUNK = 5  # control steps between settle checks
_ROLLOUT_MIN_STEPS = 8  # shorter chunks are stepped from Python, longer ones by mujoco.rollout
_FULL_STATE = mujoco.mjtState.mjSTATE_FULLPHYSICS
_RANDOMIZED_ARRAYS = ("body_mass", "body_inertia", "dof_damping", "dof_frictionloss")  # the puck's: self.table


def _span(ids) -> slice:
    """Consecutive indices as a slice (the model builder adds each arm's elements in order)."""
    ids = [int(i) for i in ids]
    if ids != list(range(ids[0], ids[0] + len(ids))):
        raise ValueError(f"expected consecutive model indices, got {ids}")
    return slice(ids[0], ids[-1] + 1)


class MujocoBackend(SimBackend):
    """A simulated arm in MuJoCo; ``control_dt`` (default: one physics step) must be a multiple of ``timestep``."""

    def __init__(self, arm: Arm, scene: Scene | None = None, control_dt: float | None = None,
                 timestep: float = TIMESTEP):
        self.arm, self.scene = arm, scene
        self.model = build_model(arm, scene, timestep)
        control_dt = timestep if control_dt is None else control_dt
        self.data = mujoco.MjData(self.model)
        self._scratch = mujoco.MjData(self.model)  # for mj_setConst, which overwrites the state it is given
        m = self.model
        self._substeps = round(control_dt / m.opt.timestep)
        if self._substeps < 1 or not math.isclose(self._substeps * m.opt.timestep, control_dt, rel_tol=1e-6):
            raise ValueError(f"control_dt {control_dt} s is not a multiple of the timestep {m.opt.timestep} s")
        self.control_dt = self._substeps * m.opt.timestep
        joints = [m.joint(name).id for name in arm.joint_names]
        self._qadr = _span(m.jnt_qposadr[joints])
        self._dofs = _span(m.jnt_dofadr[joints])
        self._bodies = _span([m.body(link.name).id for link in arm.links])
        self._feedforward = -m.actuator_biasprm[:, 2] / m.actuator_gainprm[:, 0]  # kv / kp
        self._site = m.site("flange").id
        self._limits = JointLimits(arm.joint_names, arm.lower, arm.upper, arm.velocity_limits,
                                   np.array([j.effort for j in arm.joints]),
                                   np.array([j.acceleration for j in arm.joints]))
        # Views into the model's arrays (stable: the model is never reallocated) and their nominal values.
        self._views = {name: getattr(m, name) for name in _RANDOMIZED_ARRAYS}
        self._nominal_arrays = {name: view.copy() for name, view in self._views.items()}
        self._nominal_sums = {"arm.damping_scale": m.dof_damping[self._dofs].sum(),
                              "arm.friction_scale": m.dof_frictionloss[self._dofs].sum(),
                              "arm.mass_scale": m.body_mass[self._bodies].sum()}
        self._plan: np.ndarray | None = None  # (steps, dof) actuator set points, one per physics step
        self._k = 0  # next plan row
        self._roller = rollout.Rollout(nthread=0)  # runs on the calling thread
        self._ctrl = self.data.ctrl  # a view, cached: fetching it costs as much as writing it
        self._state0 = np.empty((1, mujoco.mj_stateSize(m, _FULL_STATE)))
        self._goal: np.ndarray | None = None
        self._settled = GoalTolerance.default(arm.dof)
        self._start = 0.0
        self.table = None if scene is None else MujocoPuckTable(self, build_puck_model(scene, PUCK_TIMESTEP))
        self.reset()

    @property
    def limits(self) -> JointLimits:
        return self._limits

    @property
    def time(self) -> float:
        return float(self.data.time)

    def read_state(self) -> JointState:
        d = self.data
        return JointState(self.arm.joint_names, d.qpos[self._qadr].copy(), d.qvel[self._dofs].copy(), float(d.time))

    def send_trajectory(self, trajectory: JointTrajectory) -> None:
        traj = start_from(trajectory, self._limits, self.data.qpos[self._qadr])
        steps = max(1, math.ceil(traj.duration / self.control_dt - 1e-9))
        t = np.minimum(self.control_dt * np.arange(1, steps + 1), traj.duration)
        positions, velocities = traj.sample(t)
        self._plan = np.repeat(positions + self._feedforward * velocities, self._substeps, axis=0)
        self._k = 0
        self._goal = traj.positions[-1].copy()
        self._start = self.time

    def is_executing(self) -> bool:
        return self._plan is not None and self._k < len(self._plan)

    def step(self, n: int = 1) -> None:
        m, d, plan, k = self.model, self.data, self._plan, self._k
        todo = n * self._substeps
        if plan is not None and k < len(plan):
            end = min(k + todo, len(plan))
            # Long chunks run in C and leave ``d`` exactly as the loop would; rollout clears applied forces.
            if end - k >= _ROLLOUT_MIN_STEPS and not (d.qfrc_applied.any() or d.xfrc_applied.any()):
                mujoco.mj_getState(m, d, self._state0[0], _FULL_STATE)
                self._roller.rollout([m], [d], self._state0, plan[None, k:end], skip_checks=True, nstep=end - k,
                                     initial_warmstart=d.qacc_warmstart[None])
            else:
                ctrl = self._ctrl
                for i in range(k, end):
                    np.copyto(ctrl, plan[i])
                    mujoco.mj_step(m, d)
            self._k = end
            todo -= end - k
        if todo > 0:
            mujoco.mj_step(m, d, todo)

    def wait(self, timeout: float | None = None) -> ExecutionResult:
        if self._goal is None:
            return ExecutionResult(True, "no trajectory to wait for", np.zeros(self.arm.dof), 0.0)
        budget = math.inf if timeout is None else max(0, round(timeout / self.control_dt))
        remaining = math.ceil((len(self._plan) - self._k) / self._substeps)
        self.step(int(min(remaining, budget)))
        budget -= min(remaining, budget)
        if self.is_executing():
            return ExecutionResult(False, f"timeout after {timeout} s, trajectory still executing",
                                   self._error(), self.time - self._start)
        names, settled = self.arm.joint_names, self._settled
        settle = min(round(settled.time / self.control_dt), budget)
        while settle > 0 and settled.violation(names, self._error()) is not None:
            chunk = int(min(_SETTLE_CHUNK, settle))
            self.step(chunk)
            settle -= chunk
        error = self._error()
        problem = settled.violation(names, error)
        success = problem is None
        message = "goal reached" if success else f"{problem} after settling for up to {settled.time:g} s"
        self._goal = None
        return ExecutionResult(success, message, error, self.time - self._start)

    def _error(self) -> np.ndarray:
        return self.data.qpos[self._qadr] - self._goal

    def stop(self) -> None:
        self._plan, self._goal = None, None
        self.data.ctrl[:] = self.data.qpos[self._qadr]

    def reset(self, q: np.ndarray | None = None) -> JointState:
        q = self.arm.home_q if q is None else self.arm.check_q(q, "reset posture")
        outside = [n for n, v, lo, hi in zip(self.arm.joint_names, q, self.arm.lower, self.arm.upper, strict=True)
                   if not lo <= v <= hi]
        if outside:
            raise ValueError(f"reset posture is outside the joint limits at {', '.join(outside)}")
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)  # the puck goes to qpos0: its start plus the current offset
        d.qpos[self._qadr] = q
        d.ctrl[:] = q
        mujoco.mj_forward(m, d)
        self._plan, self._goal = None, None
        return self.read_state()

    def nominal_parameters(self) -> dict[str, float]:
        return world_nominal_parameters(self.scene)

    def apply_randomization(self, sample: Mapping[str, float]) -> dict[str, float]:
        """Restore nominal values, apply ``sample`` in place (the puck's through ``table``), read back."""
        known = self.nominal_parameters()
        check_sample(sample, known)
        v, dofs, bodies = self._views, self._dofs, self._bodies
        for name, nominal in self._nominal_arrays.items():
            np.copyto(v[name], nominal)
        values = {**known, **sample}
        v["dof_damping"][dofs] *= values["arm.damping_scale"]
        v["dof_frictionloss"][dofs] *= values["arm.friction_scale"]
        v["body_mass"][bodies] *= values["arm.mass_scale"]
        v["body_inertia"][bodies] *= values["arm.mass_scale"]
        puck = self.table.apply(values) if self.table is not None else {}
        mujoco.mj_setConst(self.model, self._scratch)  # constraint scaling depends on the masses
        return {**self._read_parameters(), **puck}

    def _read_parameters(self) -> dict[str, float]:
        """The arm's randomizable parameters as the engine now holds them (a scale with nothing to act on: nan)."""
        v, sums = self._views, self._nominal_sums
        return {name: float(v[array][index].sum() / sums[name]) if sums[name] > 0 else math.nan
                for name, array, index in (("arm.damping_scale", "dof_damping", self._dofs),
                                           ("arm.friction_scale", "dof_frictionloss", self._dofs),
                                           ("arm.mass_scale", "body_mass", self._bodies))}

    def flange_position(self) -> np.ndarray:
        mujoco.mj_kinematics(self.model, self.data)
        return self.data.site_xpos[self._site].copy()
