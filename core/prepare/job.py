"""The prepare job: a clip becomes a project folder (docs/architecture.md, "Prepare"). No learning.

Stages: probe -> decode + track faces -> crop, poses, canonical frame, geometry ->
working frames and canonical mouths -> audio features -> diagnostics -> manifest.
The project is built in a hidden sibling folder and renamed into place at the
end, so a failure or cancel never leaves a half-written project.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import numpy as np

from .. import audio as A
from . import face_choice as FC
from . import faces as F
from . import geometry as G
from .. import media
from . import tracking as T
from ..errors import FaceError, MediaError, ProjectError
from .framestore import JpegPackWriter
from ..jobs import CancelToken, Progress, ProgressFn, ensure_token, no_progress
from ..project import SCHEMA_VERSION, Manifest, Project, ProjectFolder, save_array, write_json
from ..tempfiles import WorkDir, remove_stale

MIN_SECONDS = 5.0
MIN_FACE_COVERAGE = 0.5
MIN_FACE_PX = 64            # face width in source pixels below which lips cannot be learned
QUEUE_MB = 48               # decoded frames waiting per tracker thread
TRACK_MAX_SIDE = 720        # frames larger than this are tracked downscaled (landmarks are normalised)
HELDOUT = 0.1
MOTION_FRAMES = 60         # frames sampled for the motion heat maps (paper Fig. 2)
TRACK_EVERY = 2             # face mesh on every other frame; the rest interpolated (faces.track_keyframes)
SILENT_RMS = 1e-4           # about -80 dBFS: a track this quiet carries no speech to learn from
FACELESS_WARN = 0.02        # warn, with time ranges, when more than this share of frames has no face
NO_SPEECH = "sync training needs speech in the clip"


def check_target(project_dir: Path, force: bool) -> None:
    """Refuse a non-empty or unwritable target unless forced; say what to do."""
    if project_dir.exists() and not project_dir.is_dir():
        raise ProjectError(f"{project_dir} is a file; choose a folder for the project.")
    if project_dir.is_dir() and any(project_dir.iterdir()) and not force:
        raise ProjectError(f"{project_dir} is not empty; choose a new folder or pass --force to replace it.")
    parent = project_dir.parent if not project_dir.exists() else project_dir
    while not parent.exists():
        parent = parent.parent
    try:
        probe = tempfile.NamedTemporaryFile(dir=parent, prefix=".s2l-write-test-")
        probe.close()
    except OSError:
        raise ProjectError(f"cannot write in {parent}; choose a folder you can write to.") from None


def _track_pass(video: Path, info: media.VideoInfo, pack: Optional[JpegPackWriter], progress: ProgressFn,
                cancel: CancelToken, max_faces: int, every: int = 2, workers: int = 2,
                block: int = 32, tracker: str = T.DEFAULT) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Decode once: keep each source frame (JPEG pack) and track the faces on it.

    Returns landmarks (K, N, 478, 3) in source pixels of K face tracks, seen (K, N),
    tracked (N,): which frames the mesh ran on (the others are interpolated, see
    faces.track_keyframes), and whether a second face was seen. With max_faces 1, K is 1:
    the trackers release the GIL, so blocks of frames go alternately to `workers` trackers
    in threads; each follows its own blocks and at a block start re-detects if needed,
    which costs a few milliseconds. With more, one faces.FaceTracks follows every face
    through the whole clip, for face_choice to choose among them.
    """
    import queue
    import threading

    import cv2

    scale = min(1.0, TRACK_MAX_SIDE / max(info.width, info.height))
    dense = T.dense_backend(tracker)
    workers = workers if max_faces == 1 else 1
    results: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    # Queues deep enough (up to ~48 MB each) that decoding runs ahead while the tracker loads.
    block_mb = block * info.width * info.height * 3 * scale * scale / 2**20
    queues = [queue.Queue(maxsize=int(np.clip(QUEUE_MB // max(block_mb, 1), 2, 8))) for _ in range(workers)]
    errors: list[BaseException] = []
    several = threading.Event()
    check_every = max(1, int(round(2 * info.fps)))      # look for extra faces every 2 s

    def worker(q: "queue.Queue") -> None:
        counter = None
        try:
            counter = F.FaceCounter(dense) if max_faces == 1 else None
            follower = F.FaceTracker(tracker=dense) if max_faces == 1 else F.FaceTracks(max_faces, tracker=dense)
            with follower:
                while (item := q.get()) is not None:
                    start, frames = item
                    lm, seen, tracked = follower.track_keyframes(frames, every)
                    if max_faces == 1:
                        lm, seen = lm[None], seen[None]
                    results[start] = (lm / scale, seen, tracked)
                    for k in range(-start % check_every, len(frames), check_every):
                        if counter is not None and counter(frames[k]) > 1:
                            several.set()
        except BaseException as e:        # surfaced in the main thread
            errors.append(e)
            while q.get() is not None:
                pass
        finally:
            if counter is not None:
                counter.close()

    threads = [threading.Thread(target=worker, args=(q,), daemon=True) for q in queues]
    for t in threads:
        t.start()
    n, pending = 0, []
    try:
        for frame in media.read_frames(video, info=info):
            if pack is not None:
                pack.add(frame)
            pending.append(cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
                           if scale < 1 else frame)
            n += 1
            if len(pending) == block:
                queues[(n // block) % workers].put((n - block, pending))
                pending = []
                if errors:
                    raise errors[0]
                cancel.raise_if_cancelled()
                progress(Progress("faces", n, info.n_frames, "tracking the face"))
        if pending:
            queues[((n - len(pending)) // block + 1) % workers].put((n - len(pending), pending))
    finally:
        for q in queues:
            q.put(None)
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    if n == 0:
        raise MediaError(f"{video.name} has no decodable frames; it may be truncated. Export it again.")
    parts = [results[s] for s in sorted(results)]
    tracked = np.concatenate([p[2] for p in parts])
    k = max(len(p[1]) for p in parts)            # tracks that began in a later block are empty before it
    lms = np.full((k, len(tracked), F.N_LANDMARKS, 3), np.nan, np.float32)
    seen = np.zeros((k, len(tracked)), bool)
    at = 0
    for lm, sn, tr in parts:
        lms[:len(sn), at:at + len(tr)], seen[:len(sn), at:at + len(tr)] = lm, sn
        at += len(tr)
    return lms, seen, tracked, several.is_set()


def _check_faces(video: Path, lm_src: np.ndarray, has_face: np.ndarray, info: media.VideoInfo) -> None:
    n, found = len(has_face), int(has_face.sum())
    if found == 0:
        # The full-range detector finds faces down to about 5% of the frame's width.
        smallest = int(0.05 * max(info.width, info.height))
        raise FaceError(f"no face found in {video.name}; use a clip where one speaker faces the camera "
                        f"(a face under about {smallest} px wide in this {info.width}x{info.height} frame is "
                        f"too small to find: crop the video closer around the speaker).")
    if found < MIN_FACE_COVERAGE * n:
        raise FaceError(f"a face was found in only {100 * found / n:.0f}% of {video.name}'s frames (need "
                        f"{100 * MIN_FACE_COVERAGE:.0f}%); trim the clip to the part where the speaker is visible.")
    width = float(np.median(np.ptp(lm_src[has_face][:, :, 0], axis=1)))
    if width < MIN_FACE_PX:
        raise FaceError(f"the face in {video.name} is only {width:.0f} px wide (need {MIN_FACE_PX}); "
                        "use a closer shot or a higher-resolution clip.")


def _fill_faceless(lm: np.ndarray, has_face: np.ndarray) -> np.ndarray:
    """Copy the nearest tracked frame's landmarks into faceless frames, for geometry only."""
    nearest = G.nearest_tracked(has_face)
    out = lm.copy()
    out[~has_face] = lm[nearest[~has_face]]
    return out


def _crop_filter(crop: list[int], info: media.VideoInfo, size: int) -> str:
    x0, y0, side, _ = crop
    pad_l, pad_t = max(0, -x0), max(0, -y0)
    pad_r, pad_b = max(0, x0 + side - info.width), max(0, y0 + side - info.height)
    chain = []
    if pad_l or pad_t or pad_r or pad_b:
        chain.append(f"pad={info.width + pad_l + pad_r}:{info.height + pad_t + pad_b}:{pad_l}:{pad_t}")
    chain.append(f"crop={side}:{side}:{x0 + pad_l}:{y0 + pad_t}")
    chain.append(f"scale={size}:{size}:flags=area")
    return ",".join(chain)


class _StageClock:
    """Wall and CPU seconds per stage (CPU time, threads included, tells work from waiting)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def start(self) -> None:
        self._t, self._c = time.perf_counter(), time.process_time()

    def stop(self, name: str) -> None:
        self.wall[name] = time.perf_counter() - self._t
        self.cpu[name] = time.process_time() - self._c


class _NpyStream:
    """Write an .npy array row by row with plain file writes: RAM stays flat for any clip length
    (a writable memmap would keep every touched page resident)."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype=np.uint8) -> None:
        self.f = open(path, "wb")
        np.lib.format.write_array_header_1_0(self.f, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                                      "shape": shape})
        self.rows, self.n, self.last = 0, shape[0], None

    def write(self, rows: list[np.ndarray]) -> None:
        """Rows as a list of arrays of the row shape (no stacking copy)."""
        rows = rows[: self.n - self.rows]
        for r in rows:
            self.f.write(np.ascontiguousarray(r).data)
        self.rows += len(rows)
        self.last = rows[-1:]

    def close(self) -> None:
        while self.rows < self.n and self.last is not None:     # a short second decode: repeat the last row
            self.write(self.last)
        self.f.close()


class _Motion:
    """Running per-pixel variance of grey levels, as decoded and warped to canonical (paper Fig. 2)."""

    def __init__(self, n: int, size: int, every: int) -> None:
        self.every, self.count = every, 0
        self.sums = np.zeros((2, 2, size, size))      # [before/after][sum/sum of squares]

    def add(self, start: int, frames: list[np.ndarray], depth: np.ndarray, head: np.ndarray,
            poses: np.ndarray) -> None:
        keep = [k for k in range(len(frames)) if (start + k) % self.every == 0]
        if not keep:
            return
        rgb = np.stack([frames[k] for k in keep]).astype(np.float32)
        grey = (rgb[..., 0] + rgb[..., 1] + rgb[..., 2]) / 3                   # (k, S, S)
        grids = G.o2c_map(depth, head, poses[keep])                              # (k, S, S, 2)
        warped = np.stack([G.remap(g, grid) for g, grid in zip(grey, grids)])
        for j, g in enumerate((grey, warped)):
            self.sums[j, 0] += g.sum(0)
            self.sums[j, 1] += (g * g).sum(0)
        self.count += len(keep)

    def variances(self) -> tuple[np.ndarray, np.ndarray]:
        mean = self.sums[:, 0] / max(self.count, 1)
        var = np.maximum(self.sums[:, 1] / max(self.count, 1) - mean ** 2, 0).astype(np.float32)
        return var[0], var[1]


def _stream_frames(video: Path, info: media.VideoInfo, crop: list[int], size: int, n: int, work: Path,
                   depth: np.ndarray, head: np.ndarray, poses: np.ndarray, box: list[int],
                   progress: ProgressFn, cancel: CancelToken, batch: int = 32) -> _Motion:
    """Second decode, through ffmpeg's crop and scale: write the working frames, warp each to
    canonical for the ground-truth mouth box, and gather motion statistics, all in one pass."""
    _, _, w, h = box
    frames_out = _NpyStream(ProjectFolder(work).array_path("frames"), (n, size, size, 3))
    mouths_out = _NpyStream(ProjectFolder(work).array_path("mouth"), (n, h, w, 3))
    motion = _Motion(n, size, every=max(1, n // MOTION_FRAMES))
    buf: list[np.ndarray] = []

    def flush(start: int) -> None:
        frames_out.write(buf)
        pose = poses[start:start + len(buf)]
        grids = G.o2c_map(depth, head, pose, box)                                # (B, h, w, 2)
        # Bicubic: mouths are resampled again when pasted, and two bilinear passes halve their detail.
        mouths_out.write([G.remap(f, g, cubic=True) for f, g in zip(buf, grids)])
        motion.add(start, buf, depth, head, pose)
        buf.clear()

    try:
        done = 0
        for f in media.read_frames(video, vf=_crop_filter(crop, info, size), size=(size, size), info=info):
            if done + len(buf) >= n:
                break
            buf.append(f)
            if len(buf) == batch:
                flush(done)
                done += batch
                cancel.raise_if_cancelled()
                progress(Progress("frames", done, n, "caching frames and canonical mouths"))
        if buf:
            flush(done)
    finally:
        frames_out.close()
        mouths_out.close()
    return motion


def _speech(video: Path, info: media.VideoInfo, n: int, work: Path) -> bool:
    """audio.wav and the log-mel features (silence for a clip without audio); True when the track is silent."""
    silent = False
    if info.has_audio:
        wave = media.read_audio(video)
        media.write_wav(ProjectFolder(work).speech_path, wave)
        mel = A.speech_features(wave)
        silent = _is_silent(wave)
    else:
        mel = A.speech_features(np.zeros(int(n / info.fps * A.SAMPLE_RATE), np.float32))
    save_array(ProjectFolder(work).array_path("mel"), mel)
    return silent


def _is_silent(wave: np.ndarray) -> bool:
    return float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))) < SILENT_RMS


def faceless_ranges(has_face: np.ndarray) -> list[list[int]]:
    """[first, last] frame of each run of frames without a face."""
    miss = np.concatenate([[False], ~np.asarray(has_face, bool), [False]])
    edges = np.flatnonzero(np.diff(miss.astype(np.int8)))
    return [[int(a), int(b) - 1] for a, b in zip(edges[::2], edges[1::2])]


def _faceless_warning(ranges: list[list[int]], n: int, fps: float) -> Optional[str]:
    missing = sum(b - a + 1 for a, b in ranges)
    if missing <= FACELESS_WARN * n:
        return None
    clock = lambda f: f"{int(f / fps // 60)}:{f / fps % 60:04.1f}"
    longest = sorted(ranges, key=lambda r: r[0] - r[1])[:5]
    where = ", ".join(f"{clock(a)}-{clock(b + 1)}" for a, b in sorted(longest))
    more = f" and {len(ranges) - 5} shorter gaps" if len(ranges) > 5 else ""
    return (f"no face in {missing} of {n} frames ({100 * missing / n:.0f}%), at {where}{more}; "
            f"those frames keep their original mouth when dubbing")


def prepare(video: Path | str, project_dir: Path | str, size: int = 256, force: bool = False,
            progress: ProgressFn = no_progress, cancel: Optional[CancelToken] = None,
            track_every: int = TRACK_EVERY, tracker: str = T.DEFAULT, face: str | int = FC.SPEAKING) -> Project:
    """Turn a clip into a project folder; returns the opened Project.

    track_every: run the face mesh on every k-th frame and interpolate between (1: every frame).
    tracker: a core/prepare/tracking backend name, checked (model files, packages) before any work.
    face: which face to prepare when the clip shows several (core/prepare/face_choice.py): "speaking" (the
    one whose mouth follows the speech), "largest", "left", "right" or a number from 1, left to right.
    """
    from .diagnostics import write_diagnostics

    video, project_dir = Path(video), Path(project_dir)
    cancel = ensure_token(cancel)
    if size not in (256, 512):
        raise ProjectError(f"working size {size} is not supported; use 256 or 512.")
    if track_every < 1:
        raise ProjectError(f"--track-every must be 1 or more (got {track_every}).")
    T.check_name(tracker)
    face = FC.parse_face(face)
    t0 = time.perf_counter()
    clock = _StageClock()
    progress(Progress("probe", 0, 1, f"reading {video.name}"))
    info = media.probe(video)
    if not info.has_video:
        raise MediaError(f"{video.name} has no video stream (audio only?); choose a video of the speaker.")
    if info.duration and info.duration < MIN_SECONDS:
        raise MediaError(f"{video.name} is {info.duration:.1f} s long; a clip of at least {MIN_SECONDS:.0f} s "
                         "(ideally a few minutes) of one person talking is needed.")
    check_target(project_dir, force)
    T.preflight(tracker)
    warnings = [] if info.has_audio else [f"the clip has no audio track: it can be prepared, but {NO_SPEECH}"]

    project_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(project_dir.parent, f".{project_dir.name}.preparing-")      # left by a killed prepare
    held = WorkDir(project_dir.parent, f".{project_dir.name}.preparing-")
    work = held.path
    try:
        clock.start()
        pack = JpegPackWriter(ProjectFolder(work).originals)
        lm_all, seen_all, tracked, many = _track_pass(video, info, pack, progress, cancel, 1, track_every,
                                                      tracker=tracker)
        n = pack.close()
        if many:            # another face appeared: follow every face, then choose
            lm_all, seen_all, tracked, _ = _track_pass(video, info, None, progress, cancel, FC.MAX_FACES,
                                                       track_every, tracker=tracker)
        clock.stop("decode+faces")
        n = min(n, len(tracked))
        lm_all, seen_all, tracked = lm_all[:, :n], seen_all[:, :n], tracked[:n]
        if n / info.fps < MIN_SECONDS:
            raise MediaError(f"{video.name} has only {n / info.fps:.1f} s of decodable video; at least "
                             f"{MIN_SECONDS:.0f} s is needed.")
        # Several faces: the speech tells which one is speaking (read again for audio.wav below).
        wave = media.read_audio(video) if many and info.has_audio else None
        lm_src, has_face, face_stats, face_note = FC.choose_in_project(
            work, project_dir, lm_all, seen_all, face, None if wave is None or _is_silent(wave) else wave, info.fps)
        del lm_all, seen_all, wave
        if face_note:
            warnings.append(face_note)
        _check_faces(video, lm_src, has_face, info)
        cancel.raise_if_cancelled()

        clock.start()
        progress(Progress("pose", 0, 1, "fitting head poses"))
        crop = G.choose_crop(lm_src, has_face, info.width, info.height)
        lm = F.smooth_tracks(G.to_crop(lm_src, crop, size), has_face)
        filled = _fill_faceless(lm, has_face)
        canon_idx = G.choose_canonical(filled, has_face)
        canon = filled[canon_idx]
        poses, resid = G.fit_poses(canon, filled, has_face)
        face_mask, head_mask = G.face_and_head_masks(canon, size)
        depth = G.canonical_depth(canon, head_mask)
        box = G.mouth_box(canon, size)
        if tracker == "fan":        # the paper's lip box: FAN's 68 points on the canonical frame
            from .tracking.fan import fan_mouth_box

            box = fan_mouth_box(ProjectFolder(work).originals, crop, size, canon_idx, poses, canon, video)
        clock.stop("pose+geometry")

        # The speech features are made beside the second pass, which leaves a core mostly idle.
        with ThreadPoolExecutor(1) as pool:
            speech = pool.submit(_speech, video, info, n, work)
            clock.start()
            motion = _stream_frames(video, info, crop, size, n, work, depth, head_mask, poses, box, progress, cancel)
            clock.stop("frames+mouths")
            clock.start()
            progress(Progress("audio", 0, 1, "computing speech features"))
            if speech.result():
                warnings.append(f"the clip's audio track is silent: it can be prepared, but {NO_SPEECH}")
            clock.stop("audio")

        lm_out = lm.copy()
        lm_out[~has_face] = np.nan
        for name, arr in [("landmarks", lm_out), ("has_face", has_face), ("poses", poses),
                          ("fit_residual", resid), ("tracked", tracked), ("depth", depth), ("head_mask", head_mask),
                          ("face_mask", face_mask)]:
            save_array(ProjectFolder(work).array_path(name), arr)

        clock.start()
        progress(Progress("diagnostics", 0, 1, "drawing diagnostic pictures"))
        frames = np.load(ProjectFolder(work).array_path("frames"), mmap_mode="r")
        motion_stats = write_diagnostics(work, frames, lm_out, has_face, canon_idx, box, depth, head_mask,
                                         face_mask, *motion.variances())
        clock.stop("diagnostics")

        gaps = faceless_ranges(has_face)
        if (note := _faceless_warning(gaps, n, info.fps)) is not None:
            warnings.append(note)
        n_train = int(np.floor(n * (1 - HELDOUT)))
        seconds = time.perf_counter() - t0
        manifest = Manifest(
            source={"path": str(video.resolve()), "name": video.name, "width": info.width, "height": info.height,
                    "fps": info.fps, "n_frames": n, "duration": n / info.fps, "has_audio": info.has_audio,
                    "rotation": info.rotation},
            size=size, crop=crop, canonical_index=canon_idx, mouth_box=box,
            split={"n_train": n_train, "n_frames": n}, tracker=tracker,
            audio={"sample_rate": A.SAMPLE_RATE, "hop": A.HOP, "n_mels": A.N_MELS, "window": A.WINDOW,
                   "mel_rate": A.MEL_RATE},
            stats={"faces_found": int(has_face.sum()), "face_coverage": float(has_face.mean()),
                   "frames_tracked": int(tracked.sum()),
                   # on the frames the mesh ran on: interpolated ones would flatter the fit
                   "residual_mean_px": float(np.nanmean(resid[tracked])),
                   "residual_max_px": float(np.nanmax(resid[tracked])),
                   "prepare_seconds": seconds, "stage_seconds": clock.wall, "stage_cpu_seconds": clock.cpu, "warnings": warnings,
                   "several_faces": bool(many) or len(face_stats["faces"]) > 1, **face_stats,
                   "faceless_ranges": gaps, **motion_stats},
            schema_version=SCHEMA_VERSION)
        write_json(ProjectFolder(work).manifest_path, manifest.to_json())
        progress(Progress("done", 1, 1, f"prepared {n} frames in {seconds:.1f} s"))
        held.release()
        _move_into_place(work, project_dir)
    except BaseException:
        held.cleanup()
        raise
    return Project(project_dir)


def _move_into_place(work: Path, project_dir: Path) -> None:
    """Swap the finished folder in; an old project (with --force) is removed only after."""
    old = None
    if project_dir.exists():
        old = project_dir.with_name(f".{project_dir.name}.old-{int(time.time() * 1000)}")
        project_dir.rename(old)
    try:
        work.rename(project_dir)
    except OSError:
        if old is not None:
            old.rename(project_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
