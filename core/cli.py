"""The `speech2lip` command line: every job the GUI runs, without a display.

Each subcommand wraps one core job: the job reports through a progress
callback, which becomes a tqdm bar here. A UserError prints one line and exits
with status 2; Ctrl-C cancels the job cleanly (status 130).
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from .errors import UserError
from .jobs import CancelToken, Cancelled, Progress

# Modules that add their own subcommands through register(subparsers).
COMMAND_MODULES = ["cli_engine", "cli_eval"]


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


def run_job(job: Callable, *args, quiet: bool = False, **kwargs):
    """Run a core job with a tqdm bar; SIGINT sets its cancel token instead of killing it."""
    cancel = CancelToken()
    bar = TqdmProgress(quiet)
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):
        if cancel.cancelled:
            signal.signal(signal.SIGINT, previous)
        cancel.cancel()
        print("\ncancelling… (press Ctrl-C again to force)", file=sys.stderr)

    try:
        signal.signal(signal.SIGINT, on_sigint)
    except ValueError:          # not in the main thread
        pass
    try:
        return job(*args, progress=bar, cancel=cancel, **kwargs)
    finally:
        bar.close()
        try:
            signal.signal(signal.SIGINT, previous)
        except ValueError:
            pass


def cmd_prepare(args) -> int:
    from .prepare import prepare

    t = time.perf_counter()
    extra = {} if args.track_every is None else {"track_every": args.track_every}
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
    print(f"  canonical   frame {m.canonical_index}; rigid-fit residual {s['residual_mean_px']:.2f} px mean")
    print(f"  motion      mouth/face {s['mouth_motion_ratio_before']:.1f}x as decoded, "
          f"{s['mouth_motion_ratio_after']:.1f}x in canonical space")
    print(f"  took        {time.perf_counter() - t:.1f} s; pictures in {project.diagnostics}")
    for w in s.get("warnings", []):
        print(f"  warning: {w}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="speech2lip", description="Speech2Lip Studio from the command line.")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("prepare", help="turn a talking-head clip into a project folder")
    p.add_argument("video", help="any video file ffmpeg reads")
    p.add_argument("--project", required=True, help="folder to create (must be empty unless --force)")
    p.add_argument("--size", type=int, choices=(256, 512), default=256, help="working crop size")
    p.add_argument("--force", action="store_true", help="replace an existing project folder")
    p.add_argument("--track-every", type=int, metavar="K",
                   help="run the face mesh on every K-th frame and interpolate between when the face is still "
                        "(default 2; 1 tracks every frame, about 1.4x slower)")
    p.set_defaults(func=cmd_prepare)
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f".{name}", __package__)
        except ModuleNotFoundError as e:
            if e.name != f"{__package__}.{name}":
                raise
            continue
        mod.register(sub)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"speech2lip: error: {e}", file=sys.stderr)
        return e.exit_code
    except Cancelled:
        print("speech2lip: cancelled; nothing half-written was kept.", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("speech2lip: interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
