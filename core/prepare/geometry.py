"""Head geometry from landmarks: similarity poses, the canonical frame, depth, masks, boxes.

All in working-crop pixels (core.engine.warp conventions). Pure numpy (and OpenCV); the
differentiable warps live in core.engine.warp. `o2c_map` and `remap` are core.engine.warp's o2c_grid
and sample for prepare, which then needs no torch (its import alone is a large share
of a short clip's prepare).
"""
from __future__ import annotations

import numpy as np

from . import faces as F


# --- poses -----------------------------------------------------------------------

def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Batched least-squares similarity dst ~ s R src + t (Umeyama 1991).

    src, dst: (B, K, 3) -> (B, 3, 4) with [:, :, :3] = s R
    """
    mu_s, mu_d = src.mean(1, keepdims=True), dst.mean(1, keepdims=True)
    xs, xd = src - mu_s, dst - mu_d
    cov = np.einsum("bki,bkj->bij", xd, xs) / src.shape[1]               # (B, 3, 3)
    u, sig, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt))
    e = np.ones_like(sig)
    e[:, 2] = d
    rot = u @ (e[:, :, None] * vt)
    var = (xs ** 2).sum(axis=(1, 2)) / src.shape[1]
    scale = (sig * e).sum(1) / np.maximum(var, 1e-12)
    lin = scale[:, None, None] * rot
    t = mu_d[:, 0] - np.einsum("bij,bj->bi", lin, mu_s[:, 0])
    return np.concatenate([lin, t[:, :, None]], axis=2).astype(np.float32)


def apply_pose(poses: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """(B, 3, 4) x (B or 1, K, 3) -> (B, K, 3)."""
    return np.einsum("bij,bkj->bki", poses[:, :, :3], pts) + poses[:, None, :, 3]


def nearest_tracked(has_face: np.ndarray) -> np.ndarray:
    """(N,) index of the nearest frame with a face (ties go to the earlier one).

    Linear memory: a frames-by-frames distance matrix would take gigabytes on a long clip.
    """
    idx = np.flatnonzero(has_face)
    frames = np.arange(len(has_face))
    right = np.clip(np.searchsorted(idx, frames), 0, len(idx) - 1)
    left = np.clip(right - 1, 0, len(idx) - 1)
    take_left = np.abs(frames - idx[left]) <= np.abs(idx[right] - frames)
    return np.where(take_left, idx[left], idx[right])


def fit_poses(canon: np.ndarray, lm: np.ndarray, has_face: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Poses canonical -> each frame on the rigid set, and per-frame mean residual (px).

    Faceless frames take the pose of the nearest tracked frame so arrays stay finite.
    """
    n = len(lm)
    poses = np.zeros((n, 3, 4), np.float32)
    resid = np.full(n, np.nan, np.float32)
    idx = np.flatnonzero(has_face)
    src = np.broadcast_to(canon[F.RIGID], (len(idx), len(F.RIGID), 3))
    dst = lm[idx][:, F.RIGID]
    poses[idx] = umeyama(src.astype(np.float64), dst.astype(np.float64))
    resid[idx] = np.linalg.norm(apply_pose(poses[idx], src) - dst, axis=-1).mean(1)
    if len(idx) and len(idx) < n:
        nearest = nearest_tracked(has_face)
        missing = ~has_face
        poses[missing] = poses[nearest[missing]]
    return poses, resid


def pose_angles(poses: np.ndarray) -> np.ndarray:
    """(B, 3) yaw, pitch, roll in degrees of the rotation part."""
    lin = poses[:, :, :3]
    s = np.cbrt(np.linalg.det(lin))[:, None, None]
    r = lin / s
    yaw = np.degrees(np.arcsin(np.clip(-r[:, 2, 0], -1, 1)))
    pitch = np.degrees(np.arctan2(r[:, 2, 1], r[:, 2, 2]))
    roll = np.degrees(np.arctan2(r[:, 1, 0], r[:, 0, 0]))
    return np.stack([yaw, pitch, roll], 1)


def choose_canonical(lm: np.ndarray, has_face: np.ndarray) -> int:
    """The tracked frame nearest the clip's median pose, with eyes open and mouth near closed."""
    idx = np.flatnonzero(has_face)
    ref = lm[idx[len(idx) // 2]]
    poses, _ = fit_poses(ref, lm, has_face)
    feats = np.concatenate([pose_angles(poses), np.cbrt(np.linalg.det(poses[:, :, :3]))[:, None] * 100,
                            poses[:, :2, 3]], axis=1)[idx]
    med = np.median(feats, 0)
    spread = np.median(np.abs(feats - med), 0) + 1e-3
    dist = np.sqrt((((feats - med) / spread) ** 2).sum(1))
    eyes, mouth = F.eye_opening(lm[idx]), F.mouth_opening(lm[idx])
    ok = (eyes >= np.percentile(eyes, 40)) & (mouth <= np.percentile(mouth, 25))
    if not ok.any():
        ok[:] = True
    dist[~ok] = np.inf
    return int(idx[int(np.argmin(dist))])


# --- the crop ----------------------------------------------------------------------

def choose_crop(lm_src: np.ndarray, has_face: np.ndarray, width: int, height: int,
                margin: float = 1.8) -> list[int]:
    """One square crop [x0, y0, side, side] in source pixels holding the head in every frame.

    Kept inside the frame when the frame allows it; otherwise the crop is padded.
    """
    boxes = F.face_box(lm_src[has_face])
    lo = np.percentile(boxes[:, :2], 2, axis=0)
    hi = np.percentile(boxes[:, 2:], 98, axis=0)
    face = float(np.median(np.max(boxes[:, 2:] - boxes[:, :2], axis=1)))
    centre = (lo + hi) / 2
    centre[1] -= 0.08 * face                     # leave room for hair above the face box
    side = max(float(np.max(hi - lo)) + 0.5 * face, margin * face)
    if side <= 1.3 * min(width, height):
        side = min(side, float(min(width, height)))   # a little less margin beats padded borders
    side = int(round(side / 2) * 2)
    x0 = int(round(centre[0] - side / 2))
    y0 = int(round(centre[1] - side / 2))
    if side <= width:
        x0 = int(np.clip(x0, 0, width - side))
    if side <= height:
        y0 = int(np.clip(y0, 0, height - side))
    return [x0, y0, side, side]


def to_crop(lm_src: np.ndarray, crop: list[int], size: int) -> np.ndarray:
    """Source-pixel landmarks -> working-crop pixels (z scales with x)."""
    k = size / crop[2]
    out = lm_src.copy()
    out[..., 0] = (lm_src[..., 0] - crop[0]) * k
    out[..., 1] = (lm_src[..., 1] - crop[1]) * k
    out[..., 2] = lm_src[..., 2] * k
    return out


# --- dense canonical geometry ------------------------------------------------------

def _polygon_mask(pts: np.ndarray, size: int) -> np.ndarray:
    import cv2

    m = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(m, np.round(cv2.convexHull(pts.astype(np.float32))[:, 0] * 16).astype(np.int32), 255,
                       lineType=cv2.LINE_AA, shift=4)
    return m.astype(np.float32) / 255.0


def face_and_head_masks(canon: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Soft masks (S, S): the face mesh's hull, and the head (face plus hair, temples, ears)."""
    import cv2

    oval = canon[F.FACE_OVAL, :2]
    face = _polygon_mask(canon[:468, :2], size)
    centre = oval.mean(0)
    fh = oval[:, 1].max() - oval[:, 1].min()
    grown = centre + (oval - centre) * np.array([1.12, 1.0])
    top = grown[:, 1] < centre[1]
    grown[top, 1] = centre[1] + (grown[top, 1] - centre[1]) * 1.25    # hair above the forehead
    # Stop just below the chin (the neck moves otherwise), far enough that the
    # blurred edge lies outside the face: a face pixel must move fully with the head.
    grown[~top, 1] = np.minimum(grown[~top, 1], oval[:, 1].max() + 0.06 * fh)
    blur = max(1.0, size / 128)
    hard_head = cv2.dilate(np.maximum(_polygon_mask(grown, size), face), np.ones((7, 7), np.uint8))
    head = np.maximum(cv2.GaussianBlur(hard_head, (0, 0), blur * 2), face)
    return cv2.GaussianBlur(face, (0, 0), blur), head


def mesh_z(pts: np.ndarray, size: int) -> np.ndarray:
    """(S, S) the points' z linearly interpolated over their Delaunay triangles at pixel centres,
    NaN outside the triangles: scipy's LinearNDInterpolator, without its half-second import."""
    import cv2

    xy = pts[:, :2].astype(np.float32)
    x0, y0 = np.floor(xy.min(0)).astype(int) - 2
    x1, y1 = np.ceil(xy.max(0)).astype(int) + 2
    sub = cv2.Subdiv2D((int(x0), int(y0), int(x1 - x0), int(y1 - y0)))
    sub.insert([(float(x), float(y)) for x, y in xy])
    tri = sub.getTriangleList().reshape(-1, 3, 2)                       # (T, 3, 2) vertex coordinates
    vertex = {(float(x), float(y)): i for i, (x, y) in enumerate(xy)}
    tz = pts[[[vertex[(float(x), float(y))] for x, y in t] for t in tri], 2].astype(np.float64)   # (T, 3)
    z = np.full((size, size), np.nan)
    for (a, b, c), (za, zb, zc) in zip(tri.astype(np.float64), tz):
        lo = np.maximum(np.ceil(np.minimum(np.minimum(a, b), c) - 0.5), 0).astype(int)
        hi = np.minimum(np.floor(np.maximum(np.maximum(a, b), c) - 0.5), size - 1).astype(int)
        det = (b[0] - a[0]) * (c[1] - a[1]) - (c[0] - a[0]) * (b[1] - a[1])
        if (hi < lo).any() or abs(det) < 1e-12:
            continue
        py, px = np.mgrid[lo[1]:hi[1] + 1, lo[0]:hi[0] + 1]                 # pixels whose centres may lie inside
        dx, dy = px + 0.5 - a[0], py + 0.5 - a[1]
        l1 = (dx * (c[1] - a[1]) - dy * (c[0] - a[0])) / det                # barycentric weights of b and c
        l2 = (dy * (b[0] - a[0]) - dx * (b[1] - a[1])) / det
        hit = (l1 >= -1e-7) & (l2 >= -1e-7) & (l1 + l2 <= 1 + 1e-7)           # edges belong to both sides
        z[py[hit], px[hit]] = za + l1[hit] * (zb - za) + l2[hit] * (zc - za)
    return z


def canonical_depth(canon: np.ndarray, head_mask: np.ndarray) -> np.ndarray:
    """(S, S) depth: the mesh's z inside the face, extended smoothly over the rest of the head.

    Beyond the mesh the surface is taken to curve away from the camera as a head
    does (depth grows with distance from the face), then flat behind the head.
    """
    import cv2

    size = head_mask.shape[0]
    z = mesh_z(canon[:468], size)
    inside = np.isfinite(z)
    # Distance to, and label of, the nearest mesh pixel; labels number the mesh pixels in raster order.
    dist, label = cv2.distanceTransformWithLabels((~inside).astype(np.uint8), cv2.DIST_L2, 5,
                                                  labelType=cv2.DIST_LABEL_PIXEL)
    ext = z[inside][label - 1] + 0.6 * dist
    far = np.nanmax(np.where(head_mask > 0.05, ext, np.nan))
    ext = np.where(head_mask > 0.05, ext, far)
    smooth = cv2.GaussianBlur(ext, (0, 0), size / 64, borderType=cv2.BORDER_REFLECT)
    depth = np.where(inside, z, smooth)
    return cv2.GaussianBlur(depth, (0, 0), 0.5, borderType=cv2.BORDER_REFLECT).astype(np.float32)


def mouth_box(canon: np.ndarray, size: int) -> list[int]:
    """[x0, y0, w, h] around lips and jaw in canonical pixels, sides multiples of 8, about 4:3."""
    return _mouth_box(canon[F.LIPS_OUTER, :2], canon[F.NOSE_BOTTOM, 1], canon[F.CHIN, 1], size)


def mouth_box_68(canon68: np.ndarray, size: int) -> list[int]:
    """mouth_box from FAN's 68 points of the canonical frame (canonical_68): the paper's lip paste box.

    The same rule on the same anatomy: FAN's outer lips, nose bottom and chin.
    """
    from .tracking.fan import FAN_CHIN, FAN_LIPS_OUTER, FAN_NOSE_BOTTOM

    return _mouth_box(canon68[FAN_LIPS_OUTER, :2], canon68[FAN_NOSE_BOTTOM, 1], canon68[FAN_CHIN, 1], size)


def _mouth_box(lips: np.ndarray, nose_bottom: float, chin: float, size: int) -> list[int]:
    lw = lips[:, 0].max() - lips[:, 0].min()
    cx = lips[:, 0].mean()
    top = nose_bottom + 0.15 * (lips[:, 1].min() - nose_bottom)
    bottom = chin + 0.12 * lw
    h = bottom - top
    w = max(1.8 * lw, h * 4 / 3)
    h = max(h, w * 3 / 4)
    w8, h8 = int(np.ceil(w / 8) * 8), int(np.ceil(h / 8) * 8)
    w8, h8 = min(w8, size), min(h8, size)
    x0 = int(np.clip(round(cx - w8 / 2), 0, size - w8))
    y0 = int(np.clip(round(top - (h8 - h) * 0.3), 0, size - h8))
    return [x0, y0, w8, h8]


def canonical_68(lm68: np.ndarray, poses: np.ndarray, canon_index: int, canon: np.ndarray) -> np.ndarray:
    """(68, 3) FAN points in canonical pixels, from lm68 (N, 68, 3) in working-crop pixels (NaN: no face).

    The canonical frame is the real frame canon_index, so its own points are already canonical.
    When FAN found no face there, the nearest frame with one is mapped back through the inverse
    of its pose (canonical -> frame, poses (N, 3, 4)), taking FAN's points (2D) to lie at the
    depth of the canonical mesh's lips. ValueError when FAN found no face at all.
    """
    has = np.isfinite(lm68[..., :2]).all(axis=(1, 2))
    if not has.any():
        raise ValueError("FAN found no face in any frame")
    if has[canon_index]:
        return lm68[canon_index].astype(np.float32)
    j = int(nearest_tracked(has)[canon_index])
    lin, t = poses[j, :2, :2].astype(np.float64), poses[j, :2, 3].astype(np.float64)
    z = float(canon[F.LIPS, 2].mean())
    rhs = lm68[j, :, :2].astype(np.float64) - t - z * poses[j, :2, 2]
    out = np.zeros((len(rhs), 3), np.float32)
    out[:, :2] = np.linalg.solve(lin, rhs.T).T
    out[:, 2] = z
    return out


def mouth_variance_ratio(var: np.ndarray, box: list[int], face_mask: np.ndarray) -> float:
    """Mean temporal variance inside the mouth box over the mean over the face."""
    x0, y0, w, h = box
    inner = var[y0:y0 + h, x0:x0 + w].mean()
    face = (var * face_mask).sum() / max(face_mask.sum(), 1e-6)
    return float(inner / max(face, 1e-12))


# --- canonical warps without torch -------------------------------------------------

def o2c_map(depth: np.ndarray, head_mask: np.ndarray, poses: np.ndarray,
            box: list[int] | None = None) -> np.ndarray:
    """(B, H, W, 2) float32 observed-frame pixel coordinates of each canonical pixel: warp.o2c_grid."""
    import cv2

    s = depth.shape[-1]
    ys, xs = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
    m = head_mask.astype(np.float32)
    if box is not None:
        x0, y0, w, h = box
        xs, ys, depth, m = (a[y0:y0 + h, x0:x0 + w] for a in (xs, ys, depth, m))
    # m * (A @ (u, v, z, 1)) + (1 - m) * (u, v): the background stays put. The mask is folded
    # into the canonical terms once; cv2.transform then applies each frame's 2x4 matrix.
    terms = np.ascontiguousarray(np.stack([m * xs, m * ys, m * depth, m], axis=-1))    # (H, W, 4)
    still = np.stack([(1 - m) * xs, (1 - m) * ys], axis=-1)                            # (H, W, 2)
    a = np.asarray(poses, np.float32)[:, :2, :]                                         # (B, 2, 4)
    return np.stack([cv2.transform(terms, f) + still for f in a])


def remap(img: np.ndarray, grid: np.ndarray, cubic: bool = False) -> np.ndarray:
    """Bilinear (or bicubic) sample of one (H, W[, C]) image at (h, w, 2) continuous pixel coordinates,
    edges repeated: warp.sample with padding 'border'. OpenCV puts pixel centres on integers."""
    import cv2

    kind = cv2.INTER_CUBIC if cubic else cv2.INTER_LINEAR
    return cv2.remap(img, grid - 0.5, None, kind, borderMode=cv2.BORDER_REPLICATE)
