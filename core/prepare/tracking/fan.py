"""face-alignment's FAN (68 points) as a tracker backend: the landmarks the paper takes its lip
paste box and LMD from.

The dense geometry (poses, canonical frame, depth) always comes from the 478-point mesh;
with `--tracker fan` prepare also writes FAN's 68 points per frame (`fan_track`), the
canonical mouth box is built from FAN's lips (geometry.mouth_box_68) and eval measures
LMD on FAN's 20 lip points.

FAN's weights are not shipped: face-alignment downloads them on first use into torch's
hub cache (torch.hub.get_dir()/checkpoints, file names from the library's own URLs). This
backend never lets the library download: it checks the cache first and, when a file is
missing, says which, where it goes and how to get it (`python -m speech2lip.core.prepare.tracking.fan`
fetches them on purpose). Nothing is written when it refuses.

The 68-point layout (iBUG 300-W, 0-based): jaw 0-16 (chin 8), brows 17-26, nose 27-35
(bottom 33), right eye 36-41, left eye 42-47 (outer corners 36, 45), outer lips 48-59
(corners 48, 54; midpoints 51 top, 57 bottom), inner lips 60-67 (gap 62, 66).
"""
from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Iterable, Optional
from urllib.parse import urlparse

import numpy as np

from . import Face, TrackerError

N_POINTS = 68
FAN_JAW = list(range(0, 17))
FAN_CHIN = 8
FAN_NOSE_BOTTOM = 33
FAN_EYE_OUTER = (36, 45)            # right, left outer corners: inter-ocular distance
FAN_LIPS_OUTER = list(range(48, 60))
FAN_LIPS_INNER = list(range(60, 68))
FAN_LIPS = FAN_LIPS_OUTER + FAN_LIPS_INNER
FAN_MOUTH_CORNERS = (48, 54)
FAN_LIP_MIDPOINTS = (51, 57)        # outer lip top and bottom
FAN_INNER_LIP_GAP = (62, 66)
# The same anatomical point in MediaPipe's 478 layout (core/prepare/faces.py), where one exists: eye
# corners (faces.EYE_OUTER), mouth corners, outer and inner lip midpoints (faces.INNER_LIP_GAP),
# inner corners, nose bottom (faces.NOSE_BOTTOM) and chin (faces.CHIN).
TO_MEDIAPIPE = {36: 33, 45: 263, 48: 61, 54: 291, 51: 0, 57: 17, 62: 13, 66: 14, 60: 78, 64: 308,
                33: 2, 8: 152}

DETECTORS = ("sfd", "blazeface")
INSTALL = 'pip install "speech2lip-studio[fan]"'
FETCH = "python -m speech2lip.core.prepare.tracking.fan"


def inter_ocular(lm: np.ndarray) -> np.ndarray:
    """(...,) distance between the outer eye corners of (..., 68, 2+) landmarks."""
    return np.linalg.norm(lm[..., FAN_EYE_OUTER[0], :2] - lm[..., FAN_EYE_OUTER[1], :2], axis=-1)


def mouth_opening(lm: np.ndarray) -> np.ndarray:
    """(...,) inner-lip gap over inter-ocular distance: faces.mouth_opening of the 68 layout."""
    gap = np.linalg.norm(lm[..., FAN_INNER_LIP_GAP[0], :2] - lm[..., FAN_INNER_LIP_GAP[1], :2], axis=-1)
    return gap / np.maximum(inter_ocular(lm), 1e-6)


# --- the library and its weights ------------------------------------------------------

def _library():
    try:
        import face_alignment
    except ImportError as e:
        if (e.name or "").split(".")[0] == "face_alignment":
            raise TrackerError(f"--tracker fan needs the face-alignment package; install it with `{INSTALL}`, "
                               "or use --tracker facemesh, which needs nothing extra.") from None
        raise TrackerError(f"face-alignment is installed but cannot import {e.name or e}; reinstall it with "
                           f"`{INSTALL}`, or use --tracker facemesh.") from None
    return face_alignment


def hub_checkpoints() -> Path:
    """Where face-alignment (like torch.hub) caches downloaded weights."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"          # torch.hub's own folder, not the project's


def _fan_url(fa, name: str) -> str:
    """The URL the library loads network `name` ('2DFAN-4') from.

    1.5+ keeps one table; 1.4 keeps one per torch minor version, with a default for the
    others, chosen by the rule repeated here.
    """
    api = fa.api
    entry = api.models_urls.get(name)
    if isinstance(entry, str):
        return entry
    import torch

    v = torch.__version__
    v = v.rsplit(".", 2)[0] if "dev" in v else v.rsplit(".", 1)[0]
    return api.models_urls.get(v, api.default_model_urls)[name]


def _detector_urls(detector: str) -> list[str]:
    """The URLs the detector module loads its weights from (blazeface: the front model only)."""
    import importlib
    import sys

    module = importlib.import_module(f"face_alignment.detection.{detector}")
    urls = sys.modules[module.FaceDetector.__module__].models_urls
    return [u for k, u in urls.items() if detector != "blazeface" or "back" not in k]


def weight_urls(fa, detector: str = "sfd") -> list[str]:
    """Every URL FaceAlignment(TWO_D, face_detector=detector) loads from: FAN, then the detector."""
    return [_fan_url(fa, f"2DFAN-{int(fa.NetworkSize.LARGE)}")] + _detector_urls(detector)


def file_name(url: str) -> str:
    """The cache file name of a URL, as both torch.hub and face_alignment.utils derive it."""
    return os.path.basename(urlparse(url).path)


def missing_weights(fa, detector: str = "sfd") -> list[str]:
    """URLs whose file is not in the cache (an empty file counts as missing)."""
    folder = hub_checkpoints()
    missing = []
    for url in weight_urls(fa, detector):
        path = folder / file_name(url)
        if not path.is_file() or path.stat().st_size == 0:
            missing.append(url)
    return missing


def missing_message(missing: list[str], folder: Path) -> str:
    """The one line a user sees when FAN's weights are not in the cache."""
    names = ", ".join(file_name(u) for u in missing)
    return (f"face-alignment's weights are missing from {folder}: {names}. Fetch them once with a network "
            f"connection (`{FETCH}`), or copy them into that folder from {' and '.join(missing)}; "
            f"--tracker facemesh works offline.")


def _check_detector(detector: str) -> None:
    if detector not in DETECTORS:
        raise TrackerError(f"unknown face detector {detector!r} for --tracker fan; use one of {', '.join(DETECTORS)}.")


def _construct(fa, detector: str, device: str):
    """FaceAlignment with the library's own loading code; its weights are already in the cache."""
    kwargs = {"device": device, "face_detector": detector,
              # One pass per face instead of two (the image and its mirror): half the cost.
              "flip_input": False}
    if "compile" in inspect.signature(fa.FaceAlignment.__init__).parameters:
        # torch.compile needs a C++ compiler on CPU and writes its own cache; eager mode needs neither.
        kwargs["compile"] = False
    return fa.FaceAlignment(fa.LandmarksType.TWO_D, **kwargs)


def _device(name: str) -> str:
    from ...device import pick_device

    return pick_device(name).type


def fetch_weights(detector: str = "sfd") -> list[Path]:
    """Download the missing weights through the library itself (the same URLs and folder);
    the paths of the files. The only place this backend lets anything be downloaded."""
    _check_detector(detector)
    fa = _library()
    folder = hub_checkpoints()
    existed = folder.is_dir()
    if missing_weights(fa, detector):
        try:
            _construct(fa, detector, "cpu")
        except Exception as e:
            # torch.hub downloads into a temporary file, so nothing partial is left; only the folder.
            if not existed and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
            raise TrackerError(f"could not fetch face-alignment's weights ({_first_line(e)}); "
                               f"{missing_message(missing_weights(fa, detector), folder)}") from None
    return [folder / file_name(u) for u in weight_urls(fa, detector)]


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def check_ready(detector: str = "sfd") -> None:
    """The package and its weights are there (TrackerError if not), without loading anything."""
    _check_detector(detector)
    missing = missing_weights(_library(), detector)
    if missing:
        raise TrackerError(missing_message(missing, hub_checkpoints()))


# --- the backend ---------------------------------------------------------------------------

class FanBackend:
    """68 2D landmarks (z = 0) of every face the library's detector finds.

    Raises TrackerError, before anything is loaded or written, when face-alignment is not
    installed or its weights are not in the cache; and when the library fails to load them.
    """

    name = "fan"
    points = N_POINTS

    def __init__(self, device: str = "auto", detector: str = "sfd") -> None:
        _check_detector(detector)
        fa = _library()
        missing = missing_weights(fa, detector)
        if missing:
            raise TrackerError(missing_message(missing, hub_checkpoints()))
        dev = _device(device)
        try:
            self._fa = _construct(fa, detector, dev)
        except Exception as e:
            raise TrackerError(f"face-alignment failed to load its weights from {hub_checkpoints()} "
                               f"({_first_line(e)}); if they are damaged, delete them and run `{FETCH}`.") from e

    def close(self) -> None:
        self._fa = None

    def __enter__(self) -> "FanBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        """(F, 5) face boxes x0, y0, x1, y1, score of one uint8 RGB image."""
        # A copy, as the library's own get_landmarks_from_image passes: detectors may write into it.
        found = [np.asarray(b, np.float32) for b in self._fa.face_detector.detect_from_image(rgb.copy())]
        rows = [np.append(b[:4], b[4] if len(b) > 4 else 1.0) for b in found if len(b) >= 4]
        return np.array(rows, np.float32).reshape(-1, 5)

    def landmarks(self, rgb: np.ndarray, boxes: np.ndarray) -> list[Face]:
        """FAN's 68 points inside each of the given (F, 4+) boxes."""
        if len(boxes) == 0:
            return []
        pts = self._fa.get_landmarks_from_image(rgb, detected_faces=[np.asarray(b, np.float32) for b in boxes])
        out = []
        for p, b in zip(pts or [], boxes):
            lm = np.zeros((N_POINTS, 3), np.float32)
            p = np.asarray(p, np.float32)
            lm[:, :p.shape[1]] = p[:, :3]
            score = float(np.clip(b[4], 0.0, 1.0)) if len(b) > 4 else 1.0
            out.append(Face(landmarks=lm, score=score))
        return out

    def faces(self, rgb: np.ndarray) -> list[Face]:
        return self.landmarks(rgb, self.detect(rgb))

    def track(self, frames: Iterable[np.ndarray], boxes: Optional[np.ndarray] = None, progress=None,
              cancel=None) -> tuple[np.ndarray, np.ndarray]:
        """Landmarks (N, 68, 3) of one face through a frame sequence, NaN where none, and its boxes (N, 5).

        The largest face is taken first, then the one nearest the previous. With `boxes` (N, 5)
        from an earlier track of the same frames (NaN where none) the detector is not run:
        eval measures every method's lips inside the boxes found on the real frames.
        """
        from ...jobs import Progress

        total = len(frames) if hasattr(frames, "__len__") else 0
        lms, found, prev = [], [], None
        for i, rgb in enumerate(frames):
            if cancel is not None:
                cancel.raise_if_cancelled()
            cands = self.detect(rgb) if boxes is None else np.asarray(boxes[i:i + 1], np.float32)
            cands = cands[np.isfinite(cands[:, :4]).all(1)]
            lm, box = np.full((N_POINTS, 3), np.nan, np.float32), np.full(5, np.nan, np.float32)
            if len(cands):
                box = cands[_pick(cands, prev)]
                got = self.landmarks(rgb, box[None])
                if got:
                    lm, prev = got[0].landmarks, (box[:2] + box[2:4]) / 2
            lms.append(lm)
            found.append(box)
            if progress is not None and i % 16 == 15:
                progress(Progress("faces", i + 1, total, "FAN lip landmarks"))
        if not lms:
            return np.zeros((0, N_POINTS, 3), np.float32), np.zeros((0, 5), np.float32)
        return np.stack(lms), np.stack(found)


def _pick(boxes: np.ndarray, prev_centre: Optional[np.ndarray]) -> int:
    """The largest box at the start, then the one nearest the followed face."""
    if len(boxes) == 1:
        return 0
    if prev_centre is None:
        return int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))
    centres = (boxes[:, :2] + boxes[:, 2:4]) / 2
    return int(np.argmin(np.linalg.norm(centres - prev_centre, axis=1)))


def fan_track(frames: Iterable[np.ndarray], progress=None, cancel=None) -> np.ndarray:
    """(N, 68, 3) float32 FAN landmarks of the working crops (uint8 RGB, S x S), NaN where no face.

    Unsmoothed; prepare smooths them in time as it smooths landmarks.npy (faces.smooth_tracks).
    """
    with FanBackend() as fan:
        return fan.track(frames, progress=progress, cancel=cancel)[0]



def fan_mouth_box(originals: Path, crop: list[int], size: int, canon_idx: int, poses: np.ndarray,
                   canon: np.ndarray, video: Path) -> list[int]:
    """The lip paste box from FAN's lips on the canonical frame's working crop."""
    import cv2

    from .. import geometry as G
    from ..framestore import JpegPack
    from ...errors import FaceError

    frame = JpegPack(originals)[canon_idx]
    x0, y0, side, _ = crop
    pad = np.zeros((side, side, 3), np.uint8)             # the crop may reach past the frame's edge
    h, w = frame.shape[:2]
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    pad[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = frame[sy0:sy1, sx0:sx1]
    work = cv2.resize(pad, (size, size), interpolation=cv2.INTER_AREA)
    with FanBackend() as fan:
        lm68 = fan.track([work])[0]
    track = np.full((len(poses), 68, 3), np.nan, np.float32)
    track[canon_idx] = lm68[0]
    try:
        return G.mouth_box_68(G.canonical_68(track, poses, canon_idx, canon), size)
    except ValueError:
        raise FaceError(f"FAN found no face on {video.name}'s canonical frame ({canon_idx}); "
                        "prepare it with --tracker facemesh.") from None


if __name__ == "__main__":
    import sys

    try:
        paths = fetch_weights(sys.argv[1] if len(sys.argv) > 1 else "sfd")
    except TrackerError as err:
        print(err, file=sys.stderr)
        sys.exit(err.exit_code)
    print("face-alignment's weights are in place:", ", ".join(str(p) for p in paths))
