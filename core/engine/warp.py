"""The maps between canonical and observed space (paper Eq. 3-5), in torch.

Conventions shared by prepare, Gamem and the renderer:
- Images live in the working crop, S x S pixels. A continuous pixel coordinate
  puts pixel j's centre at j + 0.5, which is MediaPipe's x * S convention.
- A 3D point is (x, y, z) in working pixels; z is MediaPipe's z * S (smaller is nearer).
- A pose A (3 x 4) is the similarity that maps canonical points to observed
  points: p_obs = A[:, :3] @ p_can + A[:, 3], with A[:, :3] = s R.
- A grid holds, for every pixel of the target image, the continuous pixel
  coordinate (x, y) to sample in the source image: shape (B, H, W, 2).

O2C samples an observed frame at A @ (u, v, depth(u, v)) and so brings it into
canonical space. C2O inverts that map by fixed-point iteration, which amounts
to using the observed frame's own depth (the depth of the surface point that
lands on each observed pixel).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def pixel_centres(h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(H, W, 2) continuous coordinates of pixel centres."""
    ys = torch.arange(h, device=device, dtype=dtype) + 0.5
    xs = torch.arange(w, device=device, dtype=dtype) + 0.5
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], dim=-1)


def o2c_grid(depth: torch.Tensor, head_mask: torch.Tensor, poses: torch.Tensor,
             box: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """Where each canonical pixel lies in each observed frame.

    depth, head_mask: (S, S) canonical depth and soft head mask in [0, 1]
    poses: (B, 3, 4) canonical -> observed similarity per frame
    box: optional [x0, y0, w, h] to compute only that part of the canonical image
    returns (B, S, S, 2) (or (B, h, w, 2)) pixel coordinates in the observed frames
    """
    s = depth.shape[-1]
    uv = pixel_centres(s, s, depth.device, depth.dtype)                 # (S, S, 2)
    if box is not None:
        x0, y0, w, h = box
        uv, depth, head_mask = (a[y0:y0 + h, x0:x0 + w] for a in (uv, depth, head_mask))
    pts = torch.cat([uv, depth[..., None]], dim=-1)                     # (S, S, 3)
    obs = torch.einsum("bij,hwj->bhwi", poses[:, :, :3], pts) + poses[:, None, None, :, 3]
    m = head_mask[None, ..., None]
    # Outside the head the background does not move with the pose: identity.
    return m * obs[..., :2] + (1 - m) * uv[None]


def newton_step(jac: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """jac^-1 r for (..., 2, 2) Jacobians and (..., 2) residuals, capped at 4 px so folds cannot blow up."""
    j00, j01, j10, j11 = jac[..., 0, 0], jac[..., 0, 1], jac[..., 1, 0], jac[..., 1, 1]
    det = j00 * j11 - j01 * j10
    det = torch.where(det.abs() < 1e-3, torch.full_like(det, 1e-3), det)
    step = torch.stack([j11 * r[..., 0] - j01 * r[..., 1], j00 * r[..., 1] - j10 * r[..., 0]], -1) / det[..., None]
    return step.clamp(-4.0, 4.0)


def c2o_grid(depth: torch.Tensor, head_mask: torch.Tensor, poses: torch.Tensor, iters: int = 8) -> torch.Tensor:
    """Where each observed pixel lies in canonical space: the inverse of o2c_grid.

    Solves o2c(u) = x by Newton steps. On the head the map's Jacobian is
    L + a grad(depth)^T (L the 2x2 linear part of the pose, a its z column);
    off the head it is the identity. Steps are capped so folds cannot blow up.
    returns (B, S, S, 2) canonical pixel coordinates
    """
    b, s = poses.shape[0], depth.shape[-1]
    fwd = o2c_grid(depth, head_mask, poses).permute(0, 3, 1, 2)          # (B, 2, S, S)
    x = pixel_centres(s, s, depth.device, depth.dtype).expand(b, s, s, 2)
    lin, a = poses[:, :2, :2], poses[:, :2, 2]                            # (B, 2, 2), (B, 2)
    gy, gx = torch.gradient(depth)
    # Per-pixel data sampled at u: depth gradient (2) and head mask (1).
    aux = torch.stack([gx, gy, head_mask])[None].expand(b, 3, s, s)
    # Start from the inverse of the planar part of the similarity.
    u = torch.einsum("bij,bhwj->bhwi", torch.linalg.inv(lin), x - poses[:, None, None, :2, 3])
    eye = torch.eye(2, device=depth.device, dtype=depth.dtype)
    for _ in range(iters):
        r = x - sample(fwd, u).permute(0, 2, 3, 1)                       # (B, S, S, 2)
        g = sample(aux, u).permute(0, 2, 3, 1)                           # (B, S, S, 3)
        m = g[..., 2:3, None]
        jac = lin[:, None, None] + a[:, None, None, :, None] * g[..., None, :2]   # (B, S, S, 2, 2)
        jac = m * jac + (1 - m) * eye
        u = u + newton_step(jac, r)
    return u


# Mouths are resampled twice between the filmed frame and the dubbed one (O2C into mouth.npy, C2O
# when pasted). Bilinear passes at sub-pixel offsets are low-pass filters: two of them left real
# pixels with 0.38x the Laplacian energy of the frame as filmed, two bicubic passes 0.74x.
MOUTH_RESAMPLE = "bicubic"


def sample(img: torch.Tensor, grid_px: torch.Tensor, mode: str = "bilinear",
           padding_mode: str = "border") -> torch.Tensor:
    """grid_sample with pixel-coordinate grids.

    img: (B, C, H, W); grid_px: (B, h, w, 2) continuous pixel coordinates in img
    returns (B, C, h, w)
    """
    h, w = img.shape[-2:]
    scale = torch.tensor([2.0 / w, 2.0 / h], device=img.device, dtype=img.dtype)
    norm = grid_px * scale - 1.0
    return F.grid_sample(img, norm, mode=mode, padding_mode=padding_mode, align_corners=False)
