"""The one interval, table and plot helper both evaluations report with."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mtrl_robot.evaluation.report import Curve, interval, markdown_table, plot_panels, student_t


def test_student_t_interval_is_wider_than_the_normal_one_for_small_n():
    spread = interval([1.0, 2.0, 3.0])  # mean 2, std 1, t(0.975, 2 dof) = 4.303
    assert spread.mean == 2.0 and spread.n == 3
    assert spread.half_width == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert (spread.lo, spread.hi) == pytest.approx((2.0 - spread.half_width, 2.0 + spread.half_width))
    assert spread.half_width > 1.96 / math.sqrt(3)
    assert spread.bounds() == "2.00 [-0.48, 4.48]"
    assert math.isnan(interval([5.0]).half_width) and interval([5.0]).mean == 5.0


def test_student_t_works_column_by_column():
    values = np.array([[1.0, 10.0], [3.0, 10.0]])
    mean, half = student_t(values)
    np.testing.assert_allclose(mean, [2.0, 10.0])
    assert half[0] == pytest.approx(12.7062047) and half[1] == 0.0  # std √2, n 2: t(0.975, 1 dof) × 1


def test_markdown_table_aligns_numbers_and_refuses_ragged_rows():
    text = markdown_table(["a", "b", "c"], [["x", "1", "2"]], ["Intro."], right_align_from=1)
    assert text == "Intro.\n\n| a | b | c |\n|---|---:|---:|\n| x | 1 | 2 |\n"
    assert markdown_table(["a"], [["x"]]).splitlines()[1] == "|---|"
    with pytest.raises(ValueError, match="2 cells for 3 columns"):
        markdown_table(["a", "b", "c"], [["x", "1"]])


def test_plot_panels_writes_a_png(tmp_path):
    curves = [Curve("m", [1, 5], [2.0, 1.0], [1.5, 0.5], [2.5, 1.5]), Curve("o", [1, 5], [0.1, 0.1], [0.0, 0.0],
                                                                            [0.2, 0.2], dashed=True)]
    path = plot_panels({"panda": curves, "gen3": curves, "all": curves}, tmp_path / "p.png", xlabel="K",
                       ylabel="cm", columns=2, log_y=True, title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not list(tmp_path.glob(".*.tmp"))
