"""Face tracking in MediaPipe's Face Mesh layout (478 3D landmarks), on a backend of core/prepare/tracking.

Landmarks come back in pixels of the image they were tracked on: (x*W, y*H, z*W).
A frame with no face gives NaN landmarks and has_face False; it is never fatal here.
`FaceTracker` follows one face (the largest, then by continuity); `FaceTracks` follows every
face and keeps who is who by position, for prepare to choose among them (core/prepare/face_choice.py).

`track_keyframes` runs the mesh on every other frame and interpolates the frames
between when the face barely moved: the mesh is most of prepare's time. On the
bundled clips, after the time smoothing every track gets, interpolated lips lie
0.34-0.41 px from every-frame tracking; the frames the mesh did run on lie 0.30-0.34 px
from it too (the mesh starts from the previous frame's result), so interpolation adds
about 0.05 px, well under the tracker's own frame-to-frame jitter (0.44-0.60 px).
"""
from __future__ import annotations

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
    """Follows one face through a sequence of RGB frames, on a tracker backend (core/prepare/tracking).

    max_faces > 1 looks for several faces and keeps the largest at the start,
    then the one nearest the previous position.
    """

    def __init__(self, max_faces: int = 1, static: bool = False, tracker: str = "facemesh") -> None:
        from .tracking import open_backend

        self.backend = open_backend(tracker, max_faces=max_faces, static=static)
        self._prev_centre: Optional[np.ndarray] = None

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "FaceTracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def process(self, rgb: np.ndarray) -> tuple[Optional[np.ndarray], int]:
        """(478, 3) pixel landmarks of the followed face or None, and how many faces were seen."""
        cands = [f.landmarks for f in self.backend.faces(np.ascontiguousarray(rgb))]
        if not cands:
            return None, 0
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

    def track_keyframes(self, frames: list[np.ndarray], every: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Landmarks (N, 478, 3) of a run of consecutive frames, has_face (N,) and tracked (N,).

        Frames 0, every, 2*every, ... and the last are tracked; the frames between two tracked
        ones are interpolated linearly when both have a face that moved less than JUMP and no
        picture between them differs from the next by more than CUT (a cut, a fast turn or a
        lost face are tracked frame by frame instead).
        """
        n = len(frames)
        lm = np.full((n, N_LANDMARKS, 3), np.nan, np.float32)
        seen, tracked = np.zeros(n, bool), np.zeros(n, bool)

        def run(i: int) -> None:
            got, _ = self.process(frames[i])
            tracked[i] = True
            if got is not None:
                lm[i], seen[i] = got, True

        def fill(a: int, b: int) -> None:
            w = (np.arange(a + 1, b, dtype=np.float32) - a) / (b - a)
            lm[a + 1:b] = lm[a] + w[:, None, None] * (lm[b] - lm[a])
            seen[a + 1:b] = True

        _walk_keyframes(frames, every, run, lambda a, b: seen[a] and seen[b] and _still(lm[a], lm[b]), fill)
        return lm, seen, tracked

    def track(self, frames: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Landmarks (N, 478, 3) of every frame, NaN where no face, and has_face (N,)."""
        lm, seen, _ = self.track_keyframes(list(frames), every=1)
        return lm, seen


class FaceTracks:
    """Follows every face through a clip (up to max_faces at a time), each as its own track.

    A face found in a frame joins the track whose last position is nearest, within MATCH
    inter-ocular distances; a face near no track starts a new one. Track numbers are in
    order of appearance; core/prepare/face_choice.py numbers the faces for the user.
    """

    def __init__(self, max_faces: int = 4, static: bool = False, tracker: str = "facemesh") -> None:
        from .tracking import open_backend

        self.backend = open_backend(tracker, max_faces=max_faces, static=static)
        self._last: list[tuple[np.ndarray, float]] = []     # per track: last centre, inter-ocular distance

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "FaceTracks":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def n_tracks(self) -> int:
        return len(self._last)

    def process(self, rgb: np.ndarray) -> dict[int, np.ndarray]:
        """{track: (478, 3) pixel landmarks} of the faces in one RGB frame."""
        faces, centres = [], []
        for f in self.backend.faces(np.ascontiguousarray(rgb)):
            c = f.landmarks[:, :2].mean(0)
            # Two followed regions drifting onto one face would make a second track of the same person.
            if all(np.linalg.norm(c - o) > SAME * float(inter_ocular(f.landmarks)) for o in centres):
                faces.append(f.landmarks)
                centres.append(c)
        pairs = sorted((float(np.linalg.norm(c - centre)) / iod, i, t)
                       for i, c in enumerate(centres) for t, (centre, iod) in enumerate(self._last))
        out: dict[int, np.ndarray] = {}
        taken: set[int] = set()
        for d, i, t in pairs:                 # nearest pairs first: two faces never share a track
            if d <= MATCH and i not in taken and t not in out:
                out[t] = faces[i]
                taken.add(i)
        for i, lm in enumerate(faces):
            if i not in taken:
                out[len(self._last)] = lm
                self._last.append((centres[i], 1.0))
        for t, lm in out.items():
            self._last[t] = (lm[:, :2].mean(0), max(float(inter_ocular(lm)), 1.0))
        return out

    def track_keyframes(self, frames: list[np.ndarray], every: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Landmarks (K, N, 478, 3) of every track known after these frames, seen (K, N), tracked (N,).

        As FaceTracker.track_keyframes: the frames between two tracked ones are interpolated when
        the same faces are in both, none moved more than JUMP and there is no cut.
        """
        n = len(frames)
        got: dict[int, dict[int, np.ndarray]] = {}
        tracked = np.zeros(n, bool)

        def run(i: int) -> None:
            got[i] = self.process(frames[i])
            tracked[i] = True

        def still(a: int, b: int) -> bool:
            fa, fb = got[a], got[b]
            return bool(fa) and fa.keys() == fb.keys() and all(_still(fa[t], fb[t]) for t in fa)

        def fill(a: int, b: int) -> None:
            fa, fb = got[a], got[b]
            for i in range(a + 1, b):
                w = (i - a) / (b - a)
                got[i] = {t: fa[t] + w * (fb[t] - fa[t]) for t in fa}

        _walk_keyframes(frames, every, run, still, fill)
        lm = np.full((self.n_tracks, n, N_LANDMARKS, 3), np.nan, np.float32)
        seen = np.zeros((self.n_tracks, n), bool)
        for i, per in got.items():
            for t, pts in per.items():
                lm[t, i], seen[t, i] = pts, True
        return lm, seen, tracked


class FaceCounter:
    """How many faces a detection sees, for spotting clips with several people. Reuse one instance."""

    def __init__(self, tracker: str = "facemesh") -> None:
        from .tracking import open_backend

        self._backend = open_backend(tracker, static=True)

    def __call__(self, rgb: np.ndarray) -> int:
        return len(self._backend.detect(np.ascontiguousarray(rgb)))

    def close(self) -> None:
        self._backend.close()


JUMP = 0.15     # face moved by more than this many inter-ocular distances in two frames, or scaled by 1 +- it
CUT = 15.0      # mean grey-level change of a 32x32 thumbnail between frames: a cut (speech moves it under 7)
MATCH = 1.5     # a face this many inter-ocular distances from a track's last position is someone else
SAME = 0.5      # two faces found closer than this in one frame are one face found twice


def _keyframes(n: int, every: int) -> list[int]:
    """Frames 0, every, 2*every, ... and the last."""
    return sorted(set(range(0, n, max(1, every))) | {n - 1}) if n else []


def _walk_keyframes(frames: list[np.ndarray], every: int, run, still, fill) -> None:
    """Track the keyframes in time order (the mesh starts each frame from a neighbour's result);
    between two, fill(a, b) interpolates when still(a, b) and no cut lies between, else run(i) tracks
    each frame. still is asked first: the cut test needs thumbnails."""
    cut = _Cuts(frames)
    keys = _keyframes(len(frames), every)
    if keys:
        run(keys[0])
    for a, b in zip(keys, keys[1:]):
        run(b)
        if b - a < 2:
            continue
        if still(a, b) and not cut(a, b):
            fill(a, b)
        else:
            for i in range(a + 1, b):
                run(i)


class _Cuts:
    """Whether a run of frames holds a cut, from 32x32 thumbnails computed once per frame."""

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.frames, self.thumbs = frames, {}

    def __call__(self, a: int, b: int) -> bool:
        for i in range(a, b + 1):
            if i not in self.thumbs:
                self.thumbs[i] = _thumb(self.frames[i])
        return any(np.abs(self.thumbs[i] - self.thumbs[i + 1]).mean() > CUT for i in range(a, b))


def _still(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether the face barely moved between two landmark sets (478, 3), so frames between them interpolate."""
    ia, ib = float(inter_ocular(a)), float(inter_ocular(b))
    shift = float(np.linalg.norm(a[:, :2].mean(0) - b[:, :2].mean(0)))
    return shift < JUMP * ia and abs(ib / max(ia, 1e-6) - 1) < JUMP


def _thumb(rgb: np.ndarray) -> np.ndarray:
    """32x32 grey thumbnail: two consecutive frames differing by more than CUT make a cut."""
    import cv2

    return cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)


def gaussian_smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian filter along axis 0, edges repeated (scipy's gaussian_filter1d, mode='nearest')."""
    r = int(4.0 * sigma + 0.5)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    pad = np.concatenate([np.repeat(x[:1], r, 0), x, np.repeat(x[-1:], r, 0)])
    out = np.zeros(x.shape, np.result_type(x.dtype, np.float32))
    for j, w in enumerate(k):
        out += w * pad[j:j + len(x)]
    return out.astype(x.dtype, copy=False)


def smooth_tracks(lm: np.ndarray, has_face: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Gaussian smoothing over time within each run of consecutive tracked frames."""
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
            out[i:j] = gaussian_smooth(lm[i:j], sigma)
        i = j
    return out
