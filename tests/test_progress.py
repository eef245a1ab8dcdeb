"""Progress bars of worker processes are drawn by the parent, one line per worker; workers draw nothing."""

import io
import multiprocessing
import os
import signal
import threading
import time
from typing import Any

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


def _die_holding_the_write_lock(queue: Any) -> None:
    relay_bars_to(queue)
    for _ in progress_bar(range(5), desc="dying worker", unit="step", mininterval=0):
        pass
    time.sleep(0.5)  # the queue's feeder thread sends the updates
    queue._wlock.acquire()  # as a worker killed while sending leaves it: taken for good
    os.kill(os.getpid(), signal.SIGKILL)


def test_the_relay_ends_even_after_a_worker_died_holding_the_queues_write_lock():
    screen = io.StringIO()
    relay = BarRelay(file=screen).__enter__()
    worker = multiprocessing.get_context("spawn").Process(target=_die_holding_the_write_lock, args=(relay.queue,))
    worker.start()
    worker.join(timeout=60)
    assert worker.exitcode == -signal.SIGKILL
    ending = threading.Thread(target=relay.__exit__, args=(None, None, None), daemon=True)
    ending.start()
    ending.join(timeout=30)
    assert not ending.is_alive(), "the relay waits for a write lock no process will release"
    assert "dying worker: 100%" in screen.getvalue()
