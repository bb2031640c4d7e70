"""The worker adapter: core-style jobs become Qt signals, one at a time, in priority order."""
from __future__ import annotations

import gc
import threading
import time

import pytest

from speech2lip.core.errors import FaceError
from speech2lip.core.jobs import Progress

pytest.importorskip("pytestqt")

from speech2lip.app.worker import HIGH, LOW, NORMAL, Job, JobQueue  # noqa: E402


def counting_job(n, delay=0.0, log=None, name="", progress=None, cancel=None):
    for i in range(n):
        cancel.raise_if_cancelled()
        if delay:
            time.sleep(delay)
        progress(Progress("count", i + 1, n, data={"i": i} if i == n - 1 else {}))
    if log is not None:
        log.append(name)
    return n


@pytest.fixture()
def queue(qtbot):
    q = JobQueue("test")
    yield q
    q.shutdown(5000)


def test_signals_arrive_in_gui_thread(qtbot, queue):
    gui = threading.get_ident()
    seen = []
    job = Job("count", counting_job, 5)
    job.progress.connect(lambda p: seen.append((p.done, threading.get_ident() == gui)))
    with qtbot.waitSignal(job.succeeded, timeout=5000) as blocker:
        queue.submit(job)
    assert blocker.args == [5]
    qtbot.wait(20)
    assert seen and all(in_gui for _, in_gui in seen)
    assert seen[-1][0] == 5                        # the last report always gets through the throttle
    assert job.state == "done"


def test_failure_carries_exception_and_traceback(qtbot, queue):
    def bad(progress=None, cancel=None):
        raise FaceError("no face found in x.mp4; use a clip where one speaker faces the camera.")

    job = Job("bad", bad)
    with qtbot.waitSignal(job.failed, timeout=5000) as blocker:
        queue.submit(job)
    exc, tb = blocker.args
    assert isinstance(exc, FaceError) and "Traceback" in tb and "bad" in tb
    assert job.state == "failed"


def test_one_at_a_time_by_priority_and_cancel(qtbot, queue):
    log: list[str] = []
    blocker_job = Job("first", counting_job, 20, 0.01, log, "first")
    queue.submit(blocker_job)
    qtbot.waitUntil(lambda: blocker_job.state == "running", timeout=5000)
    low = queue.submit(Job("low", counting_job, 1, 0, log, "low"), LOW)
    normal = queue.submit(Job("normal", counting_job, 1, 0, log, "normal"), NORMAL)
    high = queue.submit(Job("high", counting_job, 1, 0, log, "high"), HIGH)
    doomed = queue.submit(Job("doomed", counting_job, 50, 0.01, log, "doomed"), LOW)
    with qtbot.waitSignal(doomed.cancelled, timeout=5000):
        doomed.cancel()
    for j in (low, normal, high):
        qtbot.waitUntil(lambda j=j: j.state == "done", timeout=5000)
    assert log == ["first", "high", "normal", "low"]
    assert doomed.state == "cancelled" and "doomed" not in log


def test_slot_keeps_only_the_latest_request(qtbot, queue):
    log: list[str] = []
    running = queue.submit(Job("busy", counting_job, 20, 0.01, log, "busy"))
    qtbot.waitUntil(lambda: running.state == "running", timeout=5000)
    stale = queue.submit(Job("a", counting_job, 1, 0, log, "a"), LOW, slot="preview")
    fresh = queue.submit(Job("b", counting_job, 1, 0, log, "b"), LOW, slot="preview")
    qtbot.waitUntil(lambda: fresh.state == "done", timeout=5000)
    assert stale.state == "cancelled" and log == ["busy", "b"]


def test_cancel_running_job_and_shutdown(qtbot):
    q = JobQueue("t2")
    job = Job("long", counting_job, 1000, 0.01)
    q.submit(job)
    qtbot.waitUntil(lambda: job.state == "running", timeout=5000)
    t0 = time.monotonic()
    assert q.shutdown(5000)                        # cancels the running job and stops the thread
    assert time.monotonic() - t0 < 2.0
    assert job.state == "cancelled"


def test_progress_is_throttled(qtbot, queue):
    n = 2000
    seen = []
    job = Job("fast", counting_job, n)
    job.progress.connect(lambda p: seen.append(p.done))
    with qtbot.waitSignal(job.finished, timeout=10000):
        queue.submit(job)
    qtbot.wait(20)
    assert seen[-1] == n and len(seen) < n / 10


class _Cycle:
    """A reference cycle whose finaliser notes the thread the cycle collector ran in."""

    def __init__(self, seen):
        self.me, self.seen = self, seen

    def __del__(self):
        self.seen.append(threading.get_ident())


def test_cycles_made_in_a_worker_are_collected_in_the_gui_thread(qtbot, queue):
    # Qt crashes when a cycle that holds widgets is freed in a worker thread (CI saw it: a
    # collection started while a worker loaded a checkpoint). So the collector runs from a GUI timer.
    gui, seen = threading.get_ident(), []

    def make_garbage(progress=None, cancel=None):
        for _ in range(5000):       # several times gc's automatic threshold
            _Cycle(seen)
        return True

    job = Job("garbage", make_garbage)
    with qtbot.waitSignal(job.succeeded, timeout=10000):     # listening before the job can finish
        queue.submit(job)
    qtbot.waitUntil(lambda: len(seen) >= 4000, timeout=5000)   # the timer's work; the rest is below gc's threshold
    gc.collect()
    assert len(seen) == 5000 and set(seen) == {gui}
