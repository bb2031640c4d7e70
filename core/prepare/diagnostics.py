"""Pictures a user can open after prepare: landmarks, the canonical frame, motion heat maps, and
the faces found when there were several (which one was chosen, and why).

The motion maps are the paper's Figure 2: per-pixel temporal deviation of the
frames as decoded, and after warping every frame into the canonical pose. After
warping, motion should gather on the lips and eyes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import faces as F
from .geometry import mouth_variance_ratio
from ..project import ProjectFolder, atomic_path

def _save_png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    with atomic_path(path) as tmp:
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
        tmp.write_bytes(buf.tobytes())


def _label(img: np.ndarray, text: str) -> np.ndarray:
    import cv2

    out = img.copy()
    cv2.putText(out, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def landmark_overlay(frame: np.ndarray, lm: np.ndarray) -> np.ndarray:
    import cv2

    out = frame.copy()
    r = max(1, frame.shape[0] // 256)
    rigid = set(F.RIGID)
    lips = set(F.LIPS)
    for j, (x, y, _) in enumerate(lm[:468]):
        if j in rigid or j in lips:
            continue
        cv2.circle(out, (int(x), int(y)), max(1, r - 1), (235, 235, 120), -1, cv2.LINE_AA)
    for j in rigid | lips:        # drawn last so the points the method relies on stay visible
        x, y = lm[j, :2]
        cv2.circle(out, (int(x), int(y)), r + 1, (255, 80, 80) if j in rigid else (80, 255, 120), -1, cv2.LINE_AA)
    return out


def heat(var: np.ndarray, scale: float, under: np.ndarray) -> np.ndarray:
    import cv2

    v = np.clip(np.sqrt(var) / max(np.sqrt(scale), 1e-6), 0, 1)
    cmap = cv2.applyColorMap((v * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)[:, :, ::-1]
    return (0.35 * under + 0.65 * cmap).astype(np.uint8)


def write_diagnostics(root: Path, frames: np.ndarray, lm: np.ndarray, has_face: np.ndarray, canon_idx: int,
                      box: list[int], depth: np.ndarray, head: np.ndarray, face: np.ndarray,
                      before: np.ndarray, after: np.ndarray) -> dict[str, float]:
    """Write diagnostics/*.png; return the motion figures for the manifest.

    before/after: per-pixel temporal variance as decoded and warped to canonical.
    """
    import cv2

    out = ProjectFolder(root).diagnostics
    out.mkdir(exist_ok=True)
    tracked = np.flatnonzero(has_face)
    picks = tracked[np.linspace(0, len(tracked) - 1, 4).astype(int)]
    tiles = [_label(landmark_overlay(np.asarray(frames[i]), lm[i]), f"frame {i}") for i in picks]
    _save_png(out / "landmarks.png", np.concatenate(tiles, axis=1))

    canon = np.asarray(frames[canon_idx]).copy()
    x0, y0, w, h = box
    cv2.rectangle(canon, (x0, y0), (x0 + w - 1, y0 + h - 1), (80, 255, 120), 1 + canon.shape[0] // 256)
    contour = cv2.findContours((head > 0.5).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0]
    cv2.drawContours(canon, contour, -1, (255, 200, 60), 1, cv2.LINE_AA)
    d = depth.copy()
    dv = (d - d.min()) / max(np.ptp(d), 1e-6)
    depth_rgb = cv2.applyColorMap(((1 - dv) * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)[:, :, ::-1]
    _save_png(out / "canonical.png", np.concatenate(
        [_label(canon, f"canonical frame {canon_idx}"), _label(depth_rgb, "depth (bright = near)")], axis=1))

    scale = float(np.percentile(before, 99.5))
    under = np.asarray(frames[canon_idx])
    ratio_b = mouth_variance_ratio(before, box, face)
    ratio_a = mouth_variance_ratio(after, box, face)
    img_b = _label(heat(before, scale, under), f"as decoded: mouth/face {ratio_b:.1f}x")
    img_a = _label(heat(after, scale, under), f"canonical: mouth/face {ratio_a:.1f}x")
    _save_png(out / "motion_before.png", img_b)
    _save_png(out / "motion_after.png", img_a)
    _save_png(out / "motion.png", np.concatenate([img_b, img_a], axis=1))
    np.save(out / "motion_variance.npy", np.stack([before, after]))
    return {"mouth_motion_ratio_before": ratio_b, "mouth_motion_ratio_after": ratio_a}


GREEN, AMBER = (80, 230, 120), (235, 170, 60)
PICTURE_MAX_SIDE = 1280


def write_face_choice(root: Path, frames, lm: np.ndarray, seen: np.ndarray, faces: list, choice) -> Path:
    """diagnostics/faces.jpg: the frame where most faces show, each boxed with its number, position and
    sync score, the chosen one in green; the reason underneath. frames: the source frames (JpegPack),
    lm (K, N, P, 3) and seen (K, N) the tracks, faces: face_choice.FoundFace, choice: face_choice.Choice."""
    import cv2

    counts = seen[[f.track for f in faces]].sum(0)
    most = np.flatnonzero(counts == counts.max())
    i = int(most[len(most) // 2])
    img = np.asarray(frames[i]).copy()
    k = min(1.0, PICTURE_MAX_SIDE / max(img.shape[:2]))
    if k < 1:
        img = cv2.resize(img, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
    thick = max(2, img.shape[0] // 240)
    for f in faces:
        box = F.face_box(lm[f.track, i]) if seen[f.track, i] else np.asarray(f.box)
        x0, y0, x1, y1 = (int(round(v * k)) for v in box)
        chosen = f is choice.face
        colour = GREEN if chosen else AMBER
        cv2.rectangle(img, (x0, y0), (x1, y1), colour, thick + (1 if chosen else 0))
        text = f"{f.number} {f.position}" + ("" if f.sync is None else f"  sync {f.sync:.2f}")
        _tag(img, text + ("  CHOSEN" if chosen else ""), (x0, max(y0 - 4, 18)), colour)
    lines = _wrap(f"frame {i}: {choice.reason}", img.shape[1] - 12)
    bar = np.zeros((18 * len(lines) + 8, img.shape[1], 3), np.uint8)
    for j, line in enumerate(lines):
        cv2.putText(bar, line, (6, 18 + 18 * j), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    out = ProjectFolder(root).faces_picture
    with atomic_path(out) as tmp:
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(np.concatenate([img, bar])[:, :, ::-1]),
                               [cv2.IMWRITE_JPEG_QUALITY, 90])
        tmp.write_bytes(buf.tobytes())
    return out


def _tag(img: np.ndarray, text: str, at: tuple[int, int], colour: tuple[int, int, int]) -> None:
    import cv2

    (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
    x, y = min(max(at[0], 0), max(img.shape[1] - w - 6, 0)), at[1]
    cv2.rectangle(img, (x, y - h - 6), (x + w + 6, y + 2), colour, -1)
    cv2.putText(img, text, (x + 3, y - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)


def _wrap(text: str, width: int) -> list[str]:
    """Lines of `text` that fit `width` pixels in the caption font."""
    import cv2

    lines, line = [], ""
    for word in text.split():
        wider = f"{line} {word}".strip()
        if line and cv2.getTextSize(wider, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)[0][0] > width:
            lines.append(line)
            wider = word
        line = wider
    return lines + [line]
