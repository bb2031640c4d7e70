"""Prepare throughput and memory: frames/s for the whole job and for each stage, and peak RSS.

    python bench/prepare.py [VIDEO ...] [--size 256|512] [--runs 3] [--loop K] [--tracker NAME]

Each run is a fresh process (so peak RSS is that run's own). --loop K first makes
a clip K times as long with ffmpeg's stream_loop, to show that memory stays flat
with clip length (K=15 turns a 20 s clip into 5 minutes). Prints medians.

This machine's speed drifts by tens of percent within minutes, so each clip's line
also gives the face mesh's own speed (one stream, every frame) measured right after
its runs: the figure to read the others against.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"

CHILD = r"""
import json, resource, sys, time
from speech2lip.core.prepare.job import prepare
t = time.perf_counter()
p = prepare(sys.argv[1], sys.argv[2], size=int(sys.argv[3]), force=True, tracker=sys.argv[4])
wall = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"n": p.n_frames, "wall": wall, "stages": p.manifest.stats["stage_seconds"], "rss_mb": rss}))
"""


def looped(video: Path, k: int, out_dir: Path) -> Path:
    from speech2lip.core.media import ffmpeg_exe

    out = out_dir / f"{video.stem}_x{k}.mp4"
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-stream_loop", str(k - 1), "-i", str(video),
                    "-c", "copy", str(out)], check=True)
    return out


def mesh_ms(video: Path, frames: int = 150, tracker: str = "facemesh") -> float:
    """Milliseconds per frame of the face tracker alone, one stream, every frame."""
    import time

    from speech2lip.core.prepare.faces import FaceTracker
    from speech2lip.core.media import read_frames

    clip = [f for _, f in zip(range(frames), read_frames(video))]
    with FaceTracker(tracker=tracker) as follower:
        follower.track(clip[:10])
        t = time.perf_counter()
        follower.track(clip)
        return (time.perf_counter() - t) / len(clip) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("videos", nargs="*", type=Path)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--loop", type=int, default=1)
    ap.add_argument("--tracker", default="facemesh", help="core/prepare/tracking backend (facemesh, mediapipe)")
    args = ap.parse_args()
    videos = args.videos or sorted(MEDIA.glob("*.mp4"))
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores; working size {args.size}², tracker {args.tracker}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for video in videos:
            src = looped(video, args.loop, tmp) if args.loop > 1 else video
            runs = []
            for _ in range(args.runs):
                out = subprocess.run([sys.executable, "-c", CHILD, str(src), str(tmp / "p"), str(args.size), args.tracker],
                                     capture_output=True, text=True, check=True)
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            n = runs[0]["n"]
            fps = statistics.median(n / r["wall"] for r in runs)
            rss = max(r["rss_mb"] for r in runs)
            each = ", ".join(f"{n / r['wall']:.0f}" for r in runs)
            print(f"{src.name}: {n} frames, {fps:.0f} frames/s overall (median of {len(runs)}: {each}), "
                  f"peak RSS {rss:.0f} MB; the tracker alone: {mesh_ms(video, tracker=args.tracker):.1f} ms/frame")
            for stage in runs[0]["stages"]:
                s = statistics.median(r["stages"][stage] for r in runs)
                rate = f"{n / s:7.0f} frames/s" if s >= 0.01 else "  (ran beside the stage before)"
                print(f"    {stage:<15} {s:6.2f} s  {rate}")


if __name__ == "__main__":
    main()
