"""Make the small prepared project that bench/gpu_check.py carries to a bare CUDA machine.

    python bench/make_gpu_fixture.py [--clip ../shared/media/obama_address_a.mp4] [--seconds 20]
                                     [--out bench/gpu_fixture] [--quick-minutes 3]

Runs here, where prepare's dependencies are (mediapipe, ffmpeg): it prepares the clip at
256 and 512 px, packs each project's frames and mouth crops as JPEG (the raw arrays are
ten times larger) and keeps everything else as it is, with one copy of the source
frames. Then it trains `quick` on this CPU for --quick-minutes on the unpacked fixture,
so the GPU check has the held-out mouth PSNR to race against on the very same data.
The output (under 40 MiB) is ignored by git; copy it with the repository to the GPU machine.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from gpu_check import PACKED, SIZES, unpack  # noqa: E402

CLIP = REPO.parent / "shared" / "media" / "obama_address_a.mp4"
# Not needed to train or render (landmarks serve prepare and evaluation), or kept once or packed.
SKIP = {"diagnostics", "checkpoints", "landmarks.npy", "originals.bin", "originals.idx.npy",
        *(f"{n}.npy" for n in PACKED)}


def cut(clip: Path, seconds: float, dest: Path) -> Path:
    """The clip's first `seconds`, nearly lossless (the fixture is small because it is short)."""
    from speech2lip.core.media import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(clip), "-t", f"{seconds}", "-c:v", "libx264",
                    "-crf", "10", "-preset", "fast", "-c:a", "aac", "-b:a", "192k", str(dest)], check=True)
    return dest


def pack(project: Path, dest: Path, quality: int) -> None:
    from speech2lip.core.prepare.framestore import JpegPackWriter

    dest.mkdir(parents=True)
    for f in project.iterdir():
        if f.name not in SKIP:
            shutil.copy2(f, dest / f.name)
    for name in PACKED:
        arr = np.load(project / f"{name}.npy", mmap_mode="r")
        w = JpegPackWriter(dest / name, quality=quality)             # NAME.bin and NAME.idx.npy
        for img in arr:
            w.add(np.ascontiguousarray(img))
        w.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", type=Path, default=CLIP)
    ap.add_argument("--seconds", type=float, default=16.0, help="length of the clip kept (from its start)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "gpu_fixture")
    ap.add_argument("--quality", type=int, default=92, help="JPEG quality of the packed frames")
    ap.add_argument("--quick-minutes", type=float, default=3.0,
                    help="CPU training of the quick reference (0: none; the check then skips that row)")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads of the quick reference")
    args = ap.parse_args(argv)
    from speech2lip.core.prepare.job import prepare

    if args.out.exists():
        shutil.rmtree(args.out)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip = cut(args.clip, args.seconds, tmp / "clip.mp4")
        for size in SIZES:
            t = time.perf_counter()
            root = prepare(clip, tmp / f"p{size}", size=size).root
            pack(root, args.out / f"p{size}", args.quality)
            print(f"prepared and packed {size} px in {time.perf_counter() - t:.0f} s")
        shutil.copy2(root / "originals.bin", args.out / "originals.bin")         # the same source frames
        shutil.copy2(root / "originals.idx.npy", args.out / "originals.idx.npy")
    meta = {"clip": args.clip.name, "seconds": args.seconds, "quality": args.quality, "sizes": list(SIZES)}
    (args.out / "fixture.json").write_text(json.dumps(meta, indent=1))
    if args.quick_minutes > 0:
        from speech2lip.core.engine.train import train

        torch.set_num_threads(args.threads)
        with tempfile.TemporaryDirectory() as tmp:
            roots = unpack(args.out, Path(tmp))
            r = train(roots[256], preset="quick", minutes=args.quick_minutes, device="cpu")
        meta["cpu_quick"] = {"minutes": args.quick_minutes, "threads": args.threads, "steps": r["steps"],
                             "heldout_mouth_psnr": r["heldout_mouth_psnr"], "torch": torch.__version__}
        print(f"quick on this CPU: {r['steps']} steps, held-out mouth PSNR {r['heldout_mouth_psnr']:.2f} dB")
    (args.out / "fixture.json").write_text(json.dumps(meta, indent=1))
    mib = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file()) / 2**20
    print(f"wrote {args.out} ({mib:.1f} MiB)")
    if mib > 40:
        print("warning: over 40 MiB; use fewer --seconds", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
