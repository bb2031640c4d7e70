"""How far the default tracker's landmarks lie from another backend's, on the shared clips.

    python bench/tracker_agreement.py [VIDEO ...] [--against mediapipe] [--size 256]

Prepares each clip with both trackers (every frame tracked, no interpolation) and compares
the saved landmarks.npy in working-crop pixels (256² by default): mean and 95th percentile
distance over all 478 points, over the 40 lip points, and the share of frames whose mean is
within 0.5 px. Needs the other backend installed (mediapipe 0.10.x for the default).
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"


def in_crop(project, other) -> np.ndarray:
    """other's landmarks moved into project's working crop (the crops can differ by a pixel)."""
    lm = other.array("landmarks").copy()
    (x0, y0, side, _), (a0, b0, s0, _) = project.manifest.crop, other.manifest.crop
    k = other.size / s0
    lm[..., 0] = (lm[..., 0] / k + a0 - x0) * project.size / side
    lm[..., 1] = (lm[..., 1] / k + b0 - y0) * project.size / side
    lm[..., 2] *= project.size / side / k
    return lm


def main() -> None:
    from speech2lip.core.prepare.faces import LIPS
    from speech2lip.core.prepare.job import prepare

    ap = argparse.ArgumentParser()
    ap.add_argument("videos", nargs="*", type=Path)
    ap.add_argument("--against", default="mediapipe")
    ap.add_argument("--tracker", default="facemesh")
    ap.add_argument("--size", type=int, default=256)
    a = ap.parse_args()
    videos = a.videos or sorted(MEDIA.glob("*.mp4"))
    print(f"# {platform.machine()}, {os.cpu_count()} cores; {a.tracker} against {a.against}, "
          f"landmarks in {a.size}² working-crop pixels, every frame tracked")
    print(f"{'clip':<22} {'frames':>6} {'mean px':>8} {'p95 px':>7} {'lips mean':>9} {'frames <= 0.5':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        for video in videos:
            p = prepare(video, Path(tmp) / f"{video.stem}-a", size=a.size, track_every=1, tracker=a.tracker)
            q = prepare(video, Path(tmp) / f"{video.stem}-b", size=a.size, track_every=1, tracker=a.against)
            both = p.array("has_face") & q.array("has_face")
            d = np.linalg.norm(p.array("landmarks")[both, :, :2] - in_crop(p, q)[both, :, :2], axis=-1)
            per_frame = d.mean(1)
            print(f"{video.name:<22} {int(both.sum()):>6} {d.mean():>8.3f} {np.percentile(d, 95):>7.3f} "
                  f"{d[:, LIPS].mean():>9.3f} {100 * (per_frame <= 0.5).mean():>12.1f}%")


if __name__ == "__main__":
    main()
