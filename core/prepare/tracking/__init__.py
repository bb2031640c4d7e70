"""Face trackers behind one small interface: frames in, every face's landmarks and a confidence out.

A backend has `name`, `points` (478 for the Face Mesh layout of core/prepare/faces.py, 68 for FAN),
`faces(rgb) -> list[Face]` and `close()`. `faces.FaceTracker` follows one face through a clip
on top of a backend; `prepare` and `eval` choose the backend by name (`--tracker NAME`,
recorded in project.json).

- facemesh (default): MediaPipe's Face Mesh models (attention variant, 478 points) run by
  onnxruntime from files shipped in resources/models; no mediapipe, no download.
- mediapipe: the same models through the mediapipe 0.10.x package, for those who have it.
- fan: face-alignment's FAN (68 points), which the paper uses for the lip box and LMD.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ...errors import UserError

DEFAULT = "facemesh"
NAMES = ("facemesh", "mediapipe", "fan")


class TrackerError(UserError):
    """A tracker that does not exist, is not installed, or cannot load its model."""


@dataclass
class Face:
    landmarks: np.ndarray      # (P, 3) float32 pixels of the image given: x, y, z (z scaled as x)
    score: float               # presence confidence in 0..1


class Backend(Protocol):
    name: str
    points: int

    def faces(self, rgb: np.ndarray) -> list[Face]: ...

    def close(self) -> None: ...


def check_name(name: str) -> str:
    """The tracker name, or a TrackerError that lists the names there are."""
    if name not in NAMES:
        raise TrackerError(f"unknown tracker {name!r}; choose one of {', '.join(NAMES)} "
                           f"({DEFAULT} is the default and needs nothing extra).")
    return name


LABELS = {"facemesh": "Face Mesh (built in)", "mediapipe": "Face Mesh through mediapipe",
          "fan": "FAN lip points (face-alignment, as in the paper)"}


def availability() -> dict[str, str | None]:
    """Each tracker name -> None when it can run here, else one line saying why not (cheap: nothing
    is loaded; the app greys those out)."""
    import importlib.util

    out: dict[str, str | None] = {"facemesh": None}
    out["mediapipe"] = None if importlib.util.find_spec("mediapipe") else \
        'needs the mediapipe package: pip install "speech2lip-studio[mediapipe]" (Python <= 3.12)'
    try:
        from .fan import check_ready

        check_ready()
        out["fan"] = None
    except TrackerError as e:
        out["fan"] = str(e)
    return out


def dense_backend(name: str) -> str:
    """The 478-point backend behind a tracker name: fan's 68 points cannot fit a head pose, so a
    fan project's geometry comes from facemesh and FAN adds its lip points (core/prepare/tracking/fan.py)."""
    return DEFAULT if check_name(name) == "fan" else name


def open_backend(name: str = DEFAULT, max_faces: int = 1, static: bool = False) -> Backend:
    """A dense (478-point) backend by name. static: every image is a new picture (no tracking)."""
    if dense_backend(name) == "mediapipe":
        from .mediapipe_mesh import MediaPipeBackend

        return MediaPipeBackend(max_faces=max_faces, static=static)
    from .facemesh import FaceMeshBackend

    return FaceMeshBackend(max_faces=max_faces, static=static)


def preflight(name: str) -> None:
    """Load what a tracker needs before a job starts, so a missing package or model fails in one
    line before any work (and before any folder is made)."""
    open_backend(name, static=True).close()
    if name == "fan":
        from .fan import check_ready

        check_ready()
