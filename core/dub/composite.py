"""Putting rendered working crops back into the full-resolution original frames.

Only the pixels a render changed are touched: a mask of where the crop differs from the
prepared working frame, grown and feathered, is carried into source pixels with the crop,
which is enlarged bicubically (bilinear would soften the generated mouth).

Two implementations of the same recipe: OpenCV on the CPU, frame by frame over the changed
box only; torch on the render's device (a GPU), a batch at a time, so a GPU dub never brings
the crops back to the CPU. tests/test_dub.py holds them to one grey level of each other.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

GROW = 5            # px (working crop): the changed mask is dilated by a GROW x GROW square...
FEATHER = 7         # ...then blurred by a FEATHER x FEATHER Gaussian (OpenCV's sigma for that size)


def changed(crop: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(S, S) bool: where a uint8 crop differs from the prepared frame by more than one level."""
    return np.abs(crop.astype(np.int16) - ref.astype(np.int16)).max(-1) > 1


def composite_cpu(crops: np.ndarray, refs: Sequence[np.ndarray], originals: Sequence[np.ndarray],
                  crop_box: Sequence[int]) -> list[np.ndarray]:
    """OpenCV: each crop (S, S, 3) uint8 into its original frame; crop_box = [x0, y0, side, side]."""
    import cv2

    x0, y0, side, _ = (int(v) for v in crop_box)
    out = []
    for crop, ref, full in zip(crops, refs, originals):
        s = crop.shape[0]
        h, w = full.shape[:2]
        diff = changed(crop, ref)
        if not diff.any():
            out.append(full)
            continue
        alpha = cv2.GaussianBlur(cv2.dilate(diff.astype(np.float32), np.ones((GROW, GROW), np.uint8)),
                                 (FEATHER, FEATHER), 0)
        ys, xs = np.nonzero(alpha > 1e-3)
        # Work on the changed box only: resize it from working to source pixels.
        by0, by1, bx0, bx1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        k = side / s
        sy0, sy1 = int(np.floor(y0 + by0 * k)), int(np.ceil(y0 + by1 * k))
        sx0, sx1 = int(np.floor(x0 + bx0 * k)), int(np.ceil(x0 + bx1 * k))
        cy0, cy1, cx0, cx1 = max(0, sy0), min(h, sy1), max(0, sx0), min(w, sx1)
        if cy1 <= cy0 or cx1 <= cx0:
            out.append(full)
            continue
        # Map source pixel centres of the box back into the crop and sample there.
        gx = ((np.arange(cx0, cx1) + 0.5 - x0) / k - 0.5).astype(np.float32)
        gy = ((np.arange(cy0, cy1) + 0.5 - y0) / k - 0.5).astype(np.float32)
        mx, my = np.meshgrid(gx, gy)
        rgb = cv2.remap(crop, mx, my, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        a = cv2.remap(alpha, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)[..., None]
        patch = full[cy0:cy1, cx0:cx1].astype(np.float32)
        full = full.copy()
        full[cy0:cy1, cx0:cx1] = np.clip(patch + (rgb - patch) * a + 0.5, 0, 255).astype(np.uint8)
        out.append(full)
    return out


def _gaussian(size: int, device) -> torch.Tensor:
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8              # what OpenCV uses for sigma 0
    x = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def composite_device(crops: torch.Tensor, refs: torch.Tensor, originals: torch.Tensor,
                     crop_box: Sequence[int]) -> torch.Tensor:
    """The same on a device, for a batch: crops and refs (B, 3, S, S) uint8, originals (B, 3, H, W)
    uint8, all on one device; returns (B, 3, H, W) uint8 there."""
    x0, y0, side, _ = (int(v) for v in crop_box)
    B, _, H, W = originals.shape
    s = crops.shape[-1]
    dev = crops.device
    diff = ((crops.to(torch.int16) - refs.to(torch.int16)).abs().amax(1, keepdim=True) > 1).float()
    if not bool(diff.any()):
        return originals
    grown = F.max_pool2d(diff, GROW, stride=1, padding=GROW // 2)
    g = _gaussian(FEATHER, dev)
    p = FEATHER // 2
    alpha = F.conv2d(F.pad(grown, (p, p, 0, 0), mode="reflect"), g.view(1, 1, 1, -1))
    alpha = F.conv2d(F.pad(alpha, (0, 0, p, p), mode="reflect"), g.view(1, 1, -1, 1))       # (B, 1, S, S)
    # The source pixels the crop covers, and where their centres fall in the crop.
    k = side / s
    cy0, cy1, cx0, cx1 = max(0, y0), min(H, y0 + side), max(0, x0), min(W, x0 + side)
    if cy1 <= cy0 or cx1 <= cx0:
        return originals
    gx = ((torch.arange(cx0, cx1, device=dev) + 0.5 - x0) / k - 0.5)
    gy = ((torch.arange(cy0, cy1, device=dev) + 0.5 - y0) / k - 0.5)
    # grid_sample's normalised coordinates (align_corners=False): pixel i at (2i + 1) / S - 1.
    nx, ny = (2 * gx + 1) / s - 1, (2 * gy + 1) / s - 1
    grid = torch.stack(torch.meshgrid(ny, nx, indexing="ij")[::-1], -1).expand(B, -1, -1, -1)
    # Rounded as OpenCV's remap of a uint8 image is, so both paths agree to a grey level.
    rgb = F.grid_sample(crops.float(), grid, mode="bicubic", padding_mode="border",
                        align_corners=False).round().clamp(0, 255)
    a = F.grid_sample(alpha, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    out = originals.clone()
    patch = originals[:, :, cy0:cy1, cx0:cx1].float()
    out[:, :, cy0:cy1, cx0:cx1] = (patch + (rgb - patch) * a + 0.5).floor().clamp(0, 255).to(torch.uint8)
    return out
