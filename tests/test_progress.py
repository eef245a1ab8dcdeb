"""Progress bars of worker processes are drawn by the parent, one line per worker; workers draw nothing."""

import io
import multiprocessing

from mtrl_robot.core.progress import BarRelay, BarState, observed_bars, progress_bar, relay_bars_to


def _count(name: str) -> str:
    for _ in progress_bar(range(50), desc=f"first {name}", unit="step", mininterval=0):
        pass
    for _ in progress_bar(range(30), desc=f"second {name}", unit="step", mininterval=0):
        pass
    return name


def test_worker_bars_are_drawn_by_the_parent_one_line_each(capfd):
    screen = io.StringIO()
    with BarRelay(file=screen) as bars, multiprocessing.get_context("spawn").Pool(2, relay_bars_to,
                                                                                 (bars.queue,)) as pool:
        assert sorted(pool.map(_count, ["a", "b"])) == ["a", "b"]
        pool.close()  # workers that exit on their own send every bar update before they end
        pool.join()
    assert capfd.readouterr().err == ""  # the workers wrote nothing on the terminal themselves
    drawn = screen.getvalue()
    for name in ("a", "b"):
        assert "first " + name in drawn
        assert f"second {name}: 100%" in drawn and "30/30" in drawn


def test_a_bar_in_a_single_process_is_plain_tqdm(capfd):
    for _ in progress_bar(range(3), desc="alone", mininterval=0):
        pass
    assert "alone: 100%" in capfd.readouterr().err


def test_observed_bars_draw_nothing_and_report_their_state(capfd):
    seen = []
    with observed_bars(seen.append):
        with progress_bar(total=4, desc="meta-train panda", unit="step", mininterval=0) as bar:
            for _ in range(4):
                bar.update()
                bar.set_postfix(loss="1.5e-03")
    for _ in progress_bar(range(2), desc="after", mininterval=0):
        pass
    assert "meta-train" not in capfd.readouterr().err
    assert seen[-1] == BarState("meta-train panda", 4, 4, "step", "loss=1.5e-03")
    assert sorted({s.n for s in seen if s.postfix}) == [1, 2, 3, 4] and all(s.description != "after" for s in seen)
