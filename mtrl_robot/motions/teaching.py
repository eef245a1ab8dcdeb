"""Teaching an arm by demonstration, step by step: the procedure ``mtrl-robot teach`` guides a person through.

The person sees a target, starts an episode, moves the arm's flange to the target (kinesthetic teaching or
teleoperation), stops the episode, reads the demonstration's summary and keeps or discards it. Once K are kept,
the model is adapted to the newest K; then test targets go to the policy and the distance from each to the
flange point reached is shown. More demonstrations and a new adaptation may follow at any time.

:class:`Teaching` is that procedure as a state machine, without ROS or a terminal: :meth:`Teaching.press` takes a
key and returns the request to make, if any (:class:`StartEpisode`, :class:`StopEpisode`, :class:`Adapt`,
:class:`Reach`, :class:`Suggest`); :meth:`Teaching.reply` takes what became of it. One request is outstanding at a
time. Recorded episodes are bags the demo recorder wrote; a discarded one is moved into ``discarded/`` beside them,
out of the adaptation's reach, never deleted.

With ``suggestions`` on, every new demonstration target is asked of the adaptation node first (:class:`Suggest`: where
the model adapted on the episodes so far is least certain); when it has no answer, the workspace's next sample is
shown instead. ``target_source`` says which is shown.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np

from mtrl_robot.arms.chain import Arm
from mtrl_robot.arms.fk import flange_position
from mtrl_robot.arms.ik import sample_reachable_targets
from mtrl_robot.motions.dataset import DatasetError
from mtrl_robot.motions.reach import robot_rng
from mtrl_robot.motions.recording import read_episodes

DISCARDED = "discarded"  # folder beside the kept episodes that discarded ones are moved into


def workspace_targets(arm: Arm, seed: int) -> Iterator[np.ndarray]:
    """Targets in ``arm``'s reachable workspace, one at a time; the sequence depends only on (arm, seed)."""
    rng = robot_rng(seed, arm.robot_id)
    while True:
        yield sample_reachable_targets(arm, 1, rng)[0]


@dataclass(frozen=True)
class DemoSummary:
    """What a recorded episode shows: how long, how many joint states, where the flange started and ended."""

    bag: Path
    target: np.ndarray  # (3,) m, world frame
    duration: float  # s from the target message to the last joint state
    samples: int  # joint states recorded
    start: np.ndarray  # (3,) m, flange at the first joint state
    end: np.ndarray  # (3,) m, flange at the last joint state

    @property
    def distance(self) -> float:
        """m from the flange's end position to the target."""
        return float(np.linalg.norm(self.end - self.target))


def summarize_episode(bag: str | Path, arm: Arm) -> DemoSummary:
    """The summary of the one episode in ``bag``; ``DatasetError`` naming the bag and what is wrong."""
    bag = Path(bag)
    episodes = read_episodes(bag, base_link=arm.base_link, base_transform=arm.base_transform())
    if len(episodes) != 1:
        raise DatasetError(bag, f"{len(episodes)} episodes; a demonstration bag holds one")
    episode = episodes[0]
    missing = [name for name in arm.joint_names if name not in episode.joint_names]
    if missing:
        raise DatasetError(bag, f"joint {missing[0]} of {arm.robot_id} not in the recorded joint states "
                                f"({', '.join(episode.joint_names)})")
    order = [episode.joint_names.index(name) for name in arm.joint_names]
    ends = flange_position(arm, episode.positions[[0, -1]][:, order])
    return DemoSummary(bag=bag, target=episode.target, duration=float(episode.times[-1]),
                       samples=len(episode.times), start=ends[0], end=ends[1])


def discard_bag(bag: str | Path) -> Path:
    """Move ``bag`` into ``discarded/`` beside it (one rename: it is either there or still in place)."""
    bag = Path(bag)
    folder = bag.parent / DISCARDED
    folder.mkdir(exist_ok=True)
    destination = folder / bag.name
    os.rename(bag, destination)
    return destination


class Stage(Enum):
    """Where the person is in the procedure."""

    TARGET = "demonstration target"  # a target is shown; the next key starts an episode
    RECORDING = "recording"  # the person moves the arm; the next key stops the episode
    REVIEW = "review"  # the episode's summary is shown; keep or discard it
    ADAPTING = "adapting"
    TESTING = "test target"  # a test target is shown; send it to the policy
    DONE = "done"


@dataclass(frozen=True)
class StartEpisode:
    """Hand the recorder ``target`` and start an episode; ``Reply.message`` is the episode's bag."""

    target: np.ndarray


@dataclass(frozen=True)
class StopEpisode:
    """Stop the episode; ``Reply.message`` is its bag."""


@dataclass(frozen=True)
class Adapt:
    """Adapt the model to the newest K kept episodes; ``Reply.message`` is the adapted model file."""


@dataclass(frozen=True)
class Reach:
    """Send ``target`` to the policy; ``Reply.reached`` is the flange point at the end of its trajectory."""

    target: np.ndarray


@dataclass(frozen=True)
class Activate:
    """Bring the policy node to active (with a real arm's preset it waits inactive until a person does this);
    ``Reply.message`` is the state it is in afterwards, or what went wrong."""


@dataclass(frozen=True)
class Suggest:
    """Ask where to demonstrate next; ``Reply.message`` is the suggestion as JSON (``target`` in m, ``spread_m``,
    ``measure``, ``demos``), or why there is none."""


Request = StartEpisode | StopEpisode | Adapt | Reach | Activate | Suggest
WORKSPACE_SAMPLE = "workspace sample"  # the default name of a target of ``Teaching.targets``
ASKING = "asking the adaptation node where to demonstrate next"  # the notice while a suggestion is awaited


@dataclass(frozen=True)
class Reply:
    """What became of a request: success, a message (a path, or what went wrong) and, for :class:`Reach`, the
    flange point reached (m, world frame)."""

    request: Request
    ok: bool
    message: str = ""
    reached: np.ndarray | None = None


@dataclass(frozen=True)
class TestResult:
    """One test target, the flange point reached (None if the policy did not reach it) and the outcome's message."""

    target: np.ndarray
    reached: np.ndarray | None
    message: str = ""

    @property
    def error(self) -> float | None:
        """m from the reached flange point to the target."""
        return None if self.reached is None else float(np.linalg.norm(self.reached - self.target))


KEYS = {  # stage: (key, what it does), as the screen lists them
    Stage.TARGET: (("r", "start recording"), ("n", "another target"), ("a", "adapt (once K are kept)"),
                   ("q", "quit")),
    Stage.RECORDING: (("s", "stop recording"),),
    Stage.REVIEW: (("k", "keep"), ("d", "discard")),
    Stage.ADAPTING: (),
    Stage.TESTING: (("t", "send to the policy"), ("n", "another target"), ("r", "record more demonstrations"),
                    ("p", "activate the policy"), ("q", "quit")),
    Stage.DONE: (),
}


@dataclass
class Teaching:
    """The teaching procedure for one arm: K kept demonstrations, adaptation, test targets."""

    arm: Arm
    k: int
    targets: Iterator[np.ndarray]
    stage: Stage = Stage.TARGET
    target: np.ndarray = field(init=False)
    kept: list[DemoSummary] = field(default_factory=list)
    review: DemoSummary | None = None
    discarded: list[Path] = field(default_factory=list)
    model: str | None = None  # the adapted model file, once adapted
    tests: list[TestResult] = field(default_factory=list)
    pending: Request | None = None  # the request whose reply is awaited
    notice: str = "move the arm to its start posture, then press r and move the flange to the target"
    problem: bool = False  # the notice reports something that went wrong
    suggestions: bool = False  # ask the adaptation node for every new demonstration target
    sample_source: str = WORKSPACE_SAMPLE  # how a sample of ``targets`` is named on the screen
    target_source: str = field(init=False)  # where the target shown comes from
    deferred_notice: str = ""  # shown once the awaited suggestion has come (its keys work only then)

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")
        self.target, self.target_source = next(self.targets), self.sample_source

    def start(self) -> Request | None:
        """The request to make before the first key: the suggestion for the first demonstration target, if asked."""
        if self.suggestions:
            self.deferred_notice = self.notice
            return self._ask(Suggest(), ASKING)
        return None

    def _new_demo_target(self, notice: str) -> Request | None:
        """Show the workspace's next sample, and with ``suggestions`` ask for the adaptation node's target."""
        self.target, self.target_source = next(self.targets), self.sample_source
        self._say(notice)
        if self.suggestions:
            self.deferred_notice = notice
            return self._ask(Suggest(), ASKING)
        return None

    def _take_suggestion(self, reply: Reply) -> None:
        """The adaptation node's target if it gave one, else the workspace sample already shown; says which."""
        try:
            answer = json.loads(reply.message) if reply.ok else None
            target = None if answer is None else np.asarray(answer["target"], dtype=float).reshape(3)
            spread = None if answer is None else float(answer["spread_m"])
        except (ValueError, KeyError, TypeError) as exc:
            answer, why = None, f"unreadable suggestion ({exc})"
        else:
            why = reply.message
        if answer is None or not np.isfinite(target).all():
            self.target_source = f"{self.sample_source}; no suggestion: {why}"
        else:
            self.target = target
            self.target_source = (f"suggested by the adaptation node: predicted spread {spread * 100:.2f} cm, "
                                  f"{answer.get('demos', '?')} demos")
        self._say(self.deferred_notice)

    @property
    def can_adapt(self) -> bool:
        return len(self.kept) >= self.k

    def keys(self) -> tuple[tuple[str, str], ...]:
        """The keys that do something now, with what they do."""
        if self.pending is not None:
            return ()
        keys = KEYS[self.stage]
        return keys if self.can_adapt else tuple(kd for kd in keys if kd[0] != "a")

    def _say(self, notice: str, problem: bool = False) -> None:
        self.notice, self.problem = notice, problem

    def _ask(self, request: Request, notice: str) -> Request:
        self.pending = request
        self._say(notice)
        return request

    def press(self, key: str) -> Request | None:
        """The person pressed ``key``: the request to make, if any (keys that do nothing now are ignored)."""
        if key not in {k for k, _ in self.keys()}:
            return None
        if key == "q":
            self.stage = Stage.DONE
        elif key == "n" and self.stage is Stage.TARGET:
            return self._new_demo_target("new target")
        elif key == "n":
            self.target = next(self.targets)
            self._say("new target")
        elif self.stage is Stage.TARGET:
            if key == "r":
                return self._ask(StartEpisode(self.target), "starting the episode")
            return self._ask(Adapt(), f"adapting to the newest {self.k} demonstrations")
        elif self.stage is Stage.RECORDING:
            return self._ask(StopEpisode(), "stopping the episode")
        elif self.stage is Stage.REVIEW:
            return self._decide(keep=key == "k")
        elif key == "t":
            return self._ask(Reach(self.target), "the policy is reaching for the target")
        elif key == "p":
            return self._ask(Activate(), "activating the policy node")
        else:  # "r" while testing: record more
            self.stage = Stage.TARGET
            return self._new_demo_target("record more demonstrations; press a to adapt again")
        return None

    def _discard(self, bag: str | Path) -> str:
        """Move ``bag`` out of the adaptation's reach; says where, or why it could not."""
        try:
            self.discarded.append(discard_bag(bag))
        except OSError as exc:
            return f"could not discard {bag}: {exc.strerror or exc}"
        return f"moved to {self.discarded[-1]}"

    def _decide(self, keep: bool) -> Request | None:
        if keep:
            self.kept.append(self.review)
            left = self.k - len(self.kept)
            notice = f"demonstration {len(self.kept)} kept; " + (f"{left} more to go" if left > 0
                                                                  else "press a to adapt, or r to record more")
        else:
            outcome = self._discard(self.review.bag)
            if not outcome.startswith("moved"):
                self._say(outcome, problem=True)
                return None
            notice = f"demonstration discarded ({outcome})"
        self.review, self.stage = None, Stage.TARGET
        return self._new_demo_target(notice)

    def reply(self, reply: Reply) -> None:
        """What became of the pending request."""
        request, self.pending = reply.request, None
        if isinstance(request, Suggest):
            self._take_suggestion(reply)
        elif isinstance(request, StartEpisode):
            if reply.ok:
                self.stage = Stage.RECORDING
                self._say("recording: move the flange to the target, then press s")
            else:
                self._say(f"episode not started: {reply.message}", problem=True)
        elif isinstance(request, StopEpisode):
            if self.stage is Stage.DONE:  # stopped by interrupt(): never kept
                if reply.ok:
                    self._say(f"the open episode was discarded ({self._discard(reply.message)})")
            elif not reply.ok:
                self.stage = Stage.TARGET
                self._say(f"episode not recorded: {reply.message}", problem=True)
            else:
                try:
                    self.stage, self.review = Stage.REVIEW, summarize_episode(reply.message, self.arm)
                    self._say("keep this demonstration (k) or discard it (d)?")
                except DatasetError as exc:
                    self.stage = Stage.TARGET
                    self._say(f"episode unreadable ({exc}); {self._discard(reply.message)}", problem=True)
        elif isinstance(request, Adapt):
            if reply.ok:
                self.stage, self.model = Stage.TESTING, reply.message
                self.target = next(self.targets)
                self._say("adapted: press t to send the test target to the policy")
            else:
                self.stage = Stage.TARGET
                self._say(f"adaptation failed: {reply.message}", problem=True)
        elif isinstance(request, Activate):
            self._say(f"policy node: {reply.message}", problem=not reply.ok)
        else:
            self.tests.append(TestResult(request.target, reply.reached if reply.ok else None, reply.message))
            if reply.ok:
                self.target = next(self.targets)
                self._say(f"reached with an error of {self.tests[-1].error * 100:.2f} cm; next test target shown")
            else:
                self._say(f"target not reached: {reply.message}", problem=True)

    def interrupt(self) -> Request | None:
        """The person quit with Ctrl-C (call once a pending :class:`StartEpisode` or :class:`StopEpisode` has its
        reply): the request that leaves nothing half-done. An open episode is stopped, and it and an episode not yet
        kept are discarded."""
        stage, self.stage = self.stage, Stage.DONE
        if stage is Stage.REVIEW:
            self._say(f"the demonstration not yet kept was discarded ({self._discard(self.review.bag)})")
            self.review = None
        return StopEpisode() if stage is Stage.RECORDING else None
