"""A quick look at a clip before preparing it: facts, first frame, face box, face coverage, and a
thumbnail of each face when there are several, numbered as prepare numbers them (core/prepare/face_choice.py).

Qt-free; runs as a job on the light worker queue. It samples a few dozen frames
spread over the clip (decoding at a low frame rate) and looks for every face on each, so
even a long clip is judged in a second or two.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from speech2lip.core import media
from speech2lip.core.errors import MediaError
from speech2lip.core.jobs import CancelToken, Progress, ProgressFn, ensure_token, no_progress

SAMPLES = 24
SHORT_CLIP_S = 20.0          # below this, quality suffers (docs/architecture.md: 20 s to a few minutes)
LOW_COVERAGE = 0.8
THUMB = 96                   # thumbnail side, pixels
THUMB_MARGIN = 0.25          # of the face's size, around its box


@dataclass
class FaceThumb:
    """One face of the clip, as prepare's `face=number` names it."""

    number: int                                 # 1.., left to right
    position: str                               # "left", "right", ...
    share: float                                # of the sampled frames
    box: Optional[tuple[int, int, int, int]]    # x0, y0, x1, y1 on ClipReport.face_frame (None: not on it)
    thumbnail: np.ndarray                       # (THUMB, THUMB, 3) uint8


@dataclass
class ClipReport:
    path: Path
    info: media.VideoInfo
    first_frame: np.ndarray                     # (H, W, 3) uint8
    face_box: Optional[tuple[int, int, int, int]]  # x0, y0, x1, y1 of the largest face on face_frame
    face_frame: np.ndarray                      # the sampled frame with the most faces (the first such)
    coverage: float                             # share of sampled frames with a face
    samples: int
    warnings: list[str] = field(default_factory=list)
    faces: list[FaceThumb] = field(default_factory=list)    # every face found, numbered as prepare does


def inspect_clip(path: Path | str, progress: ProgressFn = no_progress,
                 cancel: Optional[CancelToken] = None) -> ClipReport:
    from speech2lip.core.prepare import face_choice as FC
    from speech2lip.core.prepare.faces import FaceTracks
    from speech2lip.core.prepare.job import MIN_SECONDS

    path = Path(path)
    cancel = ensure_token(cancel)
    progress(Progress("probe", 0, 1, f"reading {path.name}"))
    info = media.probe(path)
    if not info.has_video:
        raise MediaError(f"{path.name} has no video stream; choose a video of the speaker.")
    rate = min(info.fps, max(0.2, SAMPLES / max(info.duration, 1e-3)))
    frames: list[np.ndarray] = []
    for f in media.read_frames(path, fps=rate):
        frames.append(f)
        cancel.raise_if_cancelled()
        if len(frames) >= SAMPLES:
            break
    if not frames:
        raise MediaError(f"{path.name} has no decodable frames; it may be truncated. Export it again.")
    got: list[dict[int, np.ndarray]] = []
    with FaceTracks(max_faces=FC.MAX_FACES, static=True) as tracker:
        for i, f in enumerate(frames):
            cancel.raise_if_cancelled()
            got.append(tracker.process(f))
            progress(Progress("faces", i + 1, len(frames), "looking for the faces"))
        lm = np.full((tracker.n_tracks, len(frames), 478, 3), np.nan, np.float32)
    seen = np.zeros(lm.shape[:2], bool)
    for i, per in enumerate(got):
        for t, pts in per.items():
            lm[t, i], seen[t, i] = pts, True
    found = int(seen.any(axis=0).sum())
    coverage = found / len(frames)
    faces = FC.found_faces(lm, seen)
    best = int(np.argmax(seen[[f.track for f in faces]].sum(0))) if faces else 0
    box_frame, box, thumbs = frames[best], None, []
    for f in faces:
        at = best if seen[f.track, best] else int(np.flatnonzero(seen[f.track])[0])
        fb = _box(lm[f.track, at])
        thumbs.append(FaceThumb(f.number, f.position, f.share, fb if at == best else None, _thumbnail(frames[at], fb)))
    on_frame = [t.box for t in thumbs if t.box is not None]
    if on_frame:
        box = max(on_frame, key=lambda b: b[2] - b[0])
    warnings = []
    if info.duration < MIN_SECONDS:
        warnings.append(f"The clip is {info.duration:.1f} s long; at least {MIN_SECONDS:.0f} s is needed.")
    elif info.duration < SHORT_CLIP_S:
        warnings.append(f"Short clip ({info.duration:.0f} s): 1 to 3 minutes of speech gives better lips.")
    if found == 0:
        warnings.append("No face found in the sampled frames: use a clip where one speaker faces the camera.")
    elif coverage < LOW_COVERAGE:
        warnings.append(f"A face is visible in only {100 * coverage:.0f}% of the clip; trim it to the "
                        "part where the speaker is on screen.")
    if not info.has_audio:
        warnings.append("No audio track: the sync expert cannot learn this speaker's timing.")
    if len(faces) > 1:
        warnings.append(f"{len(faces)} faces in the clip: choose the one to prepare under Faces "
                        "(Auto takes the one speaking).")
    return ClipReport(path, info, frames[0], box, box_frame, coverage, len(frames), warnings,
                      thumbs if len(thumbs) > 1 else [])


def _box(lm: np.ndarray) -> tuple[int, int, int, int]:
    from speech2lip.core.prepare.faces import face_box

    x0, y0, x1, y1 = face_box(lm)
    return int(x0), int(y0), int(x1), int(y1)


def _thumbnail(frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """A square crop around the face, THUMB pixels a side (edge pixels repeated past the frame)."""
    import cv2

    x0, y0, x1, y1 = box
    side = max(int(max(x1 - x0, y1 - y0) * (1 + 2 * THUMB_MARGIN)), 1)
    left, top = (x0 + x1 - side) // 2, (y0 + y1 - side) // 2
    m = np.float32([[1, 0, -left], [0, 1, -top]])
    crop = cv2.warpAffine(frame, m, (side, side), borderMode=cv2.BORDER_REPLICATE)
    return cv2.resize(crop, (THUMB, THUMB), interpolation=cv2.INTER_AREA)
