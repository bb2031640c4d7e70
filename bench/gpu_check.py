"""GPU check: training speed and quality, render and dub speed, peak memory, as one table.

    python bench/gpu_check.py                      # on a CUDA machine, from the repository root
    DEVICE=cpu BUDGET=tiny python bench/gpu_check.py   # the same path on a CPU in a few minutes

Needs torch, numpy and opencv only: no prepare, no network, no ../shared, no install
(the engine is imported from this checkout). The prepared project comes from
bench/gpu_fixture, made beforehand by bench/make_gpu_fixture.py; mediapipe, librosa,
soundfile and imageio-ffmpeg are blocked here, so a run proves the path needs none of them.
Environment: DEVICE (default cuda), BUDGET (full: about 6 minutes on one GPU; tiny),
FIXTURE (default bench/gpu_fixture).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import types
import wave
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
BLOCKED = ("mediapipe", "librosa", "soundfile", "imageio_ffmpeg")
PACKED = ("frames", "mouth")                 # arrays the fixture keeps as JPEG packs
SIZES = (256, 512)
BUDGETS = {   # minutes of quick and of standard training, steps of the 512 px model, seconds per fps figure
    "full": {"quick_min": 1.0, "standard_min": 3.0, "steps512": 200, "fps_s": 4.0, "dub_frames": 300,
             "big": "standard"},
    # A dry run: `quick` stands in for `standard`, whose evaluation alone takes minutes on a CPU.
    "tiny": {"quick_min": 0.15, "standard_min": 0.25, "steps512": 2, "fps_s": 1.0, "dub_frames": 8,
             "big": "quick"},
}


def _engine() -> None:
    """speech2lip.core from this checkout, whether or not the package is installed."""
    try:
        import speech2lip.core  # noqa: F401
        return
    except ImportError:
        pass
    shim = Path(tempfile.mkdtemp(prefix="s2l-shim-"))
    pkg = types.ModuleType("speech2lip")
    pkg.__path__ = [str(shim)]
    (shim / "core").symlink_to(REPO / "core")
    sys.modules["speech2lip"] = pkg


def unpack(fixture: Path, dest: Path) -> dict[int, Path]:
    """The fixture's projects as ordinary project folders under dest: {size: root}."""
    _engine()
    from speech2lip.core.prepare.framestore import JpegPack

    roots = {}
    for size in SIZES:
        src, root = fixture / f"p{size}", dest / f"p{size}"
        root.mkdir(parents=True)
        packs = {f"{n}{ext}" for n in PACKED for ext in (".bin", ".idx.npy")}
        for f in src.iterdir():
            if f.name not in packs:
                (root / f.name).write_bytes(f.read_bytes())
        for name in ("originals.bin", "originals.idx.npy"):
            (root / name).symlink_to((fixture / name).resolve())
        for name in PACKED:
            pack = JpegPack(src / name)
            first = pack[0]
            out = np.lib.format.open_memmap(root / f"{name}.npy", "w+", np.uint8, (len(pack), *first.shape))
            for i in range(len(pack)):
                out[i] = pack[i]
            out.flush()
            del out
        roots[size] = root
    return roots


def _sync(dev) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def _peak(dev, reset: bool = False) -> float:
    if dev.type != "cuda":
        return float("nan")
    if reset:
        _sync(dev)
        torch.cuda.reset_peak_memory_stats()
    return torch.cuda.max_memory_allocated() / 2**30


def _train(root: Path, name: str, dev, minutes=None, steps=None, eval_every=None) -> dict:
    from speech2lip.core.config import preset
    from speech2lip.core.engine.train import train

    over = {"train.eval_every": eval_every} if eval_every else {}
    _peak(dev, reset=True)
    r = train(root, config=preset(name, **over), minutes=minutes, steps=steps, device=dev.type, new_run=True)
    r["peak_gib"] = _peak(dev)
    hist = json.loads((root / "checkpoints" / "history.json").read_text())["history"]
    clock = {h["step"]: h["t"] for h in hist if "t" in h}
    r["evals"] = [(clock.get(h["step"], 0.0), h["heldout_psnr"]) for h in hist if "heldout_psnr" in h]
    return r


def _time_to(r: dict, target) -> str:
    if target is None:
        return "n/a (fixture has no CPU reference)"
    hit = [t for t, p in r["evals"] if p >= target]
    return f"{hit[0]:.0f} s" if hit else f"not within {r['seconds']:.0f} s (best {max(p for _, p in r['evals']):.2f} dB)"


def _fps(fn, n: int, seconds: float, dev) -> float:
    fn()                                         # warm-up: kernels, caches
    _sync(dev)
    t0, frames = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        fn()
        frames += n
    _sync(dev)
    return frames / (time.perf_counter() - t0)


def _dub_fps(root: Path, dev, n_frames: int, batch: int = 16) -> float:
    """Dub's frame path end to end (plan, crops, paste into the source frames: on the device where
    the render is, Renderer.plan_frames), without the encoder."""
    from speech2lip.core.dub.plan import DubPlan
    from speech2lip.core.dub.render import Renderer

    with wave.open(str(root / "audio.wav")) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    speech = pcm.astype(np.float32) / 32768.0
    r = Renderer(root, device=dev.type)
    plan = DubPlan.for_speech(r.project, speech)
    n = min(n_frames, len(plan))
    r.plan_frames(plan, range(min(batch, n)))                                # warm-up
    _sync(dev)
    t0 = time.perf_counter()
    for s in range(0, n, batch):
        r.plan_frames(plan, range(s, min(n, s + batch)))
    _sync(dev)
    return n / (time.perf_counter() - t0)


def main() -> int:
    for m in BLOCKED:
        sys.modules[m] = None                    # importing one now fails: the check proves they are not needed
    _engine()
    from speech2lip.core import audio as A
    from speech2lip.core.device import describe, pick_device
    from speech2lip.core.dub.render import Renderer

    dev = pick_device(os.environ.get("DEVICE", "cuda"))
    budget = BUDGETS[os.environ.get("BUDGET", "full")]
    fixture = Path(os.environ.get("FIXTURE", REPO / "bench" / "gpu_fixture"))
    if not (fixture / "fixture.json").is_file():
        print(f"no fixture at {fixture}; make one with `python bench/make_gpu_fixture.py` where the shared "
              f"clips are, and copy it here.", file=sys.stderr)
        return 2
    meta = json.loads((fixture / "fixture.json").read_text())
    target = meta.get("cpu_quick", {}).get("heldout_mouth_psnr")
    name, gpu = describe(dev)
    kind = "GPU" if dev.type == "cuda" else f"{dev.type.upper()} - these are not GPU figures"
    t_all = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        roots = unpack(fixture, Path(tmp))
        print(f"unpacked the fixture in {time.perf_counter() - t_all:.0f} s", flush=True)
        quick = _train(roots[256], "quick", dev, minutes=budget["quick_min"], eval_every=50)
        print(f"quick: {quick['steps']} steps", flush=True)
        big = budget["big"]
        std = _train(roots[256], big, dev, minutes=budget["standard_min"], eval_every=100)
        print(f"{big}: {std['steps']} steps", flush=True)
        std512 = _train(roots[512], big, dev, steps=budget["steps512"])
        rows += [("quick steps/s (256 px)", f"{quick['steps'] / quick['seconds']:.1f}"),
                 (f"{big} steps/s (256 px)", f"{std['steps'] / std['seconds']:.1f}"),
                 (f"time to quick's CPU held-out mouth PSNR ({target:.2f} dB)" if target else
                  "time to quick's CPU held-out mouth PSNR", f"{big} {_time_to(std, target)}; "
                                                              f"quick {_time_to(quick, target)}"),
                 (f"{big} held-out mouth PSNR after {budget['standard_min']:g} min (256 px)",
                  f"{std['heldout_mouth_psnr']:.2f} dB (static mouth {std['static_mouth_psnr']:.2f})")]
        render_peak = 0.0
        for size, root in ((256, roots[256]), (512, roots[512])):
            _peak(dev, reset=True)
            r = Renderer(root, device=dev.type)
            p = r.project
            b = 32
            bg = np.arange(b) % p.n_frames
            w = A.mel_windows(np.array(p.array("mel")), A.frame_times(p.n_frames, p.fps)[bg])
            fps = _fps(lambda: r.render_crops(w, bg), b, budget["fps_s"], dev)
            render_peak = max(render_peak, _peak(dev))
            rows.append((f"crop render fps {size}² (batch {b})", f"{fps:.0f}"))
        _peak(dev, reset=True)
        rows.append(("dub fps 512² (frames into the source video, no encoder)",
                     f"{_dub_fps(roots[512], dev, budget['dub_frames']):.0f}"))
        render_peak = max(render_peak, _peak(dev))
        from speech2lip.core.media import nvenc_works

        try:
            rows.append(("ffmpeg's NVENC H.264 encoder usable here", "yes" if nvenc_works() else "no (x264)"))
        except Exception as e:                  # no ffmpeg on a bare machine: say so, do not fail the check
            rows.append(("ffmpeg's NVENC H.264 encoder usable here", f"not checked ({type(e).__name__})"))
        train_peak = max(quick["peak_gib"], std["peak_gib"], std512["peak_gib"])
        rows.append(("peak GPU memory train / render", f"{train_peak:.2f} / {render_peak:.2f} GiB" if gpu and
                     dev.type == "cuda" else "n/a (no CUDA)"))
    print()
    print(f"GPU check on {name} [{kind}], torch {torch.__version__}, budget {os.environ.get('BUDGET', 'full')}, "
          f"fixture {meta['clip']} {meta['seconds']:g} s, {time.perf_counter() - t_all:.0f} s in all")
    print("| figure | value |")
    print("|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
