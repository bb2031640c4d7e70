#!/usr/bin/env bash
# GPU check: render fps, train steps/s, held-out mouth PSNR and peak GPU memory on a CUDA machine.
# No network; about 6-7 minutes on one GPU. Run from the repository root:
#     bash bench/gpu_check.sh
# Knobs (environment): DEVICE (default cuda), STANDARD_MIN (3), QUICK_MIN (1), CLIP (../shared/media/obama_address_a.mp4)
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE="${DEVICE:-cuda}" STANDARD_MIN="${STANDARD_MIN:-3}" QUICK_MIN="${QUICK_MIN:-1}" \
CLIP="${CLIP:-../shared/media/obama_address_a.mp4}" python - <<'EOF'
import os, shutil, sys, tempfile, time
from pathlib import Path

import numpy as np
import torch

from speech2lip.core import audio as A
from speech2lip.core.prepare import prepare
from speech2lip.core.render import Renderer
from speech2lip.core.train import pick_device, train

dev = pick_device(os.environ["DEVICE"])
if dev.type != "cuda":
    print(f"warning: running on {dev}, not a CUDA GPU; these are not GPU figures", file=sys.stderr)
name = torch.cuda.get_device_name(0) if dev.type == "cuda" else str(dev)
clip = Path(os.environ["CLIP"])
rows = []


def peak_reset():
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_mb():
    return torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else float("nan")


def fps(fn, n, seconds=4.0):
    fn()
    peak_reset()
    t0, frames = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        fn()
        frames += n
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return frames / (time.perf_counter() - t0)


with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    t = time.perf_counter()
    projects = {s: prepare(clip, tmp / f"p{s}", size=s).root for s in (256, 512)}
    print(f"prepared {clip.name} at 256 and 512 in {time.perf_counter() - t:.0f} s", flush=True)
    for preset, minutes in (("quick", float(os.environ["QUICK_MIN"])), ("standard", float(os.environ["STANDARD_MIN"]))):
        for size in (256, 512) if preset == "standard" else (256,):
            run = tmp / f"{preset}{size}"
            shutil.copytree(projects[size], run)
            peak_reset()
            r = train(run, preset=preset, minutes=minutes, device=str(dev))
            train_peak = peak_mb()
            rend = Renderer(run, device=str(dev))
            p = rend.project
            row = {"what": f"{preset} {size}px", "train_min": minutes, "steps": r["steps"],
                   "steps_s": r["steps"] / r["seconds"], "psnr": r["heldout_mouth_psnr"],
                   "static": r["static_mouth_psnr"], "train_mem": train_peak}
            mel = np.array(p.array("mel"))
            for b in (8, 32):
                bg = np.arange(b) % p.n_frames
                w = A.mel_windows(mel, A.frame_times(p.n_frames, p.fps)[bg])
                row[f"fps{b}"] = fps(lambda: rend.render_crops(w, bg), b)
                yaw = np.tile([[10.0, 0.0, 0.0]], (b, 1))
                row[f"pose_fps{b}"] = fps(lambda: rend.render_crops(w, bg, yaw), b)
            row["render_mem"] = peak_mb()
            rows.append(row)
            print(row, flush=True)
            shutil.rmtree(run, ignore_errors=True)

print()
print(f"GPU check on {name} (torch {torch.__version__})")
print("| model | train min | steps | steps/s | held-out mouth PSNR (static) | render fps b8 / b32 | "
      "pose fps b8 / b32 | peak GPU MB train / render |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['what']} | {r['train_min']:g} | {r['steps']} | {r['steps_s']:.1f} | {r['psnr']:.2f} ({r['static']:.2f}) | "
          f"{r['fps8']:.0f} / {r['fps32']:.0f} | {r['pose_fps8']:.0f} / {r['pose_fps32']:.0f} | "
          f"{r['train_mem']:.0f} / {r['render_mem']:.0f} |")
EOF
