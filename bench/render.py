"""Render speed: frames/s by working size and batch size, and peak memory.

    python bench/render.py [--project DIR] [--sizes 256 512] [--batches 1 4 8 16] [--device auto]

Without --project it prepares ../shared/media/obama_address_a.mp4 at each size
into a temporary folder. Speed does not depend on what the weights learned, so
an untrained checkpoint (one training step) is rendered. Prints, per size and
batch: the whole crop path (mouth + C2O paste + Blend-Net), the mouth alone,
compositing into the full-resolution frame, with pose control (+10 deg yaw), and
what pose control costs (posed time over plain time, the two timed call by call in
turn; the target is at most 1.5x).
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from speech2lip.core import audio as A
from speech2lip.core.dub.render import Renderer

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO.parent / "shared" / "media" / "obama_address_a.mp4"


def ensure_trained(project_dir: Path, device: str) -> None:
    from speech2lip.core.engine.train import train

    if not (project_dir / "checkpoints" / "latest.pt").is_file():
        train(project_dir, steps=1, device=device)


def sync(dev) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, n_frames: int, min_seconds: float = 3.0, dev=None) -> float:
    """frames/s of fn() rendering n_frames per call, over at least min_seconds after a warm-up."""
    fn()
    sync(dev)
    t0, frames = time.perf_counter(), 0
    while time.perf_counter() - t0 < min_seconds:
        fn()
        frames += n_frames
    sync(dev)
    return frames / (time.perf_counter() - t0)


def paired(plain, posed, seconds: float, dev=None) -> tuple[float, float]:
    """Median seconds per call of two jobs timed alternately, call by call, for about `seconds`.

    This machine's speed drifts by tens of percent within a minute; alternating single
    calls makes their ratio (the pose cost) immune to it.
    """
    plain(), posed()
    a, b = [], []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(a) < 5:
        for fn, out in ((plain, a), (posed, b)):
            sync(dev)
            t0 = time.perf_counter()
            fn()
            sync(dev)
            out.append(time.perf_counter() - t0)
    return float(np.median(a)), float(np.median(b))


def bench(project_dir: Path, batches: list[int], device: str, seconds: float, runs: int = 5) -> list[dict]:
    ensure_trained(project_dir, device)
    r = Renderer(project_dir, device=device)
    p = r.project
    mel = np.array(p.array("mel"))
    rows = []
    for b in batches:
        bg = np.arange(b) % p.n_frames
        wins = A.mel_windows(mel, A.frame_times(p.n_frames, p.fps)[bg])
        yaw = np.tile([[10.0, 0.0, 0.0]], (b, 1))
        crops = r.render_crops(wins, bg)
        jobs = {"mouth_fps": lambda: r.mouths(wins, bg), "composite_fps": lambda: r.composite_full(crops, bg)}
        # Runs interleave the measurements, so a slow spell of the machine hits all of them alike.
        seen: dict[str, list[float]] = {k: [] for k in jobs}
        for _ in range(runs):
            for k, fn in jobs.items():
                seen[k].append(timed(fn, b, seconds, r.device))
        row = {"size": p.size, "batch": b, **{k: float(np.median(v)) for k, v in seen.items()}}
        plain, posed = paired(lambda: r.render_crops(wins, bg), lambda: r.render_crops(wins, bg, yaw),
                              runs * seconds * 2, r.device)
        row.update(crops_fps=b / plain, pose_fps=b / posed, pose_cost=posed / plain)
        rows.append(row)
        print(f"{row['size']:5d} {b:6d} {row['crops_fps']:10.1f} {row['mouth_fps']:10.1f} "
              f"{row['composite_fps']:10.1f} {row['pose_fps']:10.1f} {row['pose_cost']:9.2f}x", flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, help="a prepared project (default: prepare the demo clip)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8, 16])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seconds", type=float, default=3.0, help="timing per measurement")
    ap.add_argument("--runs", type=int, default=5, help="measurements per figure; the median is printed")
    ap.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from speech2lip.core.device import pick_device

    dev = pick_device(args.device)
    print(f"device {dev} ({torch.get_num_threads()} CPU threads)")
    print(f"medians of {args.runs} runs")
    print(" size  batch  crops/s    mouths/s   composite/s  pose+10deg/s  pose cost")
    with tempfile.TemporaryDirectory() as tmp:
        projects = [args.project] if args.project else []
        if not args.project:
            from speech2lip.core.prepare.job import prepare

            for s in args.sizes:
                projects.append(prepare(CLIP, Path(tmp) / f"p{s}", size=s).root)
        for pd in projects:
            bench(Path(pd), args.batches, args.device, args.seconds, args.runs)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {rss:.0f} MB")
    if dev.type == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
