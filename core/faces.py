"""Face tracking with MediaPipe Face Mesh (478 3D landmarks, model shipped in the wheel).

Landmarks come back in pixels of the image they were tracked on: (x*W, y*H, z*W).
A frame with no face gives NaN landmarks and has_face False; it is never fatal here.
With several faces the largest is taken and then followed by continuity.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterable, Optional

import numpy as np

N_LANDMARKS = 478
# Rigid points (forehead, nose bridge, cheekbones, temples): no lips, jaw or eyes.
RIGID = [4, 6, 10, 33, 54, 67, 117, 119, 121, 127, 129, 132, 133, 136, 143, 147, 198, 205, 263, 284,
         297, 346, 348, 350, 356, 358, 361, 362, 365, 372, 376, 420, 425]
LIPS_OUTER = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185]
LIPS_INNER = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191]
LIPS = LIPS_OUTER + LIPS_INNER
FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
             148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109]
JAW = [152, 148, 176, 149, 150, 377, 400, 378, 379, 365, 136, 172, 397, 288, 58]
EYE_OUTER = (33, 263)        # right, left outer corners: inter-ocular distance
EYE_LIDS = ((159, 145), (386, 374))
EYE_CORNERS = (33, 133, 362, 263)
NOSE_TIP = 1
NOSE_BOTTOM = 2
CHIN = 152
INNER_LIP_GAP = (13, 14)


@contextlib.contextmanager
def _quiet_native_logs():
    """MediaPipe's C++ side prints to fd 2 on start-up; keep the user's terminal clean."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def inter_ocular(lm: np.ndarray) -> np.ndarray:
    """(...,) distance between the outer eye corners."""
    return np.linalg.norm(lm[..., EYE_OUTER[0], :2] - lm[..., EYE_OUTER[1], :2], axis=-1)


def mouth_opening(lm: np.ndarray) -> np.ndarray:
    """(...,) inner-lip gap over inter-ocular distance."""
    gap = np.linalg.norm(lm[..., INNER_LIP_GAP[0], :2] - lm[..., INNER_LIP_GAP[1], :2], axis=-1)
    return gap / np.maximum(inter_ocular(lm), 1e-6)


def eye_opening(lm: np.ndarray) -> np.ndarray:
    """(...,) mean eyelid gap over inter-ocular distance."""
    g = [np.linalg.norm(lm[..., a, :2] - lm[..., b, :2], axis=-1) for a, b in EYE_LIDS]
    return (g[0] + g[1]) / 2 / np.maximum(inter_ocular(lm), 1e-6)


def face_box(lm: np.ndarray) -> np.ndarray:
    """(..., 4) x0, y0, x1, y1 of the landmarks."""
    return np.concatenate([lm[..., :2].min(axis=-2), lm[..., :2].max(axis=-2)], axis=-1)


class FaceTracker:
    """Follows one face through a sequence of RGB frames.

    max_faces > 1 looks for several faces and keeps the largest at the start,
    then the one nearest the previous position.
    """

    def __init__(self, max_faces: int = 1, static: bool = False) -> None:
        import mediapipe as mp

        with _quiet_native_logs():
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=static, max_num_faces=max_faces, refine_landmarks=True,
                min_detection_confidence=0.5, min_tracking_confidence=0.5)
        self._prev_centre: Optional[np.ndarray] = None

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> "FaceTracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def process(self, rgb: np.ndarray) -> tuple[Optional[np.ndarray], int]:
        """(478, 3) pixel landmarks of the followed face or None, and how many faces were seen."""
        h, w = rgb.shape[:2]
        res = self._mesh.process(np.ascontiguousarray(rgb))
        faces = res.multi_face_landmarks or []
        if not faces:
            return None, 0
        cands = [np.array([(p.x * w, p.y * h, p.z * w) for p in f.landmark], np.float32) for f in faces]
        if len(cands) == 1:
            pick = cands[0]
        elif self._prev_centre is None:
            areas = [np.prod(face_box(c)[2:] - face_box(c)[:2]) for c in cands]
            pick = cands[int(np.argmax(areas))]
        else:
            d = [np.linalg.norm(c[:, :2].mean(0) - self._prev_centre) for c in cands]
            pick = cands[int(np.argmin(d))]
        self._prev_centre = pick[:, :2].mean(0)
        return pick, len(cands)

    def track(self, frames: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Landmarks (N, 478, 3), NaN where no face, and has_face (N,)."""
        out, seen = [], []
        for f in frames:
            lm, _ = self.process(f)
            seen.append(lm is not None)
            out.append(lm if lm is not None else np.full((N_LANDMARKS, 3), np.nan, np.float32))
        if not out:
            return np.zeros((0, N_LANDMARKS, 3), np.float32), np.zeros(0, bool)
        return np.stack(out), np.array(seen)


class FaceCounter:
    """How many faces a detection sees, for spotting clips with several people. Reuse one instance."""

    def __init__(self) -> None:
        import mediapipe as mp

        with _quiet_native_logs():
            self._det = mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)

    def __call__(self, rgb: np.ndarray) -> int:
        return len(self._det.process(np.ascontiguousarray(rgb)).detections or [])

    def close(self) -> None:
        self._det.close()


def smooth_tracks(lm: np.ndarray, has_face: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Gaussian smoothing over time within each run of consecutive tracked frames."""
    from scipy.ndimage import gaussian_filter1d

    out = lm.copy()
    n = len(has_face)
    i = 0
    while i < n:
        if not has_face[i]:
            i += 1
            continue
        j = i
        while j < n and has_face[j]:
            j += 1
        if j - i >= 3:
            out[i:j] = gaussian_filter1d(lm[i:j], sigma, axis=0, mode="nearest")
        i = j
    return out
