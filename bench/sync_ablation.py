"""The training sync expert (core.engine.sync_expert): what it costs to train and how well it finds the true audio offset.

    python bench/sync_ablation.py --projects PROJECT [PROJECT ...] [--steps N] [--engine-steps N] [--device cpu]
    python bench/sync_ablation.py --ablation PROJECT --budget 1500 [--keep DIR] [--seeds 0 1 2]

For each prepared project: the expert's training time and its held-out accuracy at
picking the true offset among ±15 frames (chance 1/31). Then the engine's own
step time for the `quick` and `standard` presets (sync stage off), measured over
a few steps and multiplied by each preset's default step budget, so the expert's
cost can be read as a share of standard training. Prints numbers; never asserts.

--ablation: the contrastive sync loss with and without, on the same clip and budget.
One `quick` run trains to the start of the sync stage (90 % of the budget); two
copies of it then finish the budget, one with the sync stage (Eq. 6), one without
(train.w_sync = 0: Blend-Net's stage continues instead). Both are scored by core.evaluation.evaluate on the
held-out frames (LMD, and the sync probe's offset, which shares nothing with the
expert: core.evaluation.sync_probe), and both render the whole clip with its audio and with the audio
delayed by 5 frames: the lag between the two tracked mouth-opening curves shows
whether the lips follow the audio's timing. Both are also driven by 11 s of another
speaker (JFK), where the probe's offset and confidence rest on five times as many
frames as the held-out split's. --seeds repeats the two branches with their own random
streams (paired: same seed with and without), so the spread between seeds can be read
against the difference the loss makes; --keep on a folder that already holds the shared
run reuses it.
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from speech2lip.core.engine import sync_expert as S
from speech2lip.core.config import preset
from speech2lip.core.project import Project


SPEECH = Path(__file__).resolve().parents[2] / "shared" / "media" / "speech" / "jfk_inaugural.flac"


def linked(src: Path, tmp: Path) -> Project:
    """A writable view of a prepared project (files linked, fresh checkpoints/)."""
    tmp.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file():
            (tmp / f.name).symlink_to(f.resolve())
    return Project(tmp)


def engine_step_seconds(project: Project, name: str, steps: int, device: str) -> float:
    from speech2lip.core.engine.train import train

    cfg = preset(name, **{"train.sync": False, "train.eval_every": 10**9, "train.preview_every": 10**9,
                          "train.checkpoint_every": 10**9})
    t = time.perf_counter()
    out = train(project.root, config=cfg, steps=steps, device=device)
    total = time.perf_counter() - t
    return min(total, out["seconds"]) / max(1, out["steps"])


def opening_lag(renderer, shift: int, max_lag: int = 15) -> tuple[int, float]:
    """Render every frame with the clip's audio and with it delayed by `shift` frames; the lag
    (frames) that best aligns the two tracked mouth-opening curves, and its correlation."""
    import numpy as np

    from speech2lip.core import audio as A
    from speech2lip.core.evaluation.evaluate import opening, track

    p = renderer.project
    mel = np.array(p.array("mel"), np.float32)
    t = A.frame_times(p.n_frames, p.fps)
    idx = np.arange(p.n_frames)
    curves = []
    for s in (0, shift):
        win = A.mel_windows(mel, t - s / p.fps)                    # audio s frames late
        crops = np.concatenate([renderer.render_crops(win[i:i + 16], idx[i:i + 16]) for i in range(0, len(idx), 16)])
        o = opening(track(crops))
        curves.append((o - np.nanmean(o)) / (np.nanstd(o) + 1e-9))
    a, b = (np.nan_to_num(c) for c in curves)
    corr = [float(np.mean(a[max(0, -k):len(a) - max(0, k)] * b[max(0, k):len(b) - max(0, -k)]))
            for k in range(-max_lag, max_lag + 1)]
    k = int(np.argmax(corr))
    return k - max_lag, corr[k]


def reseed(root: Path, seed: int) -> None:
    """Give a copied run its own random stream for the steps it has left (resume restores the saved one)."""
    path = Project(root).latest_path
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    ckpt["rng"]["sampler"] = torch.Generator().manual_seed(seed).get_state()
    torch.manual_seed(seed)
    ckpt["rng"]["torch"] = torch.get_rng_state()
    torch.save(ckpt, path)


def switch_config(root: Path, cfg) -> None:
    """Make a copied run's checkpoint carry `cfg`, so that --resume continues it with that setting."""
    path = Project(root).latest_path
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    ckpt["config"], ckpt["fingerprint"] = cfg.to_dict(), cfg.fingerprint()
    torch.save(ckpt, path)


# Each branch is a config switch: train.w_sync 0 turns the sync stage off (core.engine.train).
BRANCHES = {"with": "the sync stage with Eq. 6", "without": "no sync stage, train.w_sync 0 (Blend-Net's stage continues)"}


def ablation(src: Path, budget: int, keep: Path | None, device: str, w_sync: float | None = None,
             seeds: tuple[int, ...] = (0,), branches: tuple[str, ...] = ("with", "without")) -> None:
    import shutil
    import statistics

    from speech2lip.core.engine import train as T
    from speech2lip.core.evaluation.evaluate import evaluate
    from speech2lip.core.jobs import Cancelled, CancelToken
    from speech2lip.core.dub.render import Renderer

    tmp = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="sync_ablation_"))
    cfg = preset("quick", **({"train.w_sync": w_sync} if w_sync is not None else {}))
    cut = int(round(0.9 * budget))
    t0 = time.perf_counter()
    if (tmp / "base").is_dir() and Project(tmp / "base").is_trained:
        base = Project(tmp / "base")                 # a kept shared run: only the branches are redone
        print(f"reusing the shared run in {tmp / 'base'}", flush=True)
    else:
        base = linked(src, tmp / "base")
        _, st = S.train_sync_expert(base, device=device)
        print(f"expert: {st['seconds']:.0f} s, held-out offset accuracy {st['offset_accuracy']:.1%} "
              f"(±1: {st['offset_accuracy_pm1']:.1%}, chance {st['chance']:.1%})", flush=True)
        token = CancelToken()

        def stop_at_cut(pr):
            if pr.stage == "train" and pr.done >= cut:
                token.cancel()
        try:
            T.train(base.root, config=cfg, steps=budget, device=device, progress=stop_at_cut, cancel=token)
        except Cancelled:
            pass
        print(f"shared run to step {cut}: {time.perf_counter() - t0:.0f} s", flush=True)
    runs: dict[str, list[dict]] = {b: [] for b in branches}
    for seed in seeds:
        for name in branches:
            root = tmp / (f"{name}_s{seed}" if len(seeds) > 1 else name)
            shutil.rmtree(root, ignore_errors=True)
            shutil.copytree(base.root, root, symlinks=True)
            if len(seeds) > 1:
                reseed(root, seed)
            branch_cfg = cfg if name == "with" else replace(cfg, train=replace(cfg.train, w_sync=0.0))
            if branch_cfg is not cfg:
                switch_config(root, branch_cfg)
            t1 = time.perf_counter()
            res = T.train(root, config=branch_cfg, steps=budget, device=device, resume=True)
            rep = evaluate(root, output=root / "eval")
            # Another speaker's 11 s of speech: five times the held-out length, so the offset is measurable.
            cross = evaluate(root, output=root / "eval_cross", audio=SPEECH)["methods"]["model"]
            row = {**rep["methods"]["model"], "train_s": time.perf_counter() - t1, "steps": res["steps"],
                   "cross_offset": cross["av_offset_frames"], "cross_conf": cross["av_confidence"]}
            if seed == seeds[0]:                                     # the delayed-audio render: first seed only
                row["lag"], row["lag_corr"] = opening_lag(Renderer(root, device=device), 5)
            runs[name].append(row)
            print(f"seed {seed}, {name} sync loss done: {row}", flush=True)
    base_rows = {k: rep["methods"][k] for k in ("real", "static", "retrieval")}
    print(f"\nclip {src.name}, {base.size}² working crop, mouth box {base.manifest.mouth_box[3]}x"
          f"{base.manifest.mouth_box[2]}, quick preset, {budget} steps ({budget - cut} in the last stage), "
          f"w_sync {cfg.train.w_sync:g}, seeds {list(seeds)}")
    print(f"{'':<10} {'LMD':>7} {'offset':>7} {'conf':>6} {'PSNR m':>7} {'SSIM m':>7} {'5-frame delay -> lag':>21}"
          f" {'JFK offset':>11} {'JFK conf':>9}")
    rows = {**{f"{k} s{s}": r for k, v in runs.items() for s, r in zip(seeds, v)}, **base_rows}
    for k, r in rows.items():
        lag = f"{r['lag']:+d} (r={r['lag_corr']:.2f})" if "lag" in r else ""
        cross = f"{r['cross_offset']:>+11d} {r['cross_conf']:>9.3f}" if "cross_offset" in r else ""
        print(f"{k:<10} {r['lmd']:>7.4f} {r['av_offset_frames']:>+7d} {r['av_confidence']:>6.3f} "
              f"{r['psnr_mouth']:>7.2f} {r['ssim_mouth']:>7.3f} {lag:>21} {cross}")
    if len(seeds) > 1:
        print("mean ± sd over seeds:")
        for k, v in runs.items():
            cells = []
            for key in ("lmd", "psnr_mouth", "cross_conf"):
                xs = [r[key] for r in v]
                cells.append(f"{key} {statistics.mean(xs):.4f} ± {statistics.stdev(xs):.4f}")
            print(f"  {k:<8} " + ", ".join(cells))
        for other in [b for b in branches if b != "with"] if "with" in runs else []:
            wins = sum(a["lmd"] < b["lmd"] for a, b in zip(runs["with"], runs[other]))
            print(f"  'with' has the lower LMD than '{other}' in {wins} of {len(seeds)} paired seeds")
    for b in branches:
        print(f"  {b}: {BRANCHES[b]}")
    print(f"(files in {tmp})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--projects", nargs="*", type=Path, default=[], help="prepared projects")
    ap.add_argument("--steps", type=int, default=S.SyncConfig().steps)
    ap.add_argument("--engine-steps", type=int, default=20, help="steps timed per engine preset (0: skip)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave the default)")
    ap.add_argument("--ablation", type=Path, help="a prepared project: train with and without the sync loss")
    ap.add_argument("--budget", type=int, default=1500, help="--ablation: quick-preset steps per run")
    ap.add_argument("--keep", type=Path, help="--ablation: keep the runs in this new folder")
    ap.add_argument("--w-sync", type=float, help="--ablation: weight of the sync loss (default: the preset's)")
    ap.add_argument("--branches", nargs="+", choices=list(BRANCHES), default=["with", "without"],
                    help="--ablation: how the last 10%% of the budget is spent (see BRANCHES)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0],
                    help="--ablation: finish the budget once per seed, each with and without (paired)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.ablation:
        ablation(a.ablation, a.budget, a.keep, a.device, a.w_sync, tuple(a.seeds), tuple(a.branches))
        return 0
    if not a.projects:
        print("no prepared projects; run `speech2lip prepare` first or pass --projects")
        return 1
    dev_name = torch.cuda.get_device_name() if a.device == "cuda" else f"{platform.processor() or 'cpu'}, " \
        f"{torch.get_num_threads()} torch threads"
    print(f"device: {a.device} ({dev_name}); expert steps {a.steps}")
    print(f"{'clip':<10} {'frames':>6} {'res':>8} {'mouth':>7} {'seconds':>8} {'steps/s':>8} "
          f"{'exact':>6} {'±1':>6} {'chance':>7} {'clip off':>8} {'train':>6}")
    expert_s = []
    with tempfile.TemporaryDirectory() as tmp:
        for src in a.projects:
            p = linked(src, Path(tmp) / src.name)
            cfg = S.SyncConfig(steps=a.steps)
            _, st = S.train_sync_expert(p, cfg, device=a.device)
            expert_s.append(st["seconds"])
            box = p.manifest.mouth_box
            print(f"{src.name:<10} {p.n_frames:>6} {p.size:>5}²   {box[3]}x{box[2]} {st['seconds']:>8.1f} "
                  f"{st['steps'] / st['seconds']:>8.2f} {st['offset_accuracy']:>6.1%} "
                  f"{st['offset_accuracy_pm1']:>6.1%} {st['chance']:>7.1%} {st['clip_offset']:>+8d} "
                  f"{st['train_offset_accuracy']:>6.1%}", flush=True)
        if a.engine_steps:
            p = linked(a.projects[0], Path(tmp) / "engine")
            mean_expert = sum(expert_s) / len(expert_s)
            for name in ("quick", "standard"):
                sps = engine_step_seconds(p, name, a.engine_steps, a.device)
                budget = preset(name).train.steps
                total = sps * budget
                print(f"engine {name:<8}: {sps * 1000:.0f} ms/step x {budget} default steps = {total / 60:.1f} min; "
                      f"sync expert adds {mean_expert:.0f} s = {mean_expert / total:.1%}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
