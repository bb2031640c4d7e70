"""How long evaluation takes beyond rendering.

    python bench/eval.py [--project DIR] [--frames 90]

Scores four methods' worth of held-out crops (the real frames stand in for the
rendered ones, so no model is needed) with everything `speech2lip eval` does
after rendering: calibration, tracking, image metrics, CPBD, LMD, sync and the
report. --frames sets the held-out length (90 = the 10% of a 30 s clip at
30 fps); the frames are the clip's last ones. Without --project the
obama_address_a clip is prepared into a temporary folder first (not timed).
With a trained project the full job also runs and its timings are printed.
Prints wall-clock and process CPU seconds: on a shared machine wall time
grows with the load, CPU time does not.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path)
    ap.add_argument("--frames", type=int, default=90)
    args = ap.parse_args()

    from speech2lip.core.evaluation import evaluate as E
    from speech2lip.core.audio import frame_times
    from speech2lip.core.engine.checkpoint import latest_path
    from speech2lip.core.evaluation.evaluate import EvalData
    from speech2lip.core.project import Project
    from speech2lip.core.evaluation.report import write_report

    tmp = tempfile.TemporaryDirectory()
    root = args.project
    if root is None:
        from speech2lip.core.prepare.job import prepare

        root = Path(tmp.name) / "project"
        print("preparing obama_address_a (not timed) ...", flush=True)
        prepare(REPO.parent / "shared" / "media" / "obama_address_a.mp4", root)
    project = Project(root)
    n = min(args.frames, project.n_frames - 1)
    idx = np.arange(project.n_frames - n, project.n_frames)
    real = np.asarray(project.frames[idx])
    # Four methods' crops: real frames, and three copies shifted in time so trackers see distinct sequences.
    crops = {"real": real, "static": np.roll(real, 3, 0), "retrieval": np.roll(real, 7, 0),
             "model": np.roll(real, 11, 0)}
    wave = E.read_speech(project)

    cpu0, t0 = time.process_time(), time.perf_counter()
    sc = E.score(project, idx, crops, wave, frame_times(project.n_frames, project.fps), int(idx[0]))
    cpu1, t1 = time.process_time(), time.perf_counter()
    data = EvalData(fps=project.fps, frame_index=idx, strip_at=np.linspace(0, n - 1, 6).round().astype(int),
                    strips={k: v[:6, 96:224, 64:192] for k, v in crops.items()},
                    openings={k: E.opening(v) for k, v in sc.landmarks.items()},
                    envelope=sc.envelope[idx].mean(1), sync_curves={k: (s.lags, s.curve) for k, s in sc.syncs.items()},
                    history=None)
    write_report(Path(tmp.name) / "report", {"kind": "held_out", "methods": sc.results}, data)
    cpu2, t2 = time.process_time(), time.perf_counter()

    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print(f"held-out frames: {n} (clip of {project.n_frames} frames at {project.fps:g} fps), 4 methods")
    print(f"metrics (calibrate, track, PSNR/SSIM/CPBD/LMD, sync): {t1 - t0:6.1f} s wall {cpu1 - cpu0:6.1f} s CPU")
    print(f"report (figures, json, html):                      {t2 - t1:6.1f} s wall {cpu2 - cpu1:6.1f} s CPU")
    print(f"total beyond rendering:                            {t2 - t0:6.1f} s wall {cpu2 - cpu0:6.1f} s CPU")
    print(f"per held-out frame (4 methods):                    {(t2 - t0) / n * 1000:6.0f} ms wall")

    if latest_path(project).is_file():
        t = time.perf_counter()
        rep = E.evaluate(project.root, output=Path(tmp.name) / "full")
        print(f"full eval job ({rep['preset']} model, {rep['frames']['evaluated']} frames): "
              f"{time.perf_counter() - t:.1f} s wall; " + ", ".join(f"{k} {v}" for k, v in rep["timings"].items()))
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
