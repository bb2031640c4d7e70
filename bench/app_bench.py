"""Desktop app figures: startup to the start page, scrub latency of cached and uncached frames, and
the memory the preview frame cache holds.

    python bench/app_bench.py [--project TRAINED_PROJECT] [--runs 3]

Startup is measured from launching a fresh Python process to the start page
being on screen (offscreen platform). Scrubbing is measured in the editor on a
trained project: a cached frame from playhead move to painted, an uncached one
from playhead move to the rendered frame painted (quick model, working size as
prepared). Without --project, a 5.5 s cut of a real clip is prepared and
trained for a few steps first (the model's size, not its quality, sets the cost).
The cache figure replays the issue-14 case (a 378-frame timeline played and edited
until 1620 frames were rendered) through the real FrameCache at the default limit,
with frames of the project's size and of a 1080p clip, and reports what stays held.
Prints numbers; never passes or fails.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

STARTUP = r"""
import sys, time
from PySide6.QtCore import QTimer
from speech2lip.app.main import main
def shown():
    print("SHOWN", flush=True)
    from PySide6.QtWidgets import QApplication
    QApplication.instance().quit()
QTimer.singleShot(0, shown)
main([])
"""


def bench_startup(runs: int) -> list[float]:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen",
               SPEECH2LIP_SETTINGS=str(Path(tempfile.mkdtemp()) / "s.ini"))
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", STARTUP], stdout=subprocess.PIPE, env=env, text=True)
        for line in proc.stdout:
            if line.startswith("SHOWN"):
                times.append(time.perf_counter() - t0)
                break
        proc.wait()
    return times


def bench_scrub(project: Path, n: int = 12) -> tuple[list[float], list[float]]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from app_support import SPEECH
    from speech2lip.app.mainwindow import MainWindow
    from speech2lip.app.settings import AppSettings
    from speech2lip.core.media import read_audio

    app = QApplication.instance() or QApplication([])
    win = MainWindow(AppSettings(Path(tempfile.mkdtemp()) / "s.ini"))
    win.resize(1600, 1000)
    win.show()
    assert win.open_project(project)
    win.go("dub")
    ed = win.editor
    ed.service.render_ahead = False           # measure on-demand rendering alone
    ed.model.add_source(str(SPEECH), read_audio(SPEECH))
    ed.model.add_clip(str(SPEECH), 0, 0)

    def run_until(cond, timeout=600.0):
        loop, timer, t0 = QEventLoop(), QTimer(), time.monotonic()
        timer.timeout.connect(lambda: (cond() or time.monotonic() - t0 > timeout) and loop.quit())
        timer.start(1)
        if not cond():
            loop.exec()
        timer.stop()

    frames = list(range(20, 20 + 3 * n, 3))
    run_until(lambda: ed.service.renderer() is not None)     # model loaded once, outside the timings
    ed.model.set_playhead(5)
    run_until(lambda: ed.viewer.shown_kind == "dubbed" and ed.viewer.shown_frame == 5)
    uncached, cached = [], []
    for f in frames:
        t0 = time.perf_counter()
        ed.model.set_playhead(f)
        run_until(lambda: ed.viewer.shown_kind == "dubbed" and ed.viewer.shown_frame == f)
        ed.viewer.view.repaint()
        uncached.append(time.perf_counter() - t0)
    for f in frames:
        ed.model.set_playhead(f - 1)
        t0 = time.perf_counter()
        ed.model.set_playhead(f)
        ed.viewer.view.repaint()
        assert ed.viewer.shown_kind == "dubbed"
        cached.append(time.perf_counter() - t0)
    win.close()
    return cached, uncached


def rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024
    except (OSError, StopIteration):
        return float("nan")


def bench_cache(shape: tuple[int, int, int], timeline: int = 378, rendered: int = 1620) -> str:
    """Fill a FrameCache at the default limit as playback and edits do; what it holds afterwards."""
    import numpy as np

    from speech2lip.app.editor.frame_cache import DEFAULT_MB, FrameCache

    cache = FrameCache(DEFAULT_MB * 2**20)
    rev = [0]
    cache.is_live = lambda k: k[0] == rev[0]
    rss0 = rss_mb()
    frame = np.zeros(shape, np.uint8)
    for i in range(rendered):
        if i // timeline != rev[0]:
            rev[0] = i // timeline             # each pass follows an audio edit: old frames are unreachable
            cache.prune()                      # as the editor does on every edit
        f = i % timeline
        cache.set_focus(f)
        cache.put((rev[0], f, (0.0, 0.0, 0.0)), frame.copy())
    held = cache.frames()
    near = sum(1 for f in held if abs(f - cache.focus) <= 30)
    unbounded = rendered * frame.nbytes / 2**20
    return (f"{shape[1]}x{shape[0]}: {len(cache)} frames, {cache.nbytes / 2**20:.0f} MB held "
            f"(limit {DEFAULT_MB} MB, unbounded {unbounded:.0f} MB), {near} within 1 s of the playhead, "
            f"RSS +{rss_mb() - rss0:.0f} MB")


def ms(xs: list[float]) -> str:
    xs = sorted(xs)
    return f"median {1000 * statistics.median(xs):.0f} ms, worst {1000 * xs[-1]:.0f} ms (n={len(xs)})"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--project", type=Path)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    print(f"startup to start page: {ms(bench_startup(args.runs))}")
    project = args.project
    if project is None:
        import tempfile as tf

        from app_support import short_clip, tiny_config
        from speech2lip.core.prepare.job import prepare
        from speech2lip.core.engine.train import train

        base = Path(tf.mkdtemp(prefix="s2l-bench-"))
        project = base / "short"
        prepare(short_clip(base / "short.mp4"), project)
        train(project, steps=2, config=tiny_config())
    cached, uncached = bench_scrub(project)
    print(f"scrub, cached frame shown: {ms(cached)}")
    print(f"scrub, uncached frame rendered and shown: {ms(uncached)}")
    from speech2lip.core.prepare.framestore import JpegPack

    full = tuple(JpegPack(Path(project) / "originals")[0].shape)     # what the preview caches: source frames
    for shape in (full, (1080, 1920, 3)):
        print(f"frame cache after 1620 renders of a 378-frame timeline, {bench_cache(shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
