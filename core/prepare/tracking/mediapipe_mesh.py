"""The same Face Mesh models through the mediapipe package (0.10.x, whose wheels ship them).

Optional: `pip install "speech2lip-studio[mediapipe]"` on Python <= 3.12 with numpy < 2.
The default backend (facemesh.py) gives the same landmarks without it.
"""
from __future__ import annotations

import contextlib
import os
import threading

import numpy as np

from . import Face, TrackerError

_IMPORT_LOCK = threading.Lock()
_ENTRY = 17        # bytes of one serialised landmark: x, y, z as tagged float32s in a length-prefixed entry


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


def _mediapipe():
    """mediapipe, imported without loading its drawing helpers until something uses them.

    Its package __init__ imports them, and they import matplotlib.pyplot: half a second
    of a short clip's prepare, for pictures this program never draws with them. Each is
    registered as a deferred module that imports the real one on first attribute access.
    """
    import sys

    with _IMPORT_LOCK:               # trackers start in several threads at once
        try:
            if "mediapipe" not in sys.modules:
                _defer_drawing_modules()
            import mediapipe
        except ImportError:
            raise TrackerError('the mediapipe tracker needs mediapipe 0.10.x (Python <= 3.12): '
                               'pip install "speech2lip-studio[mediapipe]", or use --tracker facemesh.') from None
    return mediapipe


def _defer_drawing_modules() -> None:
    import importlib
    import sys
    import types

    for name in ("drawing_utils", "drawing_styles"):
        full = f"mediapipe.python.solutions.{name}"
        deferred = types.ModuleType(full)

        def load(attr: str, full: str = full, deferred: types.ModuleType = deferred):
            if sys.modules.get(full) is deferred:
                del sys.modules[full]
            return getattr(importlib.import_module(full), attr)

        deferred.__getattr__ = load
        sys.modules.setdefault(full, deferred)
    import mediapipe

    for name in ("drawing_utils", "drawing_styles"):
        if not hasattr(mediapipe.solutions, name):
            setattr(mediapipe.solutions, name, sys.modules[f"mediapipe.python.solutions.{name}"])


def _landmarks(face) -> np.ndarray:
    """(N, 3) normalised x, y, z of a NormalizedLandmarkList.

    Read from its wire format: a Python loop over the protobuf objects costs ten times
    more, a noticeable share of tracking. Anything unexpected (another field set) takes
    the loop.
    """
    raw = np.frombuffer(face.SerializeToString(), np.uint8)
    n = len(raw) // _ENTRY
    if n * _ENTRY == len(raw) and n > 0:
        rows = raw.reshape(n, _ENTRY)
        if (rows[:, :3] == (0x0A, 0x0F, 0x0D)).all() and (rows[:, 7] == 0x15).all() and (rows[:, 12] == 0x1D).all():
            return rows[:, [3, 4, 5, 6, 8, 9, 10, 11, 13, 14, 15, 16]].copy().view("<f4").astype(np.float32)
    return np.array([(p.x, p.y, p.z) for p in face.landmark], np.float32)


class MediaPipeBackend:
    name = "mediapipe"
    points = 478

    def __init__(self, max_faces: int = 1, static: bool = False) -> None:
        mp = _mediapipe()
        with _quiet_native_logs():
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=static, max_num_faces=max_faces, refine_landmarks=True,
                min_detection_confidence=0.5, min_tracking_confidence=0.5)
            self._det = None

    def faces(self, rgb: np.ndarray) -> list[Face]:
        h, w = rgb.shape[:2]
        res = self._mesh.process(np.ascontiguousarray(rgb))
        scale = np.array([w, h, w], np.float32)
        return [Face(_landmarks(f) * scale, 1.0) for f in (res.multi_face_landmarks or [])]

    def detect(self, rgb: np.ndarray) -> list:
        """Detections of the full-range detector, for counting faces."""
        if self._det is None:
            with _quiet_native_logs():
                self._det = _mediapipe().solutions.face_detection.FaceDetection(
                    model_selection=1, min_detection_confidence=0.5)
        return list(self._det.process(np.ascontiguousarray(rgb)).detections or [])

    def close(self) -> None:
        self._mesh.close()
        if self._det is not None:
            self._det.close()
