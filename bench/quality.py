"""Mouth quality on the three shared clips: train, evaluate on held-out frames and on new speech, one table.

    python bench/quality.py [--clips obama_address_a ...] [--set detail.enabled=false ...]
                            [--steps N] [--out DIR] [--work DIR]

Each clip is prepared, trained with the `quick` preset at its default budget (or
--steps, with --set overrides for ablations) and scored by `speech2lip eval`: the
held-out split against the real frames and the baselines, then driven by four
speeches from other speakers (English, Mandarin, Russian) for sync. The targets of
the high-fidelity issue are checked on every clip:

  sharpness   inner-box gradient energy >= 0.8x real, inner-box CPBD >= 0.7x real
  fidelity    PSNR mouth >= retrieval + 2 dB, SSIM mouth >= retrieval + 0.03
  shape       LMD <= 0.7x retrieval; opening std >= 0.8x real; teeth share within +-30 % of real
  sync        on each new speech |offset| <= 1 frame of the speaker's lead, confidence >= 0.8x real

Strips and reports are kept under --out (default bench_quality/). Run it alone: two
torch jobs on two cores run many times slower.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"
CLIPS = ("obama_address_a", "obama_address_c", "reagan_address")
SPEECH = ("jfk_inaugural.flac", "librivox_austen_0870.wav", "mandarin_news.wav", "russian_speech.wav")


def parse_value(v: str):
    low = v.lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(v)
        except ValueError:
            pass
    if v.startswith("["):
        return json.loads(v)
    return v


def run_clip(clip: str, args, overrides: dict) -> dict:
    from speech2lip.core.config import preset
    from speech2lip.core.evaluation.evaluate import evaluate
    from speech2lip.core.prepare.job import prepare
    from speech2lip.core.engine.train import train

    work = args.work / clip
    prepared = args.work / f"{clip}.prepared"
    if not (prepared / "project.json").is_file():
        prepare(MEDIA / f"{clip}.mp4", prepared)
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(prepared, work, ignore=shutil.ignore_patterns("checkpoints", "eval*"))
    cfg = preset("quick", **overrides)
    t = time.perf_counter()
    res = train(work, config=cfg, steps=args.steps, device=args.device)
    train_s = time.perf_counter() - t
    out = args.out / clip
    held = evaluate(work, output=out / "held_out")
    cross = {}
    for name in SPEECH:
        rep = evaluate(work, audio=MEDIA / "speech" / name, output=out / Path(name).stem)
        cross[name] = rep["methods"]["model"]
    return {"clip": clip, "steps": res["steps"], "train_s": train_s, "held": held["methods"], "cross": cross,
            "calibration": held["calibration"]}


def from_reports(out: Path, clip: str) -> dict | None:
    """A clip's results read back from the reports a run left under out/clip (no training)."""
    held = out / clip / "held_out" / "report.json"
    if not held.is_file():
        return None
    rep = json.loads(held.read_text())
    cross = {}
    for name in SPEECH:
        path = out / clip / Path(name).stem / "report.json"
        if path.is_file():
            cross[name] = json.loads(path.read_text())["methods"]["model"]
    if len(cross) < len(SPEECH):
        return None
    return {"clip": clip, "steps": rep["train_steps"], "train_s": rep["train_minutes"] * 60, "held": rep["methods"],
            "cross": cross, "calibration": rep["calibration"]}


def checks(r: dict) -> list[tuple[str, float, str, bool]]:
    """(figure, value, target, met) of one clip's results."""
    m, real, ret = r["held"]["model"], r["held"]["real"], r["held"]["retrieval"]
    ratio = lambda a, b: a / b if b else float("nan")
    rows = [
        ("sharpness / real", ratio(m["sharpness_inner"], real["sharpness_inner"]), ">= 0.8", None),
        ("CPBD inner / real", ratio(m["cpbd"], real["cpbd"]), ">= 0.7", None),
        ("PSNR mouth - retrieval", m["psnr_mouth"] - ret["psnr_mouth"], ">= 2 dB", None),
        ("SSIM mouth - retrieval", m["ssim_mouth"] - ret["ssim_mouth"], ">= 0.03", None),
        ("LMD / retrieval", ratio(m["lmd"], ret["lmd"]), "<= 0.7", None),
        ("opening std / real", ratio(m["opening_std"], real["opening_std"]), ">= 0.8", None),
        ("teeth share / real", ratio(m["teeth_share"], real["teeth_share"]), "0.7-1.3", None),
    ]
    limits = {">= 0.8": lambda v: v >= 0.8, ">= 0.7": lambda v: v >= 0.7, ">= 2 dB": lambda v: v >= 2.0,
              ">= 0.03": lambda v: v >= 0.03, "<= 0.7": lambda v: v <= 0.7, "0.7-1.3": lambda v: 0.7 <= v <= 1.3}
    out = [(name, v, t, bool(limits[t](v))) for name, v, t, _ in rows]
    for name, c in r["cross"].items():
        off, conf = c["av_offset_frames"], ratio(c["av_confidence"], real["av_confidence"])
        out.append((f"{Path(name).stem}: offset", off, "|x| <= 1", abs(off) <= 1))
        out.append((f"{Path(name).stem}: confidence / real", conf, ">= 0.8", conf >= 0.8))
    return out


def print_tables(results: list[dict]) -> None:
    keys = [("psnr_mouth", "PSNR m", "{:.2f}"), ("ssim_mouth", "SSIM m", "{:.3f}"), ("lmd", "LMD", "{:.4f}"),
            ("sharpness_inner", "sharp", "{:.2f}"), ("cpbd", "CPBD in", "{:.3f}"),
            ("opening_std", "open std", "{:.4f}"), ("teeth_share", "teeth", "{:.3f}"),
            ("av_offset_frames", "offset", "{:+d}"), ("av_confidence", "conf", "{:.3f}")]
    fmt = lambda f, v: "-" if v is None or v != v else f.format(v)
    for r in results:
        print(f"\n{r['clip']}: {r['steps']} steps in {r['train_s'] / 60:.1f} min")
        print(f"  {'method':10s}" + "".join(f"{label:>10s}" for _, label, _ in keys))
        for meth, row in r["held"].items():
            print(f"  {meth:10s}" + "".join(f"{fmt(f, row.get(k)):>10s}" for k, _, f in keys))
        for name, row in r["cross"].items():
            print(f"  {Path(name).stem[:10]:10s}" + "".join(
                f"{fmt(f, row.get(k)) if k in ('av_offset_frames', 'av_confidence', 'sharpness_inner', 'cpbd', 'opening_std') else '':>10s}"
                for k, _, f in keys))
    print("\ntargets (model)")
    names = [c[0] for c in checks(results[0])]
    print(f"  {'figure':34s}{'target':>10s}" + "".join(f"{r['clip'][:16]:>18s}" for r in results))
    per = [checks(r) for r in results]
    for i, name in enumerate(names):
        cells = "".join(f"{p[i][1]:>14.3f} {'ok' if p[i][3] else 'MISS':>3s}" for p in per)
        print(f"  {name:34s}{per[0][i][2]:>10s}{cells}")


def stack_strips(paths: list[Path]):
    """The clips' strip figures one above the other, at the width of the first."""
    import cv2
    import numpy as np

    imgs = [cv2.imread(str(p)) for p in paths]
    w = imgs[0].shape[1]
    imgs = [im if im.shape[1] == w else cv2.resize(im, (w, round(im.shape[0] * w / im.shape[1]))) for im in imgs]
    return np.concatenate(imgs, axis=0)


def cv2_write(path: Path, img) -> None:
    import cv2

    cv2.imwrite(str(path), img)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", nargs="+", default=list(CLIPS), choices=CLIPS)
    ap.add_argument("--set", nargs="*", default=[], metavar="SECTION.FIELD=VALUE",
                    help="config overrides for an ablation, e.g. detail.enabled=false")
    ap.add_argument("--steps", type=int, help="training steps (default: the preset's budget)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=Path("bench_quality"))
    ap.add_argument("--work", type=Path, help="where projects are prepared and trained (default: OUT/work)")
    ap.add_argument("--from-reports", type=Path, nargs="+", metavar="OUT",
                    help="print the tables from the reports earlier runs left in these --out folders")
    args = ap.parse_args(argv)
    if args.from_reports:
        found = [r for clip in args.clips for out in args.from_reports if (r := from_reports(out, clip))]
        print_tables(found)
        return 0
    args.work = args.work or args.out / "work"
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = parse_value(value)
    results = []
    for clip in args.clips:
        results.append(run_clip(clip, args, overrides))
        print(f"{clip}: done in {results[-1]['train_s'] / 60:.1f} min of training", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality.json").write_text(json.dumps({"overrides": overrides, "results": results}, indent=1,
                                                      default=float))
    print_tables(results)
    strips = [args.out / r["clip"] / "held_out" / "strips.png" for r in results]
    if all(p.is_file() for p in strips):
        combined = stack_strips(strips)
        cv2_write(args.out / "strips_all.png", combined)
    print(f"\nstrips and reports: {args.out}/CLIP/held_out/strips.png, {args.out}/CLIP/SPEECH/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
