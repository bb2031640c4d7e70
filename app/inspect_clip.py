"""A quick look at a clip before preparing it: facts, first frame, face box, face coverage.

Qt-free; runs as a job on the light worker queue. It samples a few dozen frames
spread over the clip (decoding at a low frame rate) and tracks each one, so
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


@dataclass
class ClipReport:
    path: Path
    info: media.VideoInfo
    first_frame: np.ndarray                     # (H, W, 3) uint8
    face_box: Optional[tuple[int, int, int, int]]  # x0, y0, x1, y1 on the first face found
    face_frame: np.ndarray                      # the frame the box belongs to
    coverage: float                             # share of sampled frames with a face
    samples: int
    warnings: list[str] = field(default_factory=list)


def inspect_clip(path: Path | str, progress: ProgressFn = no_progress,
                 cancel: Optional[CancelToken] = None) -> ClipReport:
    from speech2lip.core.faces import FaceTracker, face_box
    from speech2lip.core.prepare import MIN_SECONDS

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
    found, box, box_frame = 0, None, frames[0]
    with FaceTracker(static=True) as tracker:
        for i, f in enumerate(frames):
            cancel.raise_if_cancelled()
            lm, _ = tracker.process(f)
            if lm is not None:
                found += 1
                if box is None:
                    x0, y0, x1, y1 = face_box(lm)
                    box, box_frame = (int(x0), int(y0), int(x1), int(y1)), f
            progress(Progress("faces", i + 1, len(frames), "looking for the face"))
    coverage = found / len(frames)
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
    return ClipReport(path, info, frames[0], box, box_frame, coverage, len(frames), warnings)
