"""Reporting an evaluation, the same way for every task: Student-t intervals, Markdown tables, curves with bands.

Both evaluations (reaching error against K, puck distance against adaptation step) summarise a few repeated
measurements per cell; with small n the Student-t interval is the right one (a normal interval is too narrow).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from mtrl_robot.core.atomic import write_atomic

LEVEL = 0.95  # confidence level of every interval reported


@dataclass(frozen=True)
class Interval:
    """Mean of ``n`` values and the half-width of its Student-t confidence interval (NaN if n < 2)."""

    mean: float
    half_width: float
    n: int

    @property
    def lo(self) -> float:
        return self.mean - self.half_width

    @property
    def hi(self) -> float:
        return self.mean + self.half_width

    def bounds(self) -> str:
        """``mean [lo, hi]`` with two decimals."""
        return f"{self.mean:.2f} [{self.lo:.2f}, {self.hi:.2f}]"

    def to_dict(self) -> dict:
        return {"mean": self.mean, "lo": self.lo, "hi": self.hi, "n": self.n}


def student_t(values: Sequence[float] | np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Mean over the first axis and the half-width of its ``level`` Student-t interval (NaN for fewer than 2)."""
    values = np.asarray(values, dtype=float)
    n = values.shape[0]
    mean = values.mean(axis=0) if n else np.full(values.shape[1:], np.nan)
    if n < 2:
        return mean, np.full(np.shape(mean), np.nan)
    sem = values.std(axis=0, ddof=1) / np.sqrt(n)
    return mean, stats.t.ppf(0.5 + level / 2, n - 1) * sem


def interval(values: Sequence[float] | np.ndarray, level: float = LEVEL) -> Interval:
    """The :class:`Interval` of a flat list of measurements."""
    values = np.asarray(values, dtype=float).ravel()
    mean, half = student_t(values, level)
    return Interval(float(mean), float(half), len(values))


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]], intro: Sequence[str] = (),
                   right_align_from: int | None = None) -> str:
    """A Markdown table (after the ``intro`` lines, each followed by a blank line); columns from
    ``right_align_from`` on are right-aligned (numbers), the others left as Markdown's default."""
    align = ["---:" if right_align_from is not None and i >= right_align_from else "---" for i in range(len(columns))]
    lines = [line for text in intro for line in (text, "")]
    lines += ["| " + " | ".join(columns) + " |", "|" + "|".join(align) + "|"]
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(f"a table row has {len(row)} cells for {len(columns)} columns: {list(row)}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Curve:
    """One line of a panel: ``mean`` against ``x`` with its interval ``[lo, hi]`` as a band."""

    label: str
    x: Sequence[float]
    mean: Sequence[float]
    lo: Sequence[float]
    hi: Sequence[float]
    dashed: bool = False


def plot_panels(panels: dict[str, list[Curve]], path: str | Path, *, xlabel: str, ylabel: str,
                columns: int | None = None, log_y: bool = False, title: str | None = None) -> Path:
    """One panel per key (in rows of ``columns``, default all in one row), one line and band per curve; PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = columns or len(panels)
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.6 * rows), squeeze=False, sharey=not log_y)
    for ax, (name, curves) in zip(axes.flat, panels.items(), strict=False):
        for curve in curves:
            mean, lo, hi = (np.asarray(v, dtype=float) for v in (curve.mean, curve.lo, curve.hi))
            line, = ax.plot(curve.x, mean, "--" if curve.dashed else "-", marker="o", label=curve.label)
            if log_y:  # a band reaching zero or below would swallow the axis
                lo = np.maximum(lo, mean * 0.05)
            ax.fill_between(curve.x, lo, hi, color=line.get_color(), alpha=0.15)
        if log_y:
            ax.set_yscale("log")
        ax.set_xticks(list(curves[0].x) if curves else [])
        ax.set_title(name)
        ax.set_xlabel(xlabel)
        ax.grid(True, which="both", alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        return write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=120))
    finally:
        plt.close(fig)
