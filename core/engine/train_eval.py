"""Held-out evaluation and previews of a model in training: the figures beside the loop, not in it.

Held-out frames are the project's last split, driven by their own audio and scored at
full box size, as dubbing renders them; the static- and mean-mouth baselines put a
number in context.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import mean_mouth
from .data import ClipData
from .losses import psnr


@torch.no_grad()
def heldout_eval(model, data: ClipData, batch: int = 16) -> tuple[float, float]:
    """Held-out frames driven by their own audio, at full box size: (mean mouth PSNR in dB, motion
    correlation). The correlation compares each mouth's departure from the sequence mean, generated
    against real, over all pixels: 0 for a static mouth, 1 for a mouth that moves exactly as filmed."""
    was = model.training
    model.eval()
    h, w = model.mouth_shape(1.0)
    vals, gens, reals = [], [], []
    for s in range(0, len(data.held_idx), batch):
        idx = data.held_idx[s:s + batch]
        gen = render_mouths(model, data.windows(idx), data.times(idx))
        real = data.mouths(idx, (h, w))
        vals += [psnr(g[None], r[None]) for g, r in zip(gen, real)]
        # Half resolution is plenty for a correlation and keeps memory flat on long clips.
        gens.append(F.avg_pool2d(gen, 2).flatten(1).cpu())
        reals.append(F.avg_pool2d(real, 2).flatten(1).cpu())
    model.train(was)
    if not vals:
        return float("nan"), float("nan")
    g, r = torch.cat(gens), torch.cat(reals)
    g, r = g - g.mean(0), r - r.mean(0)
    corr = float((g * r).sum() / ((g * g).sum() * (r * r).sum()).sqrt().clamp(min=1e-12))
    return float(np.mean(vals)), corr


def heldout_psnr(model, data: ClipData) -> float:
    return heldout_eval(model, data)[0]


def static_psnr(data: ClipData) -> float:
    """The static-mouth baseline: the canonical frame's mouth on every held-out frame."""
    h, w = data.mouth.shape[1:3]
    canon = data.mouths(np.array([data.project.manifest.canonical_index]), (h, w))
    vals = [psnr(canon, data.mouths(np.array([i]), (h, w))) for i in data.held_idx]
    return float(np.mean(vals)) if vals else float("nan")


def mean_psnr(data: ClipData) -> float:
    """The mean-mouth baseline: the average training mouth on every held-out frame (a blur scores well)."""
    h, w = data.mouth.shape[1:3]
    mean = torch.from_numpy(mean_mouth(data.project)).permute(2, 0, 1)[None].to(data.device)
    vals = [psnr(mean, data.mouths(np.array([i]), (h, w))) for i in data.held_idx]
    return float(np.mean(vals)) if vals else float("nan")


def render_mouths(model, mel: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(B, 3, h, w) mouths at full box size, as dubbing renders them."""
    return model.generate(mel, t)


@torch.no_grad()
def preview(model, data: ClipData, i: int) -> dict[str, np.ndarray]:
    """Real vs generated mouth side by side, and the blended working frame, as uint8 images."""
    was = model.training
    model.eval()
    idx = np.array([i])
    gen = render_mouths(model, data.windows(idx), data.times(idx))
    real = data.mouths(idx, gen.shape[-2:])
    frame = data.image(idx)
    out, _, _, origins = model.blend_into(gen, frame, data.poses[idx])
    full = frame.clone()
    ox, oy = (int(v) for v in origins[0])
    full[:, :, oy:oy + model.region[0], ox:ox + model.region[1]] = out
    to8 = lambda x: (x[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().cpu().numpy()
    gap = np.full((gen.shape[-2], 4, 3), 255, np.uint8)
    model.train(was)
    return {"mouth": np.concatenate([to8(real), gap, to8(gen)], axis=1), "frame": to8(full)}
