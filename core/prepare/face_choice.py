"""Which face to dub when a clip shows several: number them, score each mouth against the speech, choose.

Faces are numbered from 1, left to right by where each sits over the clip. The app's
thumbnails (app/wizard/inspect_clip.py), diagnostics/faces.jpg and `--face N` use the same numbers.

The speaking face is the one whose lip opening follows the clip's speech: the normalised
cross-correlation of lip motion with the energy change of three speech bands
(metrics.av_offset), at its best lag within +-SYNC_LAG_S (articulation leads sound by 1-5
frames). On 12 s of two real speakers side by side (tests/test_face_choice.py) the speaker
scores 0.35-0.41 and the other face 0.07-0.12 (docs/tracking.md, "Several faces").
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..evaluation import metrics as M
from ..errors import FaceError

SPEAKING, LARGEST, LEFT, RIGHT = "speaking", "largest", "left", "right"
WORDS = (SPEAKING, LARGEST, LEFT, RIGHT)
MAX_FACES = 4           # faces followed at once
MIN_SHARE = 0.1         # a track in fewer frames than this is a passer-by or a false detection
SYNC_LAG_S = 0.25       # lags tried either side, in seconds
CLEAR_SYNC = 0.15       # the speaker's score must reach this ...
CLEAR_MARGIN = 0.08     # ... and beat every other face by this (a silent face scored up to 0.12 on 12 s)


@dataclass
class FoundFace:
    number: int                    # 1.., left to right
    track: int                     # row in the tracker's arrays
    position: str                  # "left", "right", "middle", ...
    share: float                   # of the frames
    width: float                   # median face width, in source pixels
    box: list[float]               # median x0, y0, x1, y1
    sync: Optional[float] = None   # how well the mouth follows the speech (correlation, -1..1)
    lead: Optional[int] = None     # frames the lips lead the sound at that score

    @property
    def name(self) -> str:
        return f"face {self.number} ({self.position})"

    def to_json(self) -> dict:
        out = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items() if k != "track"}
        out["box"] = [round(float(x), 1) for x in self.box]
        return out


@dataclass
class Choice:
    face: FoundFace
    by: str                        # "only", "speaking", "largest" (speech could not tell), "asked"
    reason: str                    # one line for the user
    warning: Optional[str] = None


def parse_face(value: str | int | None) -> str:
    """A --face value as prepare takes it: a word of WORDS or a face number ("2"); one line if not."""
    text = SPEAKING if value is None else str(value).strip().lower()
    if text in WORDS or (text.isdigit() and int(text) >= 1):
        return str(int(text)) if text.isdigit() else text
    raise FaceError(f"--face {value!r} is not a choice: use speaking (the default: the face whose mouth follows "
                    "the speech), largest, left, right, or a face's number (1 is the leftmost).")


def _positions(k: int) -> list[str]:
    if k == 1:
        return ["the only face"]
    if k == 3:
        return [LEFT, "middle", RIGHT]
    ordinal = {2: "second", 3: "third", 4: "fourth"}
    return [LEFT] + [f"{ordinal.get(i, f'{i}th')} from left" for i in range(2, k)] + [RIGHT]


def found_faces(lm: np.ndarray, seen: np.ndarray) -> list[FoundFace]:
    """The faces worth offering, numbered left to right: tracks (K, N, P, 3) seen (K, N) in at least
    MIN_SHARE of the frames (or the best-covered one, so prepare can say how little it saw)."""
    k, n = seen.shape
    share = seen.mean(axis=1) if n else np.zeros(k)
    if not share.any():
        return []
    keep = [t for t in range(k) if share[t] >= MIN_SHARE] or [int(np.argmax(share))]
    rows = []
    for t in keep:
        pts = lm[t, seen[t]][..., :2]                                    # (F, P, 2)
        box = np.median(np.concatenate([pts.min(1), pts.max(1)], axis=1), axis=0)
        rows.append((float((box[0] + box[2]) / 2), t, box))
    rows.sort()
    names = _positions(len(rows))
    return [FoundFace(number=i + 1, track=t, position=names[i], share=float(share[t]),
                      width=float(box[2] - box[0]), box=[float(x) for x in box])
            for i, (_, t, box) in enumerate(rows)]


def score_speech(faces: list[FoundFace], lm: np.ndarray, seen: np.ndarray, wave: np.ndarray,
                 sample_rate: int, fps: float) -> None:
    """Set each face's sync: how well its lip opening follows the speech in `wave`."""
    n = lm.shape[1]
    env = M.speech_envelope(wave, sample_rate, np.arange(n) / fps)
    lag = max(1, int(round(SYNC_LAG_S * fps)))
    for f in faces:
        track = np.where(seen[f.track][:, None, None], lm[f.track], np.nan)   # gaps interpolated by av_offset
        s = M.av_offset(M.lip_opening(track), env, max_lag=lag)
        f.sync, f.lead = float(s.peak), int(s.offset)


def _scores(faces: list[FoundFace], but: Optional[FoundFace] = None) -> str:
    return ", ".join(f"face {f.number}: {f.sync:.2f}" for f in faces if f is not but and f.sync is not None)


def faces_text(faces: list[FoundFace]) -> str:
    """"1 (left, 131 px wide, in 100% of frames), 2 (...)" for error messages."""
    return ", ".join(f"{f.number} ({f.position}, {f.width:.0f} px wide, in {100 * f.share:.0f}% of frames)"
                     for f in faces)


def choose(faces: list[FoundFace], asked: str, picture: str) -> Choice:
    """The face to dub. asked: parse_face's value. picture: where the user can see the numbered faces.
    Scores (score_speech) are used when present; without them "speaking" falls back to the largest."""
    k = len(faces)
    if not k:
        raise ValueError("no faces to choose from")
    largest = max(faces, key=lambda f: f.width)
    scored = [f for f in faces if f.sync is not None]
    best = max(scored, key=lambda f: f.sync) if scored else None
    runner_up = max((f.sync for f in scored if f is not best), default=-1.0)
    clear = best is not None and best.sync >= CLEAR_SYNC and best.sync - runner_up >= CLEAR_MARGIN

    if k == 1 and asked in WORDS + ("1",):
        return Choice(faces[0], "only", "the only face")
    if asked == SPEAKING:
        if clear:
            return Choice(best, SPEAKING, f"{best.name} of {k}: its mouth follows the speech "
                                          f"(sync {best.sync:.2f}; {_scores(faces, best)})")
        why = ("the clip has no speech to compare the mouths with" if best is None else
               f"no mouth clearly follows the speech ({_scores(faces)})")
        return Choice(largest, LARGEST, f"{largest.name} of {k}, the largest: {why}",
                      f"{why}, so the largest face, {largest.name}, was taken; check {picture} and "
                      f"choose another with --face if it is not the speaker")
    if asked.isdigit():
        if int(asked) > k and k == 1:
            raise FaceError(f"--face {asked}, but the clip has only 1 face ({faces[0].width:.0f} px wide, in "
                            f"{100 * faces[0].share:.0f}% of frames); leave --face out.")
        if int(asked) > k:
            numbers = " or ".join([", ".join(map(str, range(1, k))), str(k)])
            raise FaceError(f"--face {asked}, but the clip has {k} faces: {faces_text(faces)}; choose {numbers}, "
                            f"or left, right, largest or speaking.")
        face = faces[int(asked) - 1]
    else:
        face = {LARGEST: largest, LEFT: faces[0], RIGHT: faces[-1]}[asked]
    reason = f"{face.name} of {k}, as chosen ({asked})"
    if face.sync is not None:
        reason += f"; sync {face.sync:.2f} ({_scores(faces, face)})"
    warning = None
    if clear and best is not face and k > 1:
        warning = (f"{face.name} was chosen, but the mouth of {best.name} follows the speech far better "
                   f"(sync {best.sync:.2f} against {face.sync:.2f}); the lips are learnt from the clip's "
                   f"speech, so check that the chosen face is the one speaking")
    return Choice(face, "asked", reason, warning)


def record(faces: list[FoundFace], choice: Choice, asked: str) -> dict:
    """What project.json keeps: every face found (boxes in source pixels) and the choice."""
    return {"faces": [f.to_json() for f in faces],
            "face_choice": {"asked": asked, "chosen": choice.face.number, "by": choice.by, "reason": choice.reason}}


def choose_in_project(work: Path, project_dir: Path, lm: np.ndarray, seen: np.ndarray, asked: str,
                      wave: Optional[np.ndarray], fps: float) -> tuple[np.ndarray, np.ndarray, dict, Optional[str]]:
    """Prepare's choice, from tracks (K, N, 478, 3) and seen (K, N) and the clip's 16 kHz speech (None:
    none, or silent): the face's landmarks (N, 478, 3), has_face (N,), what project.json records, and
    a warning or None. With several faces, the folder being built (`work`) gets diagnostics/faces.jpg."""
    from ..audio import SAMPLE_RATE
    from .diagnostics import write_face_choice
    from .framestore import JpegPack
    from ..project import ProjectFolder

    faces = found_faces(lm, seen)
    if not faces:                       # prepare says no face was found
        return np.full(lm.shape[1:], np.nan, np.float32), np.zeros(lm.shape[1], bool), {"faces": []}, None
    if len(faces) > 1 and wave is not None:
        score_speech(faces, lm, seen, wave, SAMPLE_RATE, fps)
    choice = choose(faces, asked, str(ProjectFolder(project_dir).faces_picture))
    if len(faces) > 1:
        write_face_choice(work, JpegPack(ProjectFolder(work).originals), lm, seen, faces, choice)
    t = choice.face.track
    chosen = lm[t].copy() if len(lm) > 1 else lm[0]          # a copy lets the other tracks go
    return chosen, seen[t].copy(), record(faces, choice, asked), choice.warning
