"""The one adapter between core jobs and Qt: progress callback + cancel token -> signals.

A core job is `fn(..., progress=ProgressFn, cancel=CancelToken)`. `Job` runs it on
a worker thread and re-emits what it reports as Qt signals, delivered in the GUI
thread. `JobQueue` owns one thread and runs its jobs one at a time in priority
order: the engine queue carries prepare, train, preview rendering, export and
evaluation, so training and preview rendering never compete for the device, and a
preview waits (yields) while training runs. A second queue carries light file
work (probing, decoding audio) that must not wait behind training.
"""
from __future__ import annotations

import atexit
import gc
import heapq
import itertools
import os
import sys
import threading
import time
import traceback
import weakref
from typing import Any, Callable, Optional

from PySide6.QtCore import QCoreApplication, QObject, QThread, QTimer, Signal

from speech2lip.core.jobs import CancelToken, Cancelled, Progress

HIGH, NORMAL, LOW = 0, 10, 20      # user-started jobs first, previews last
BACKGROUND_NICE = 10


class Job(QObject):
    """One core job. Connect its signals, then hand it to a JobQueue."""

    started = Signal()
    progress = Signal(object)          # core.jobs.Progress, throttled
    succeeded = Signal(object)         # the job's return value
    failed = Signal(object, str)       # the exception, its traceback text
    cancelled = Signal()
    finished = Signal()                # always last, whatever happened

    def __init__(self, name: str, fn: Callable[..., Any], *args: Any, min_interval: float = 0.05,
                 **kwargs: Any) -> None:
        super().__init__()
        self.name, self.fn, self.args, self.kwargs = name, fn, args, kwargs
        self.token = CancelToken()
        self.min_interval = min_interval
        self.state = "new"             # queued, running, done, failed, cancelled
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.slot: Optional[str] = None
        self._last_emit = 0.0
        self._last_stage = None
        self.last_report: Optional[Progress] = None    # unthrottled: where the job really got to

    def cancel(self) -> None:
        self.token.cancel()

    @property
    def is_active(self) -> bool:
        return self.state in ("queued", "running")

    # worker thread ---------------------------------------------------------------
    def _report(self, p: Progress) -> None:
        # Throttle: a trainer may report every step; the GUI needs ~20 updates/s at most.
        self.last_report = p
        now = time.monotonic()
        if (p.data or p.stage != self._last_stage or (p.total and p.done >= p.total)
                or now - self._last_emit >= self.min_interval):
            self._last_emit, self._last_stage = now, p.stage
            self.progress.emit(p)

    def _run(self) -> None:
        self.state = "running"
        self.started.emit()
        try:
            self.token.raise_if_cancelled()
            self.result = self.fn(*self.args, progress=self._report, cancel=self.token, **self.kwargs)
        except Cancelled:
            self.state = "cancelled"
            self.cancelled.emit()
        except BaseException as e:    # shown in a dialog; a worker thread must never die
            self.state, self.error = "failed", e
            self.failed.emit(e, traceback.format_exc())
        else:
            self.state = "done"
            self.succeeded.emit(self.result)
        finally:
            self.finished.emit()


class _Runner(QThread):
    def __init__(self, queue: "JobQueue") -> None:
        super().__init__()
        self._queue = queue

    def run(self) -> None:
        if sys.platform.startswith("linux"):
            # Linux nice values are per thread: engine work (and the compute threads it starts)
            # yields the CPU to the UI thread, so painting never waits behind training.
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
            except OSError:
                pass
        while True:
            job = self._queue._take()
            if job is None:
                return
            job._run()
            self._queue._finish(job)


class JobQueue(QObject):
    """One worker thread; jobs run one at a time, lowest priority number first, FIFO within it."""

    busy_changed = Signal(bool)
    job_started = Signal(object)

    def __init__(self, name: str = "engine", parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        collect_garbage_in_gui_thread()     # before any worker thread exists
        self.name = name
        self._heap: list[tuple[int, int, Job]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._current: Optional[Job] = None
        self._stopping = False
        self._keep: set[Job] = set()   # strong refs until the GUI thread saw `finished`
        self._runner = _Runner(self)
        self._runner.setObjectName(f"s2l-{name}")
        self._runner.start(QThread.LowPriority)      # the portable hint; Linux gets a nice value above
        # A script that exits without closing the window must not destroy a running QThread
        # (Qt aborts the process): stop it first, at interpreter exit.
        atexit.register(_stop_at_exit, weakref.ref(self))

    @property
    def current(self) -> Optional[Job]:
        return self._current

    def pending(self) -> list[Job]:
        with self._cond:
            return [j for _, _, j in sorted(self._heap)]

    @property
    def busy(self) -> bool:
        return self._current is not None or bool(self._heap)

    def submit(self, job: Job, priority: int = NORMAL, slot: Optional[str] = None) -> Job:
        """Queue `job`. With `slot`, a still-queued job of the same slot is dropped: only the latest counts."""
        job.slot = slot
        job.state = "queued"
        self._keep.add(job)
        job.finished.connect(lambda j=job: self._keep.discard(j))
        with self._cond:
            if slot is not None:
                stale = [e for e in self._heap if e[2].slot == slot]
                for e in stale:
                    self._heap.remove(e)
                    e[2].cancel()
                    e[2].state = "cancelled"
                    self._keep.discard(e[2])
                heapq.heapify(self._heap)
            was_busy = self._current is not None or bool(self._heap)
            heapq.heappush(self._heap, (priority, next(self._seq), job))
            self._cond.notify()
        if not was_busy:
            self.busy_changed.emit(True)
        return job

    def has_running(self, name: str) -> bool:
        cur = self._current
        return cur is not None and cur.name == name

    def cancel_all(self) -> None:
        with self._cond:
            for _, _, j in self._heap:
                j.cancel()
                j.state = "cancelled"
                self._keep.discard(j)
            self._heap.clear()
            cur = self._current
        if cur is not None:
            cur.cancel()

    def shutdown(self, wait_ms: int = 30000) -> bool:
        """Cancel everything and stop the thread; True when it stopped in time."""
        self.cancel_all()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        return self._runner.wait(wait_ms)

    # worker thread ---------------------------------------------------------------
    def _take(self) -> Optional[Job]:
        with self._cond:
            while not self._heap and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            _, _, job = heapq.heappop(self._heap)
            self._current = job
        self.job_started.emit(job)
        return job

    def _finish(self, job: Job) -> None:
        with self._cond:
            self._current = None
            idle = not self._heap
        if idle:
            self.busy_changed.emit(False)


def collect_garbage_in_gui_thread() -> None:
    """Run Python's cycle collector only in the GUI thread, from a timer.

    Left automatic, a collection can start in whichever thread allocates, e.g. a worker loading a
    checkpoint, and free a cycle that holds Qt widgets there: Qt then crashes the process. This is
    pyqtgraph's `GarbageCollector` recipe, written out so the app need not import pyqtgraph at start.
    """
    app = QCoreApplication.instance()
    if app is None or getattr(app, "_s2l_gc_timer", None) is not None:
        return
    thresholds = gc.get_threshold()

    def check() -> None:
        counts = gc.get_count()
        for generation in (2, 1, 0):    # the oldest generation due, as gc itself would pick
            if counts[generation] > thresholds[generation]:
                gc.collect(generation)
                return

    timer = QTimer(app)
    timer.setInterval(500)
    timer.timeout.connect(check)
    timer.start()
    app._s2l_gc_timer = timer
    gc.disable()


def _stop_at_exit(ref) -> None:
    queue = ref()
    if queue is not None:
        try:
            queue.shutdown(10000)
        except RuntimeError:      # the C++ side is already gone, and its thread with it
            pass
