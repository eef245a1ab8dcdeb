"""Training as a ROS node: the same code as ``mtrl-robot reaching train`` / ``mtrl-robot puck train``, its progress
on ``/diagnostics`` and in the log, then an evaluation; the process ends with the run's exit status.

- ``task:=reaching``: :func:`~mtrl_robot.learning.reaching.train.train_from_preset` (checkpoints every
  ``meta.checkpoint_every`` steps, ``resume:=true`` continues a run), then the held-out robots through simulated arm
  nodes (:mod:`mtrl_robot.ros.held_out_reaching`; ``eval_robots:=0`` skips it).
- ``task:=puck``: :func:`~mtrl_robot.learning.puck.train.train_puck`, then its simulated evaluation
  (:func:`~mtrl_robot.learning.puck.evaluate.evaluate_puck`, ``eval_repeats`` hits per condition and step).

``/diagnostics`` (``diagnostic_msgs/DiagnosticArray``, ``diagnostics_rate`` Hz) carries one status named
``training_node: <task>`` with the keys ``stage``, ``step``, ``total``, ``loss`` and ``checkpoint`` (the newest
complete checkpoint file). SIGINT or SIGTERM ends training the way Ctrl-C ends the command: a checkpoint being
written is discarded, the last complete one stays, and the exit status is 128 + the signal number.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from pathlib import Path

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from mtrl_robot.core.interrupt import Interrupted, raise_on_signals, signals_prevail
from mtrl_robot.core.progress import BarState, observed_bars
from mtrl_robot.ros.parameters import OneOf, Range, declare_parameters
from mtrl_robot.ros.run import CONFIGURATION_ERRORS

PARAMETERS = {  # name: (default, description[, Range or OneOf])
    "task": ("reaching", "What to train: reaching (meta-learned reaching) or puck (puck-hitting meta-RL)",
             OneOf(("reaching", "puck"))),
    "preset": ("small", "Training preset: a name (config/training/<name>.yaml; for puck a section of "
                        "config/puck_meta_rl.yaml) or a YAML path"),
    "output": ("runs/sim_training", "Run folder"),
    "resume": (False, "Continue the run in output from its last checkpoints (reaching only)"),
    "eval_robots": (2, "Held-out robots per family evaluated through arm nodes (0: none)", Range(0, 1000)),
    "eval_targets": (3, "Fresh targets per held-out robot", Range(1, 1000)),
    "eval_repeats": (5, "Puck: hits per condition and adaptation step in the evaluation", Range(2, 1000)),
    "diagnostics_rate": (1.0, "Rate in Hz of the status on /diagnostics", Range(0.1, 100.0)),
}
LOG_EVERY = 10.0  # s between progress lines in the log while a stage goes on
_LOSS = re.compile(r"loss=([^,\s]+)")


class TrainingNode(Node):
    """Publishes the training's progress; :meth:`train` runs it (in the main thread, where signals arrive)."""

    def __init__(self) -> None:
        super().__init__("training_node")
        self.p = declare_parameters(self, PARAMETERS)
        if self.p["resume"] and self.p["task"] == "puck":
            raise ValueError("resume: puck training has no resume; start it in an empty output folder")
        self.output = Path(self.p["output"])
        self._lock = threading.Lock()
        self._status = {"stage": "starting", "step": "", "total": "", "loss": "", "checkpoint": ""}
        self._level = DiagnosticStatus.OK
        self._logged = (None, 0.0, None)  # stage, time and step of the last progress line
        self._publisher = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0 / self.p["diagnostics_rate"], self.publish)

    def latest_checkpoint(self) -> str:
        """The newest complete checkpoint file of the run ('' before the first)."""
        folder = self.output / "checkpoints" if self.p["task"] == "reaching" else self.output
        files = [f for f in folder.rglob("*.pt") if f.is_file() and not f.name.endswith(".model.pt")] \
            if folder.is_dir() else []
        return str(max(files, key=lambda f: f.stat().st_mtime)) if files else ""

    def stage(self, text: str, level: bytes = DiagnosticStatus.OK) -> None:
        """Enter a stage without a bar (logged at once)."""
        with self._lock:
            self._status.update(stage=text, step="", total="", loss="")
            self._level = level
        if level == DiagnosticStatus.OK:  # one call site per severity: rclpy refuses a changing one
            self.get_logger().info(text)
        elif level == DiagnosticStatus.WARN:
            self.get_logger().warning(text)
        else:
            self.get_logger().error(text)
        self.publish()

    def on_bar(self, bar: BarState) -> None:
        """A progress bar's state: the stage, step, total and loss; a log line and a status on a new stage, at its end
        and every LOG_EVERY s."""
        match = _LOSS.search(bar.postfix)
        with self._lock:
            kept = self._status["loss"] if bar.description == self._status["stage"] else ""
            self._status.update(stage=bar.description, step=str(int(bar.n)),
                                total="" if bar.total is None else str(int(bar.total)),
                                loss=match.group(1) if match else kept)
            status = dict(self._status)
        now = time.monotonic()
        finished = bar.n == bar.total and self._logged[2] != bar.n
        if self._logged[0] != bar.description or now - self._logged[1] >= LOG_EVERY or finished:
            self._logged = (bar.description, now, bar.n)
            loss_text = f", loss {status['loss']}" if status["loss"] else ""
            self.get_logger().info(f"{status['stage']}: {status['step']}/{status['total'] or '?'}{loss_text}")
            self.publish()  # a stage's start and end reach /diagnostics however short it is

    def publish(self) -> None:
        with self._lock:
            self._status["checkpoint"] = self.latest_checkpoint()
            values = [KeyValue(key=k, value=v) for k, v in self._status.items()]
            message = self._status["stage"]
            level = self._level
        status = DiagnosticStatus(level=level, name=f"training_node: {self.p['task']}", message=message,
                                  hardware_id=str(self.output), values=values)
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._publisher.publish(msg)

    def train(self) -> None:
        """Train, then evaluate, as the parameters say."""
        p = self.p
        self.stage(f"training {p['task']} preset '{p['preset']}' into {self.output}"
                   + (" (resuming)" if p["resume"] else ""))
        with observed_bars(self.on_bar):
            if p["task"] == "reaching":
                from mtrl_robot.learning.reaching.presets import load_preset
                from mtrl_robot.learning.reaching.train import train_from_preset

                train_from_preset(load_preset(p["preset"]), self.output, resume=p["resume"], progress=True)
                self.stage(f"trained; checkpoint {self.latest_checkpoint()}; MuJoCo evaluation in "
                           f"{self.output / 'report.md'}")
                if p["eval_robots"] > 0:
                    from mtrl_robot.ros.held_out_reaching import evaluate_through_arm_nodes

                    self.stage(f"evaluating {p['eval_robots']} held-out robot(s) per family through arm nodes")
                    table = evaluate_through_arm_nodes(self.output, p["eval_robots"], p["eval_targets"],
                                                       self.output / "arm_node_logs", self.get_logger().info)
                    self.get_logger().info(f"wrote {table}:\n{table.read_text()}")
            else:
                from mtrl_robot.learning.puck.evaluate import evaluate_puck
                from mtrl_robot.learning.puck.train import load_preset, train_puck

                train_puck(load_preset(p["preset"]), self.output, progress=True)
                self.stage("evaluating the puck policies in simulation")
                table, _ = evaluate_puck(self.output, self.output, repeats=p["eval_repeats"])
                self.get_logger().info(f"wrote {table}:\n{table.read_text()}")
        self.stage("done")


def main(args: list[str] | None = None) -> int:
    """Train and evaluate; exit 0 when done, 1 on bad input or a failure, 128 + signal number when interrupted."""
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    raise_on_signals()
    executor = SingleThreadedExecutor()
    node = None
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.1)

    spinner = threading.Thread(target=spin, daemon=True)
    try:
        node = TrainingNode()
        executor.add_node(node)
        spinner.start()
        with signals_prevail():
            node.train()
        return 0
    except Interrupted as exc:
        if node is not None:
            node.stage(f"{exc}; the last complete checkpoint is {node.latest_checkpoint() or 'none'} "
                       "(continue with resume:=true)", DiagnosticStatus.WARN)
        return exc.exit_code
    except (*CONFIGURATION_ERRORS, OSError, RuntimeError, FloatingPointError) as exc:
        if node is None:
            print(f"training_node: {exc}", file=sys.stderr)
        else:
            node.stage(f"failed: {exc}", DiagnosticStatus.ERROR)
        return 1
    finally:
        stop.set()
        if spinner.is_alive():
            spinner.join()
        executor.shutdown(timeout_sec=5.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
