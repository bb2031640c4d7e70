"""MediaPipe Face Mesh with attention (478 points), run by onnxruntime from shipped ONNX files.

The models are MediaPipe's own (Apache-2.0), converted by tools/convert_facemesh.py; see
resources/models/README.md. The pipeline around them follows the legacy FaceMesh solution
that prepare used before, so landmarks agree with it (figures in docs/tracking.md):

1. a short-range face detector (128x128, letterboxed) gives boxes and six keypoints; when it
   finds nothing, the full-range one (192x192) looks for small faces;
2. each face's region: the box, turned so the eyes are level, 1.5x, square;
3. the landmark model sees that region at 192x192 and gives 468 points, a presence flag and
   a feature map; lips, eyes and irises are refined from 16x16 crops of that map;
4. the next frame's region comes from this frame's landmarks, so the detector only runs
   when a face is lost (or on every image in static mode).
"""
from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import Face, TrackerError

DETECT_SIZE = 128
FAR_SIZE = 192              # the full-range detector's input: faces down to a few percent of the frame
MESH_SIZE = 192
MIN_DETECTION = 0.5         # detector score (MediaPipe's min_detection_confidence)
MIN_FAR = 0.6               # MediaPipe's own threshold for the full-range model
MIN_BOX_PX = 24             # smaller "faces" are the full-range model's false finds in noise, and unusable
MIN_PRESENCE = 0.5          # landmark model's face flag (min_tracking_confidence)
NMS_IOU = 0.3
ROI_SCALE = 1.5
EYES_DET = (0, 1)           # detector keypoints: right eye, left eye (image left to right)
EYES_MESH = (33, 263)       # mesh points that level the next region


def models_dir() -> Path:
    from importlib.resources import files

    return Path(str(files("speech2lip.resources") / "models"))


def _session(path: Path):
    try:
        import onnxruntime as ort
    except ImportError:
        raise TrackerError('onnxruntime is not installed; reinstall with `pip install -e .` '
                           '(it comes with speech2lip-studio).') from None
    if not path.is_file():
        raise TrackerError(f"the face model {path} is missing; reinstall speech2lip-studio "
                           "(resources/models/README.md says how the models are built).")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1           # prepare runs one tracker per core
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:                  # a truncated or foreign file
        raise TrackerError(f"cannot load the face model {path.name} ({type(e).__name__}); "
                           "reinstall speech2lip-studio.") from None


@lru_cache(maxsize=1)
def _meta() -> dict:
    path = models_dir() / "facemesh.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        raise TrackerError(f"{path} is missing or unreadable; reinstall speech2lip-studio.") from None


@lru_cache(maxsize=2)
def _anchors(far: bool = False) -> np.ndarray:
    """Anchor centres: short range (896): 16x16 cells x 2, then 8x8 cells x 6; full range (2304): 48x48 x 1."""
    out = []
    for grid, per_cell in (((48, 1),) if far else ((16, 2), (8, 6))):
        c = (np.arange(grid, dtype=np.float32) + 0.5) / grid
        yy, xx = np.meshgrid(c, c, indexing="ij")
        cells = np.stack([xx.ravel(), yy.ravel()], 1)
        out.append(np.repeat(cells, per_cell, axis=0))
    return np.concatenate(out)


# -- regions -------------------------------------------------------------------------------

def _region(box: np.ndarray, left: np.ndarray, right: np.ndarray) -> tuple[float, float, float, float]:
    """(cx, cy, side, angle) in pixels of an axis box (x0, y0, x1, y1), levelled by two eye points."""
    angle = -math.atan2(-(right[1] - left[1]), right[0] - left[0])
    angle = (angle + math.pi) % (2 * math.pi) - math.pi
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = max(box[2] - box[0], box[3] - box[1]) * ROI_SCALE
    return cx, cy, side, angle


def _crop_matrix(region, size: int) -> np.ndarray:
    """2x3 affine taking image pixels to a size x size crop of the region (corners to corners)."""
    import cv2

    cx, cy, side, angle = region
    src = cv2.boxPoints(((cx, cy), (side, side), math.degrees(angle)))     # bl, tl, tr, br
    dst = np.float32([[0, size], [0, 0], [size, 0], [size, size]])
    return cv2.getAffineTransform(src[:3].astype(np.float32), dst[:3])


def _crop(rgb: np.ndarray, region, size: int) -> np.ndarray:
    import cv2

    return cv2.warpAffine(rgb, _crop_matrix(region, size), (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def _to_image(pts: np.ndarray, region, size: int) -> np.ndarray:
    """(P, 2 or 3) crop pixels -> image pixels; z scales like x."""
    cx, cy, side, angle = region
    u = pts[:, 0] / size - 0.5
    v = pts[:, 1] / size - 0.5
    c, s = math.cos(angle), math.sin(angle)
    out = np.empty((len(pts), 3), np.float32)
    out[:, 0] = (c * u - s * v) * side + cx
    out[:, 1] = (s * u + c * v) * side + cy
    out[:, 2] = pts[:, 2] / size * side if pts.shape[1] > 2 else 0.0
    return out


# -- the attention heads' crops (MediaPipe's custom ops, in numpy) -------------------------

def _focus_matrix(lm: np.ndarray, spec: dict) -> np.ndarray:
    """3x3 matrix from a head's 16x16 patch to feature-map pixels, framing spec's landmarks."""
    left, right = lm[spec["left_rotation_idx"], :2], lm[spec["right_rotation_idx"], :2]
    r = spec["target_rotation_radians"] - math.atan2(right[1] - left[1], right[0] - left[0])
    c, s = math.cos(r), math.sin(r)
    pts = lm[spec["subset_idxs"], :2]
    rot = pts @ np.array([[c, s], [-s, c]], np.float32)                # rotate by r
    lo, hi = rot.min(0), rot.max(0)
    mid = (lo + hi) / 2
    centre = np.array([c * mid[0] + s * mid[1], -s * mid[0] + c * mid[1]])   # back by -r
    w, h = spec["output_width"], spec["output_height"]
    sx, sy = spec["scale_x"] * (hi[0] - lo[0]) / w, spec["scale_y"] * (hi[1] - lo[1]) / h
    shift = np.array([[1, 0, centre[0]], [0, 1, centre[1]], [0, 0, 1]])
    turn = np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]])                 # rotation by -r
    scale = np.diag([sx, sy, 1.0])
    shift2 = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1]])
    return shift @ turn @ scale @ shift2


def _sample(feature: np.ndarray, m: np.ndarray, w: int, h: int) -> np.ndarray:
    """(C, h, w) bilinear samples of feature (C, H, W) at m @ (x + 0.5, y + 0.5) - 0.5; zero outside."""
    C, H, W = feature.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    tx = m[0, 0] * xs + m[0, 1] * ys + m[0, 2] - 0.5
    ty = m[1, 0] * xs + m[1, 1] * ys + m[1, 2] - 0.5
    inside = (tx >= 0) & (tx <= W - 1) & (ty >= 0) & (ty <= H - 1)
    x0, y0 = np.floor(tx).astype(int), np.floor(ty).astype(int)
    fx, fy = (tx - x0).astype(np.float32), (ty - y0).astype(np.float32)
    pad = np.zeros((C, H + 1, W + 1), np.float32)                      # reads at x0 + 1 = W are zero
    pad[:, :H, :W] = feature
    x0c, y0c = np.clip(x0, 0, W - 1), np.clip(y0, 0, H - 1)
    q11, q21 = pad[:, y0c, x0c], pad[:, y0c, x0c + 1]
    q12, q22 = pad[:, y0c + 1, x0c], pad[:, y0c + 1, x0c + 1]
    out = (1 - fy) * ((1 - fx) * q11 + fx * q21) + fy * ((1 - fx) * q12 + fx * q22)
    return np.where(inside, out, 0.0).astype(np.float32)


class FaceMeshBackend:
    """The default tracker: 478 points per face; follows up to max_faces faces between frames."""

    name = "facemesh"
    points = 478

    def __init__(self, max_faces: int = 1, static: bool = False) -> None:
        d = models_dir()
        self.meta = _meta()
        self._det = _session(d / "facemesh_detector.onnx")
        self._far = None                    # loaded on first need: most clips never use it
        self._mesh = _session(d / "facemesh_landmarks.onnx")
        self._refine = _session(d / "facemesh_refine.onnx")
        self._refine_inputs = [i.name for i in self._refine.get_inputs()]     # lips, left eye, right eye
        self.max_faces, self.static = max_faces, static
        self._regions: list[tuple] = []
        m = self.meta
        self._lips, self._left_eye, self._right_eye = (np.array(c["subset_idxs"]) for c in m["crops"])
        self._matrix_scale = np.array(m["matrix_scale"], np.float64).reshape(4, 4)[[0, 1, 3]][:, [0, 1, 3]]

    def close(self) -> None:
        self._det = self._far = self._mesh = self._refine = None

    # The detector ------------------------------------------------------------------------
    def detect(self, rgb: np.ndarray) -> list[tuple[float, np.ndarray, np.ndarray]]:
        """(score, box x0 y0 x1 y1, keypoints (6, 2)) in image pixels, best first.

        The short-range detector first (faces that fill a good part of the frame, as in a talking
        head); when it finds none, the full-range one, which finds faces a few percent of the
        frame wide. Either way the landmark model then sees the face's own region at 192x192.
        """
        return self._detect(rgb, far=False) or self._detect(rgb, far=True)

    def _detect(self, rgb: np.ndarray, far: bool) -> list[tuple[float, np.ndarray, np.ndarray]]:
        import cv2

        if far and self._far is None:
            self._far = _session(models_dir() / "facemesh_detector_far.onnx")
        size, session, floor = (FAR_SIZE, self._far, MIN_FAR) if far else (DETECT_SIZE, self._det, MIN_DETECTION)
        h, w = rgb.shape[:2]
        side = max(h, w)
        square = (w / 2, h / 2, side, 0.0)                  # the image letterboxed into a square
        img = cv2.warpAffine(rgb, _crop_matrix(square, size), (size, size),
                             flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        x = (img.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None]
        reg, cls = session.run(None, {session.get_inputs()[0].name: x})
        scores = 1 / (1 + np.exp(-np.clip(cls[0, :, 0].astype(np.float64), -100, 100)))
        keep = np.nonzero(scores >= floor)[0]
        if not len(keep):
            return []
        a = _anchors(far)[keep]
        r = reg[0, keep] / size                             # x, y, w, h, then 6 keypoints x, y
        centre = a + r[:, :2]
        boxes = np.concatenate([centre - r[:, 2:4] / 2, centre + r[:, 2:4] / 2], 1)
        kps = a[:, None, :] + r[:, 4:16].reshape(-1, 6, 2)
        off = np.array([w / 2 - side / 2, h / 2 - side / 2], np.float32)
        found = _weighted_nms(scores[keep], boxes * side + np.tile(off, 2), kps * side + off)
        return [d for d in found if d[1][2] - d[1][0] >= MIN_BOX_PX]

    # The landmark model ------------------------------------------------------------------
    def landmarks(self, rgb: np.ndarray, region) -> tuple[np.ndarray, float]:
        """(478, 3) image-pixel landmarks of the face in region, and its presence score."""
        crop = _crop(rgb, region, MESH_SIZE).astype(np.float32) / 255.0
        mesh, flag, feature = self._mesh.run(None, {"input_1": crop.transpose(2, 0, 1)[None]})
        score = float(1 / (1 + math.exp(-float(np.clip(flag.reshape(-1)[0], -100, 100)))))
        lm = mesh.reshape(468, 3).astype(np.float64)                        # crop pixels of 192
        fm = lm * self.meta["landmark_scale"]                               # feature-map pixels of 48
        mats = [_focus_matrix(fm, spec) for spec in self.meta["crops"]]
        feeds = {name: _sample(feature[0], m, spec["output_width"], spec["output_height"])[None]
                 for name, m, spec in zip(self._refine_inputs, mats, self.meta["crops"])}
        heads = dict(zip(self.meta["heads"], self._refine.run(self.meta["heads"], feeds)))
        out = np.zeros((478, 3), np.float64)
        out[:468] = lm

        def place(head: str, m: np.ndarray) -> np.ndarray:
            """A head's points (K, 2) from its 16x16 patch back to crop pixels of 192."""
            xy = heads[head].reshape(-1, 2).astype(np.float64)
            mm = m * self._matrix_scale
            return xy @ mm[:2, :2].T + mm[:2, 2]

        out[self._lips, :2] = place("conv_lips", mats[0])
        out[self._left_eye, :2] = place("conv_left_eye", mats[1])
        out[self._right_eye, :2] = place("conv_right_eye", mats[2])
        out[468:473, :2] = place("conv_left_iris", mats[1])
        out[473:478, :2] = place("conv_right_iris", mats[2])
        out[468:473, 2] = lm[self._left_eye[:16], 2].mean()
        out[473:478, 2] = lm[self._right_eye[:16], 2].mean()
        return _to_image(out, region, MESH_SIZE), score

    # Tracking ----------------------------------------------------------------------------
    def faces(self, rgb: np.ndarray) -> list[Face]:
        regions = [] if self.static else list(self._regions)
        if len(regions) < self.max_faces:
            for score, box, kps in self.detect(rgb):
                reg = _region(box, kps[EYES_DET[0]], kps[EYES_DET[1]])
                if all(_overlap(reg, r) < 0.5 for r in regions):
                    regions.append(reg)
                if len(regions) >= self.max_faces:
                    break
        found, self._regions = [], []
        for reg in regions[: self.max_faces]:
            lm, score = self.landmarks(rgb, reg)
            if score < MIN_PRESENCE:
                continue
            found.append(Face(lm.astype(np.float32), score))
            box = np.concatenate([lm[:, :2].min(0), lm[:, :2].max(0)])
            self._regions.append(_region(box, lm[EYES_MESH[0]], lm[EYES_MESH[1]]))
        return found


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of one box (4,) with boxes (N, 4)."""
    x0, y0 = np.maximum(a[0], b[:, 0]), np.maximum(a[1], b[:, 1])
    x1, y1 = np.minimum(a[2], b[:, 2]), np.minimum(a[3], b[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda z: (z[..., 2] - z[..., 0]) * (z[..., 3] - z[..., 1])
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def _weighted_nms(scores: np.ndarray, boxes: np.ndarray, kps: np.ndarray) -> list:
    """MediaPipe's weighted non-maximum suppression: overlapping boxes are averaged by score."""
    order = list(np.argsort(-scores))
    out = []
    while order:
        top = order[0]
        ious = _iou(boxes[top], boxes[order])
        group = [order[i] for i in np.nonzero(ious > NMS_IOU)[0]]
        wts = scores[group][:, None]
        out.append((float(scores[top]), (boxes[group] * wts).sum(0) / wts.sum(),
                    (kps[group] * wts[:, :, None]).sum(0) / wts.sum()))
        order = [i for i in order if i not in group]
    return out


def _overlap(a, b) -> float:
    """IoU of two regions' axis boxes (rotation ignored): for telling a new face from a followed one."""
    def box(r):
        return np.array([r[0] - r[2] / 2, r[1] - r[2] / 2, r[0] + r[2] / 2, r[1] + r[2] / 2])
    return float(_iou(box(a), box(b)[None])[0])
