"""The puck video (``mtrl-robot puck evaluate --video``): an MP4 of a puck's hits at adaptation step 0 beside the
same hits after adapting, drawn from the simulator."""

from __future__ import annotations

import imageio_ffmpeg
import numpy as np
import pytest

from mtrl_robot.evaluation.puck_video import puck_video
from mtrl_robot.evaluation.video import FPS, HOLD, PANEL_SIZE


@pytest.fixture(scope="module")
def run(small_puck_run):
    return small_puck_run


def test_the_video_is_an_mp4_of_the_hits_before_and_after_adaptation(run, tmp_path):
    made = puck_video(run, tmp_path / "hits.mp4", condition="iso_low", steps=1, hits=2)
    assert made.path == tmp_path / "hits.mp4" and made.path.read_bytes()[4:8] == b"ftyp"  # an MP4 container
    assert list(made.outcomes) == ["iso_low: step 0", "iso_low: step 1"]
    for outcomes in made.outcomes.values():  # every hit's final distance to its goal, in each panel
        assert len(outcomes) == 2 and all(o.endswith(" cm from the goal") or o.startswith("refused") for o in outcomes)
    reader = imageio_ffmpeg.read_frames(str(made.path))
    meta = next(reader)
    width, height = 2 * PANEL_SIZE[0], PANEL_SIZE[1]  # the two panels side by side
    assert tuple(meta["size"]) == (width, height) and meta["fps"] == FPS
    frames = np.stack([np.frombuffer(f, np.uint8).reshape(height, width, 3) for f in reader])
    assert len(frames) == made.frames >= 2 * (round(HOLD * FPS) + 1)  # every hit: motion, slide and a hold
    assert np.abs(frames[0].astype(int) - frames[len(frames) // 6]).mean() > 0.5  # the arm and the puck move
    assert frames.std() > 10  # a picture, not a blank frame
