"""Training speed and time-to-quality: steps/s, and held-out mouth PSNR after M minutes.

    python bench/train.py [--project DIR] [--preset quick] [--minutes 1 3 10] [--device auto]

Each duration is a separate run from scratch with that budget (the stages split
each budget as a user's run would). Without --project it prepares
../shared/media/obama_address_a.mp4 into a temporary folder. Held-out frames are
the last 10 % of the clip, driven by their own audio; the static-mouth baseline
(the canonical frame's mouth everywhere) is printed beside them.
"""
from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from speech2lip.core.device import pick_device
from speech2lip.core.engine.train import train

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO.parent / "shared" / "media" / "obama_address_a.mp4"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, help="a prepared project (it is copied, never modified)")
    ap.add_argument("--size", type=int, default=256, help="working size when preparing the default clip")
    ap.add_argument("--preset", default="quick", choices=("quick", "standard"))
    ap.add_argument("--minutes", type=float, nargs="+", default=[1, 3, 10])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = pick_device(args.device)
    print(f"device {dev}, preset {args.preset}, {torch.get_num_threads()} CPU threads")
    with tempfile.TemporaryDirectory() as tmp:
        src = args.project
        if src is None:
            from speech2lip.core.prepare.job import prepare

            src = prepare(CLIP, Path(tmp) / "src", size=args.size).root
        print(" minutes   steps  steps/s  held-out PSNR  static PSNR  untrained PSNR  sync stage")
        rows = []
        for m in args.minutes:
            run = Path(tmp) / f"run{m:g}"
            shutil.copytree(src, run, ignore=shutil.ignore_patterns("checkpoints"))
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            t = time.perf_counter()
            r = train(run, preset=args.preset, minutes=m, device=args.device)
            wall = time.perf_counter() - t
            rows.append(r)
            print(f"{m:8g} {r['steps']:7d} {r['steps'] / max(1e-9, r['seconds']):8.2f} {r['heldout_mouth_psnr']:14.2f} "
                  f"{r['static_mouth_psnr']:12.2f} {r['initial_heldout_mouth_psnr']:15.2f}  {r['sync_stage']}"
                  f"   (wall {wall:.0f} s)", flush=True)
            if dev.type == "cuda":
                print(f"          peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MB")
            shutil.rmtree(run, ignore_errors=True)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
