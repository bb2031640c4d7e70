"""The `speech2lip` command line: every job the GUI runs, without a display.

Each subcommand wraps one core job: the job reports through a progress
callback, which becomes a tqdm bar on a terminal and a plain line every few
seconds in a log. A UserError prints one line and exits
with status 2; Ctrl-C, SIGTERM and SIGHUP (a closed terminal) cancel the job
cleanly, and a training saves its step first (status 128 + the signal).
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Callable, Optional

from . import engine_commands, eval_commands
from ..errors import UserError
from ..jobs import CancelToken, Cancelled, Progress

LOG_EVERY_S = 5.0           # a progress line this often when stderr is a file or a pipe


class TqdmProgress:
    """Turns Progress reports into one tqdm bar per stage."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self._bar = None
        self._stage: Optional[str] = None
        self.last: Optional[Progress] = None

    def __call__(self, p: Progress) -> None:
        from tqdm import tqdm

        self.last = p
        if self.quiet:
            return
        if p.stage != self._stage:
            self.close()
            self._stage = p.stage
            self._bar = tqdm(total=p.total or None, desc=p.stage, unit="", dynamic_ncols=True, leave=False)
        if self._bar is None:
            return
        if p.total and self._bar.total != p.total:
            self._bar.total = p.total
        self._bar.n = p.done
        post = {k: f"{v:.4g}" for k, v in p.data.items() if isinstance(v, (int, float))}
        if post:
            self._bar.set_postfix(post, refresh=False)
        elif p.message:
            self._bar.set_postfix_str(p.message, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class LineProgress:
    """Progress as plain lines for a log: one when a stage starts, then one every `every` seconds.

    A tqdm bar redraws with carriage returns, which a log file keeps: a 6-minute training
    wrote 350 KB of them."""

    def __init__(self, quiet: bool = False, every: float = LOG_EVERY_S, stream=None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.quiet, self.every, self.clock = quiet, every, clock
        self.stream = stream
        self._stage: Optional[str] = None
        self._at = 0.0
        self._pending: Optional[Progress] = None        # the latest report not yet printed
        self.last: Optional[Progress] = None

    def __call__(self, p: Progress) -> None:
        self.last = p
        if self.quiet:
            return
        now = self.clock()
        if p.stage != self._stage:
            self.close()                               # how the last stage ended
        if p.stage != self._stage or now - self._at >= self.every:
            self._stage, self._at, self._pending = p.stage, now, None
            self._print(p)
        else:
            self._pending = p

    @staticmethod
    def line(p: Progress) -> str:
        count = f" {p.done}/{p.total} ({100 * p.done / p.total:.0f}%)" if p.total else (f" {p.done}" if p.done else "")
        post = ", ".join(f"{k} {v:.4g}" for k, v in p.data.items() if isinstance(v, (int, float)))
        text = post or p.message
        return f"{p.stage}:{count}" + (f" {text}" if text else "")

    def _print(self, p: Progress) -> None:
        print(self.line(p), file=self.stream or sys.stderr, flush=True)

    def close(self) -> None:
        if self._pending is not None and not self.quiet:
            self._print(self._pending)
        self._pending = None


def progress_for(quiet: bool = False):
    """A tqdm bar on a terminal, plain lines every few seconds anywhere else."""
    try:
        tty = sys.stderr.isatty()
    except (AttributeError, ValueError):
        tty = False
    return TqdmProgress(quiet) if tty else LineProgress(quiet)


# Signals that stop a job as Ctrl-C does: a kill, and a closed terminal (absent on Windows).
STOP_SIGNALS = [getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)]
_received: list[int] = []          # the signal that stopped the last job, for its exit status


def run_job(job: Callable, *args, quiet: bool = False, **kwargs):
    """Run a core job with a progress display; a stop signal sets its cancel token instead of killing it,
    so the job saves what it has (a training its step) and cleans its temporary files."""
    cancel = CancelToken()
    bar = progress_for(quiet)
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}

    def on_signal(signum, frame):
        if cancel.cancelled:            # a second one forces
            signal.signal(signum, previous[signum])
        else:
            _received.append(signum)
        cancel.cancel()
        hint = " (press Ctrl-C again to force)" if signum == signal.SIGINT else ""
        print(f"\nstopping: saving and cleaning up…{hint}", file=sys.stderr)

    try:
        for s in STOP_SIGNALS:
            signal.signal(s, on_signal)
    except ValueError:          # not in the main thread
        pass
    try:
        return job(*args, progress=bar, cancel=cancel, **kwargs)
    finally:
        bar.close()
        try:
            for s, h in previous.items():
                signal.signal(s, h)
        except ValueError:
            pass


# Start-up chatter of MediaPipe's TensorFlow Lite and absl/glog loggers: nothing a user can act on.
NATIVE_LOG = re.compile(rb"^(INFO: Created TensorFlow Lite|INFO: Initialized TensorFlow Lite|"
                        rb"WARNING: All log messages before absl::InitializeLog|[IWE]\d{4} [\d:.]+ +\d+ \S+:\d+\])")


@contextmanager
def native_logs_filtered():
    """Drop native library log lines from stderr (fd 2, where C++ writes); everything else passes."""
    try:
        saved = os.dup(2)
        r, w = os.pipe()
    except OSError:
        yield
        return
    sys.stderr.flush()
    os.dup2(w, 2)
    os.close(w)

    def pump() -> None:
        with os.fdopen(r, "rb") as src:
            for line in src:
                if not NATIVE_LOG.match(line):
                    os.write(saved, line)

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)          # the pipe's last writer closes: the pump ends
        t.join(timeout=2)
        os.close(saved)


def cmd_prepare(args) -> int:
    from ..prepare.job import prepare

    t = time.perf_counter()
    extra = {} if args.track_every is None else {"track_every": args.track_every}
    extra["tracker"] = args.tracker
    extra["face"] = args.face
    project = run_job(prepare, Path(args.video), Path(args.project), size=args.size, force=args.force,
                      quiet=args.quiet, **extra)
    m = project.manifest
    s = m.stats
    print(f"prepared {project.root}")
    print(f"  frames      {project.n_frames} at {project.fps:g} fps ({project.n_train} train, "
          f"{project.n_frames - project.n_train} held out)")
    tracked = s.get("frames_tracked", project.n_frames)
    print(f"  faces found {s['faces_found']} of {project.n_frames} ({tracked} tracked by the mesh, "
          f"{project.n_frames - tracked} interpolated)")
    if len(s.get("faces", [])) > 1:
        print(f"  chosen      {s['face_choice']['reason']}; see {project.faces_picture}, --face chooses another")
    print(f"  canonical   frame {m.canonical_index}; rigid-fit residual {s['residual_mean_px']:.2f} px mean")
    print(f"  motion      mouth/face {s['mouth_motion_ratio_before']:.1f}x as decoded, "
          f"{s['mouth_motion_ratio_after']:.1f}x in canonical space")
    print(f"  took        {time.perf_counter() - t:.1f} s; pictures in {project.diagnostics}")
    for w in s.get("warnings", []):
        print(f"  warning: {w}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="speech2lip", description="Speech2Lip Studio from the command line.")
    parser.add_argument("--quiet", action="store_true", help="no progress bars and no library log lines")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("prepare", help="turn a talking-head clip into a project folder")
    p.add_argument("video", help="any video file ffmpeg reads")
    p.add_argument("--project", required=True, help="folder to create (must be empty unless --force)")
    p.add_argument("--size", type=int, choices=(256, 512), default=256, help="working crop size")
    p.add_argument("--force", action="store_true", help="replace an existing project folder")
    p.add_argument("--track-every", type=int, metavar="K",
                   help="run the face mesh on every K-th frame and interpolate between when the face is still "
                        "(default 2; 1 tracks every frame, about 1.4x slower)")
    p.add_argument("--tracker", default="facemesh", metavar="NAME",
                   help="face tracker: facemesh (default; shipped, offline), mediapipe (needs the mediapipe "
                        "package) or fan (face-alignment's 68 points for the lip box and LMD; needs its weights)")
    p.add_argument("--face", default="speaking", metavar="WHICH",
                   help="which face to prepare when the clip shows several: speaking (default: the face whose "
                        "mouth follows the clip's speech), largest, left, right, or a number counted from 1 at "
                        "the left, as in the project's diagnostics/faces.jpg")
    p.set_defaults(func=cmd_prepare)
    engine_commands.register(sub)
    eval_commands.register(sub)
    for p in sub.choices.values():
        # --quiet also after the subcommand; SUPPRESS keeps a --quiet given before it.
        p.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="no progress bars and no library log lines")
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("speech2lip-studio")
    except PackageNotFoundError:
        return "(not installed)"


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    _received.clear()
    with native_logs_filtered() if args.quiet else nullcontext():
        return _run(args)


def _run(args) -> int:
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"speech2lip: error: {e}", file=sys.stderr)
        return e.exit_code
    except Cancelled as e:
        saved = f" {e.args[0]}" if e.args else ""
        print(f"speech2lip: stopped; no half-written file was kept.{saved}", file=sys.stderr)
        return 128 + int(_received[0] if _received else signal.SIGINT)
    except KeyboardInterrupt:
        print("speech2lip: interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
