"""Pose control (paper §4.3, "Pose Controllable Synthesis"): turn the head of any frame.

A user gives yaw, pitch and roll offsets in degrees, constant or as keyframes
(PoseTrack). turn_heads() forward-warps the head of each composite crop into the
offset pose with the learned canonical depth (Gamem's) and reports the
disoccluded pixels, which Blend-Net then fills.

Angle conventions, in the observed working crop (x right, y down, z away from
the camera, as in core.engine.warp), rotating about the head centre:
- yaw > 0 turns the face towards the viewer's right: the nose tip moves to +x;
- pitch > 0 nods the face down: the nose tip moves to +y;
- roll > 0 tilts the head clockwise on screen.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError
from ..engine.warp import o2c_grid, pixel_centres

YAW_LIMIT = 20.0
PITCH_LIMIT = 15.0
ROLL_LIMIT = 15.0
LIMITS = (YAW_LIMIT, PITCH_LIMIT, ROLL_LIMIT)
AXES = ("yaw", "pitch", "roll")


class PoseTrackError(UserError):
    """A pose-track file is missing or malformed."""


# --- the per-frame offset track -------------------------------------------------------

@dataclass(frozen=True)
class PoseKey:
    frame: int
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fritsch-Carlson slopes: the cubic never overshoots its keyframes. The end slopes are
    zero, so the motion eases in and out of the constant holds before and after the track."""
    h = np.diff(x)
    d = np.diff(y) / h
    m = np.zeros_like(y)
    for i in range(1, len(x) - 1):
        if d[i - 1] * d[i] > 0:
            w1, w2 = 2 * h[i] + h[i - 1], h[i] + 2 * h[i - 1]
            m[i] = (w1 + w2) / (w1 / d[i - 1] + w2 / d[i])
    return m


@dataclass
class PoseTrack:
    """Keyframed yaw/pitch/roll offsets (degrees), interpolated by a monotone cubic.

    Before the first and after the last keyframe the offsets hold constant, and the
    motion eases into and out of them (zero end slopes). The
    monotone cubic never overshoots, so a track whose keys are within the limits
    stays within them at every frame.
    """

    keys: list[PoseKey] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.keys = sorted(self.keys, key=lambda k: k.frame)
        frames = [k.frame for k in self.keys]
        if len(set(frames)) != len(frames):
            raise PoseTrackError("The pose track has two keyframes on the same frame; keep one per frame.")

    @classmethod
    def constant(cls, yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> "PoseTrack":
        return cls([PoseKey(0, float(yaw), float(pitch), float(roll))])

    def is_zero(self) -> bool:
        return all(k.yaw == 0 and k.pitch == 0 and k.roll == 0 for k in self.keys)

    def at(self, frames: np.ndarray) -> np.ndarray:
        """(N, 3) yaw, pitch, roll in degrees at output frame indices `frames`."""
        t = np.asarray(frames, np.float64).reshape(-1)
        if not self.keys:
            return np.zeros((len(t), 3))
        x = np.array([k.frame for k in self.keys], np.float64)
        y = np.array([[k.yaw, k.pitch, k.roll] for k in self.keys], np.float64)  # (K, 3)
        if len(x) == 1:
            return np.repeat(y, len(t), axis=0)
        tc = np.clip(t, x[0], x[-1])
        i = np.clip(np.searchsorted(x, tc, side="right") - 1, 0, len(x) - 2)
        h = x[i + 1] - x[i]
        s = (tc - x[i]) / h                                                    # (N,) in [0, 1]
        h00, h10 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s
        h01, h11 = -2 * s**3 + 3 * s**2, s**3 - s**2
        out = np.empty((len(t), 3))
        for a in range(3):
            m = _pchip_slopes(x, y[:, a])
            out[:, a] = h00 * y[i, a] + h10 * h * m[i] + h01 * y[i + 1, a] + h11 * h * m[i + 1]
        return out

    def clamp(self) -> tuple["PoseTrack", list[str]]:
        """The track with every key inside the limits, and one line per clamped value for the log."""
        notes, keys = [], []
        for k in self.keys:
            vals = [k.yaw, k.pitch, k.roll]
            for a, (v, lim) in enumerate(zip(vals, LIMITS)):
                if abs(v) > lim:
                    c = math.copysign(lim, v)
                    notes.append(f"{AXES[a]} {v:+.1f}° at frame {k.frame} is beyond what the clip supports; "
                                 f"clamped to {c:+.0f}°")
                    vals[a] = c
            keys.append(PoseKey(k.frame, *vals))
        return PoseTrack(keys), notes

    # files
    def to_json(self) -> dict:
        return {"keyframes": [{"frame": k.frame, "yaw": k.yaw, "pitch": k.pitch, "roll": k.roll}
                              for k in self.keys]}

    @classmethod
    def from_json(cls, obj, where: str = "the pose track") -> "PoseTrack":
        items = obj.get("keyframes") if isinstance(obj, dict) else obj
        if not isinstance(items, list) or not items:
            raise PoseTrackError(f'{where} needs a non-empty "keyframes" list like '
                                 '[{"frame": 0, "yaw": 10, "pitch": 0, "roll": 0}].')
        keys = []
        for n, it in enumerate(items):
            if not isinstance(it, dict) or "frame" not in it:
                raise PoseTrackError(f'{where}: keyframe {n} must be an object with a "frame" and '
                                     'any of "yaw", "pitch", "roll" in degrees.')
            unknown = set(it) - {"frame", *AXES}
            if unknown:
                raise PoseTrackError(f"{where}: keyframe {n} has unknown field(s) {', '.join(sorted(unknown))}; "
                                     "use frame, yaw, pitch, roll.")
            try:
                frame = it["frame"]
                if isinstance(frame, bool) or int(frame) != frame or frame < 0:
                    raise ValueError
                vals = [float(it.get(a, 0.0)) for a in AXES]
            except (TypeError, ValueError):
                raise PoseTrackError(f"{where}: keyframe {n} needs a whole frame number >= 0 and "
                                     "numeric angles in degrees.") from None
            if not all(math.isfinite(v) for v in vals):
                raise PoseTrackError(f"{where}: keyframe {n} has a non-finite angle.")
            keys.append(PoseKey(int(frame), *vals))
        return cls(keys)

    @classmethod
    def load(cls, path: Path | str) -> "PoseTrack":
        path = Path(path)
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PoseTrackError(f"Pose track {path} does not exist; check the path.") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise PoseTrackError(f"Pose track {path} is not readable JSON ({e.__class__.__name__}); "
                                 "write it as {\"keyframes\": [{\"frame\": 0, \"yaw\": 10}]}.") from None
        return cls.from_json(obj, str(path))

    def save(self, path: Path | str) -> None:
        from ..project import write_json

        write_json(path, self.to_json())


# --- geometry ------------------------------------------------------------------------

def rotation(yaw: float, pitch: float, roll: float, dtype=torch.float32, device=None) -> torch.Tensor:
    """(3, 3) rotation in observed crop axes for offsets in degrees (conventions above)."""
    return rotations(torch.tensor([[yaw, pitch, roll]], dtype=dtype, device=device))[0]


def rotations(offsets_deg: torch.Tensor) -> torch.Tensor:
    """(B, 3) yaw, pitch, roll in degrees -> (B, 3, 3) rotations R = Rroll Rpitch Ryaw."""
    a = torch.deg2rad(offsets_deg)
    c, s = torch.cos(a), torch.sin(a)
    one, zero = torch.ones_like(a[:, 0]), torch.zeros_like(a[:, 0])

    def m(rows):
        return torch.stack([torch.stack(r, -1) for r in rows], -2)

    # x' = x cos - z sin moves a near point (z < 0) to +x for yaw > 0.
    ry = m([[c[:, 0], zero, -s[:, 0]], [zero, one, zero], [s[:, 0], zero, c[:, 0]]])
    rx = m([[one, zero, zero], [zero, c[:, 1], -s[:, 1]], [zero, s[:, 1], c[:, 1]]])
    rz = m([[c[:, 2], -s[:, 2], zero], [s[:, 2], c[:, 2], zero], [zero, zero, one]])
    return rz @ rx @ ry


def head_pivot(depth: torch.Tensor, head_mask: torch.Tensor) -> torch.Tensor:
    """(3,) the head's centre of rotation in canonical pixels.

    x, y: the centroid of the head mask. z: the far edge of the visible head
    surface (95th percentile of its depth), about where the ears and the neck's
    axis lie; a rotation about the face surface itself would slide, not turn.
    """
    m = head_mask > 0.5
    s = depth.shape[-1]
    uv = pixel_centres(s, s, depth.device, depth.dtype)[m]                  # (M, 2)
    z = torch.quantile(depth[m].float(), 0.95).to(depth.dtype)
    return torch.cat([uv.mean(0), z[None]])


def offset_pose(pose: torch.Tensor, yaw: float, pitch: float, roll: float, pivot: torch.Tensor) -> torch.Tensor:
    """(3, 4) pose turned by the offsets about the head centre.

    pivot: (3,) head centre in canonical pixels. With c = pose(pivot), the new
    pose maps p to R (pose(p) - c) + c, so the head turns in place.
    """
    r = rotation(yaw, pitch, roll, pose.dtype, pose.device)
    c = pose[:, :3] @ pivot + pose[:, 3]
    return torch.cat([r @ pose[:, :3], (r @ (pose[:, 3] - c) + c)[:, None]], dim=1)


# --- forward warping -----------------------------------------------------------------

HOLE_COVERAGE = 0.3      # splat weight below which a pixel received no content
CRACK_CELLS = 1          # gaps this many geometry cells wide are closed from their sides
Z_SOFTNESS = 0.5         # depth (geometry px) over which the soft z-buffer blends surfaces
GEOMETRY_SIDE = 64       # the warp's geometry is computed on a grid this fine (the map is smooth)
BAND = 0.1               # the turn eases out over this share of the crop around the head mask


def _splat(values: torch.Tensor, xy: torch.Tensor, z: torch.Tensor, weight: torch.Tensor, size: int):
    """Bilinear forward splat with a soft z-buffer.

    values: (B, C, P) to splat; xy: (B, P, 2) target pixel coords; z: (B, P) depth
    (smaller is nearer); weight: (B, P) per-point weight (0 drops a point).
    returns splatted values (B, C, size*size) normalised, and coverage (B, size*size)
    The four corners of every point go in one scatter: the grid is small, so the
    cost is the number of tensor ops, not their size.
    """
    b, c, p = values.shape
    gx, gy = xy[..., 0] - 0.5, xy[..., 1] - 0.5                             # to integer-centred
    x0, y0 = torch.floor(gx), torch.floor(gy)
    fx, fy = gx - x0, gy - y0
    # Corners stacked on dim 1, (B, 4, P): whole rows copy, where the last dim would interleave.
    cx = torch.stack([x0, x0 + 1, x0, x0 + 1], dim=1)
    cy = torch.stack([y0, y0, y0 + 1, y0 + 1], dim=1)
    gx, gy = 1 - fx, 1 - fy
    bw = torch.stack([gx * gy, fx * gy, gx * fy, fx * fy], dim=1) * weight[:, None]
    ok = (cx >= 0) & (cx < size) & (cy >= 0) & (cy < size) & (bw > 0)
    idx = (cy.clamp(0, size - 1) * size + cx.clamp(0, size - 1)).long().view(b, 4 * p)
    bw = (bw * ok).view(b, 4 * p)
    ok = ok.view(b, 4 * p)
    zc = z[:, None].expand(b, 4, p).reshape(b, 4 * p)
    # Pass 1, a hard z-buffer: the nearest depth landing on each pixel.
    zbuf = z.new_full((b, size * size), float("inf"))
    zbuf.scatter_reduce_(1, idx, zc.masked_fill(~ok, float("inf")), "amin")
    # Pass 2, soft splatting relative to it: surfaces within a few px blend, hidden ones vanish.
    zrel = (zc - zbuf.gather(1, idx)).clamp(min=0, max=50)
    w = bw * torch.exp(-zrel / Z_SOFTNESS)
    vals = values[:, :, None].expand(b, c, 4, p).reshape(b, c, 4 * p)
    src = torch.cat([vals * w[:, None], w[:, None], (bw * (zrel < 3 * Z_SOFTNESS))[:, None]], dim=1)
    acc = values.new_zeros(b, c + 2, size * size)
    acc.scatter_add_(2, idx[:, None].expand(b, c + 2, 4 * p), src)
    out = acc[:, :c] / acc[:, c:c + 1].clamp(min=1e-12)
    return out, acc[:, c + 1]


def _box(x: torch.Tensor, r: int) -> torch.Tensor:
    """(B, C, H, W) sums over (2r+1)^2 windows, zero outside; by cumulative sums, since
    torch's CPU pooling costs a millisecond even on the coarse grid."""
    k = 2 * r + 1
    c = F.pad(x, (r + 1, r, r + 1, r)).cumsum(-1).cumsum(-2)
    return c[..., k:, k:] - c[..., :-k, k:] - c[..., k:, :-k] + c[..., :-k, :-k]


def _box_mean(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over the (2r+1)^2 window's pixels inside the image (avg_pool2d, count_include_pad=False)."""
    return _box(x, r) / _box(torch.ones_like(x[:1, :1]), r)


def _falloff(head: torch.Tensor, r: int) -> torch.Tensor:
    """(B, g, g) weight of the turn: 1 on the head, easing to 0 over about 2r cells outside it."""
    core = (head > 0.5).to(head.dtype)[:, None]
    grown = (_box(core, r) > 0.5).to(head.dtype)                           # dilated by r cells
    ramp = _box_mean(grown, r)
    return torch.maximum(core, ramp)[:, 0]


@dataclass
class HeadGrid:
    """The canonical head on the warp's coarse grid. Fixed once Gamem is trained: build it once."""

    size: int               # working crop side S
    f: int                  # crop pixels per grid cell
    depth: torch.Tensor     # (g, g) canonical depth, in grid units
    mask: torch.Tensor      # (g, g) soft head mask
    pivot: torch.Tensor     # (3,) head centre, in grid units
    points: torch.Tensor    # (g, g, 3) canonical surface points (cell centre, depth)


def head_grid(depth: torch.Tensor, head_mask: torch.Tensor, dtype=torch.float32) -> HeadGrid:
    """HeadGrid of Gamem's (S, S) canonical depth and head mask: pixel units shrink by f."""
    s = depth.shape[-1]
    f = max(1, s // GEOMETRY_SIDE)
    depth_g = F.avg_pool2d(depth.detach().to(dtype)[None, None], f)[0, 0] / f
    mask_g = F.avg_pool2d(head_mask.detach().to(dtype)[None, None], f)[0, 0]
    uv = pixel_centres(s // f, s // f, depth.device, dtype)
    return HeadGrid(size=s, f=f, depth=depth_g, mask=mask_g, pivot=head_pivot(depth_g, mask_g),
                    points=torch.cat([uv, depth_g[..., None]], dim=-1))


@dataclass
class Turn:
    """Where each pixel of the turned crops comes from: built by turn_heads, applied by warp().

    Only the crops `moving` change, and only inside `box`; there each pixel samples
    `grid` (grid_sample units), except `hole` pixels, which nothing landed on.
    """

    batch: int
    size: int
    moving: torch.Tensor    # (n,) indices of the crops that turn
    box: tuple[slice, slice]
    grid: torch.Tensor      # (n, h, w, 2)
    hole: torch.Tensor      # (n, 1, h, w) bool

    def warp(self, images: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """(B, C, S, S) images (the crops, or channels that move with them) turned; holes are 0.

        inplace: write into `images` (and return it) instead of a copy.
        """
        every = len(self.moving) == self.batch
        src = images if every else images[self.moving]
        turned = F.grid_sample(src, self.grid, padding_mode="border", align_corners=False).masked_fill_(self.hole, 0)
        out = images if inplace else images.clone()
        if every:
            out[(slice(None), slice(None), *self.box)] = turned
        else:
            src[(slice(None), slice(None), *self.box)] = turned      # src is a copy: indexed by a tensor
            out[self.moving] = src
        return out

    @property
    def any_hole(self) -> bool:
        return bool(self.hole.any())

    def holes(self) -> torch.Tensor:
        """(B, 1, S, S) in {0, 1}: the disoccluded pixels Blend-Net must fill."""
        holes = self.grid.new_zeros(self.batch, 1, self.size, self.size)
        part = holes[self.moving]
        part[(slice(None), slice(None), *self.box)] = self.hole.to(holes.dtype)
        holes[self.moving] = part
        return holes


def repose(crops: torch.Tensor, depth: torch.Tensor, head_mask: torch.Tensor, poses: torch.Tensor,
           offsets_deg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn the head in each crop by its yaw/pitch/roll offsets; the background stays still.

    crops: (B, C, S, S) composites (RGB, optionally with channels that move with the head)
    depth, head_mask: (S, S) canonical depth (Gamem's learned one) and soft head mask
    poses: (B, 3, 4) canonical -> observed pose; offsets_deg: (B, 3) yaw, pitch, roll
    returns warped (B, C, S, S) with holes zeroed, and holes (B, 1, S, S) in {0, 1}
    """
    turn = turn_heads(head_grid(depth, head_mask, crops.dtype), poses, offsets_deg)
    if turn is None:
        return crops.clone(), crops.new_zeros(crops.shape[0], 1, *crops.shape[-2:])
    return turn.warp(crops), turn.holes()


def turn_heads(head: HeadGrid, poses: torch.Tensor, offsets_deg: torch.Tensor) -> Optional[Turn]:
    """The Turn that puts each crop's head into its offset pose; None if no offset is set.

    poses: (B, 3, 4) canonical -> observed pose of each crop; offsets_deg: (B, 3).

    Every observed head pixel gets its depth from the canonical depth carried into
    this frame's pose, turns about the head centre and is splatted, z-buffered,
    into the new view.
    The head mask covers the face, not the ears and hair beside it, so the turn
    eases out over a band of BAND (of S) around it instead of tearing the head
    from its outline; there points turn at their depth clamped to the pivot's, as
    the sides of a head do. The splat carries each point's source position, so
    colour is then sampled from the crop at full resolution; the geometry is
    smooth and is computed on a GEOMETRY_SIDE grid, which keeps this cheap.
    """
    b, s, f = poses.shape[0], head.size, head.f
    dtype, dev = head.depth.dtype, head.depth.device
    offsets_deg = offsets_deg.to(dtype=dtype, device=dev)
    moving = (offsets_deg != 0).any(dim=1)
    if not bool(moving.any()):
        return None
    idx = moving.nonzero()[:, 0]
    ps, off = poses[idx].to(dtype), offsets_deg[idx]
    n, g = len(idx), s // f
    depth_g, mask_g, pivot = head.depth, head.mask, head.pivot
    ps_g = torch.cat([ps[:, :, :3], ps[:, :, 3:] / f], dim=2)

    # The observed view's depth and head mask, by splatting every canonical point to where the
    # pose puts it (z-buffered: a surface hidden in this frame does not count). Outside the
    # head the background stays where it is, as in core.engine.warp.
    obs = o2c_grid(depth_g, mask_g, ps_g)                                  # (n, g, g, 2)
    z_head = torch.einsum("bj,hwj->bhw", ps_g[:, 2, :3], head.points) + ps_g[:, 2, None, None, 3]
    z_can = mask_g * z_head + (1 - mask_g) * depth_g                        # (n, g, g)
    vals = torch.stack([z_can, mask_g.expand(n, g, g)], 1).reshape(n, 2, -1)
    zm, zcov = _splat(vals, obs.reshape(n, -1, 2), z_can.reshape(n, -1), torch.ones_like(z_can).reshape(n, -1), g)
    seen = (zcov > 1e-3).reshape(n, g, g)
    z_obs = zm[:, 0].reshape(n, g, g)
    head_obs = torch.where(seen, zm[:, 1].reshape(n, g, g), torch.zeros_like(z_obs))

    # Turn about the observed head centre c = pose(pivot), weighted by the falloff.
    c = torch.einsum("bij,j->bi", ps_g[:, :, :3], pivot) + ps_g[:, :, 3]   # (n, 3)
    xy = pixel_centres(g, g, dev, dtype).expand(n, g, g, 2)
    z_obs = torch.where(seen, torch.minimum(z_obs, c[:, None, None, 2]), c[:, None, None, 2])
    p_obs = torch.cat([xy, z_obs[..., None]], dim=-1)                       # (n, g, g, 3)
    turned = torch.einsum("bij,bhwj->bhwi", rotations(off), p_obs - c[:, None, None]) + c[:, None, None]
    w = _falloff(head_obs, max(1, round(BAND * g / 2)))                     # (n, g, g)
    p_new = p_obs + w[..., None] * (turned - p_obs)
    src, cover = _splat(xy.reshape(n, -1, 2).transpose(1, 2), p_new[..., :2].reshape(n, -1, 2),
                        p_new[..., 2].reshape(n, -1), (w > 0).reshape(n, -1).to(dtype), g)

    # Close cracks: cells of the turned region the splat left nearly empty (stretched
    # surface) take their neighbours' source positions; wider gaps stay holes for Blend-Net.
    src, cover = src.reshape(n, 2, g, g), cover.reshape(n, 1, g, g)
    for _ in range(CRACK_CELLS):
        need = (cover < HOLE_COVERAGE) & (w[:, None] > 0.5)
        den = _box_mean(cover, 1)
        num = _box_mean(src * cover, 1)
        src = torch.where(need & (den > 1e-3), num / den.clamp(min=1e-3), src)
        cover = torch.where(need, den, cover)

    # Full resolution, inside the turned region's box only. Each pixel samples the crop where
    # its content came from: coverage-weighted upsampling of the splatted source positions,
    # and its own centre where nothing landed. A one-cell margin keeps the box's upsampling
    # identical to the whole grid's.
    rows, cols = torch.nonzero((w > 0).any(0), as_tuple=True)
    y0, y1 = max(0, int(rows.min()) - 1), min(g, int(rows.max()) + 2)
    x0, x1 = max(0, int(cols.min()) - 1), min(g, int(cols.max()) + 2)
    lo = torch.cat([(src - xy.permute(0, 3, 1, 2)) * cover, cover, w[:, None]], 1)
    hi = F.interpolate(lo[..., y0:y1, x0:x1].contiguous(), scale_factor=f, mode="bilinear", align_corners=False)
    cov = hi[:, 2:3]
    landed = cov > HOLE_COVERAGE
    hole = (hi[:, 3:4] > 0.5) & ~landed
    # Displacements are interpolated (smooth), then added to the full-res pixel centres,
    # straight in grid_sample's [-1, 1] units: the box is most of the crop, so every
    # full-resolution pass counts.
    h, wd = hi.shape[-2:]
    bx = (torch.arange(wd, device=dev, dtype=dtype) + (x0 * f + 0.5)) * (2.0 / s) - 1.0     # (w,)
    by = (torch.arange(h, device=dev, dtype=dtype) + (y0 * f + 0.5)) * (2.0 / s) - 1.0      # (h,)
    k = torch.where(landed, (2.0 * f / s) / cov, torch.zeros_like(cov))[:, 0]          # (n, h, w)
    grid = torch.stack([torch.addcmul(bx, hi[:, 0], k), torch.addcmul(by[:, None], hi[:, 1], k)], dim=-1)
    return Turn(batch=b, size=s, moving=idx, box=(slice(y0 * f, y1 * f), slice(x0 * f, x1 * f)),
                grid=grid, hole=hole)
