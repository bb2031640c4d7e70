"""The dubbing session: timeline clips, playhead, selection, in/out points and pose keyframes.

Qt-free, with change events (`model.events.<name>.connect(fn)`) and one undo
stack. Widgets read the model and write only through its public methods, so the
same session is driven by tests without a display. All times are integer frames
of the source clip's frame rate: editing snaps to frames by construction.

Output frame f shows source frame `background(f)` (the clip in order,
ping-ponging when the timeline is longer than the clip), lips driven by the mix
of all audio clips at f / fps, and the head turned by the interpolated pose.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np

from speech2lip.core.dub.plan import pingpong      # the one ping-pong: dub, eval, preview and export use it

from .commands import AddClip, DeleteKeyframe, EditClip, MoveKeyframe, RemoveClips, SetKeyframe
from .events import EmitterGroup
from .undo import UndoStack

SAMPLE_RATE = 16000
SESSION_VERSION = 1
Pose = tuple[float, float, float]          # yaw, pitch, roll in degrees


@dataclass(frozen=True)
class AudioClip:
    """A span of an audio file placed on a track. Frames: start on the timeline, src_in into the file."""

    id: int
    path: str
    track: int
    start: int
    src_in: int
    length: int
    src_len: int          # whole file, in frames: the limit for trimming
    gain: float = 1.0
    name: str = ""

    @property
    def end(self) -> int:
        return self.start + self.length


@dataclass
class Selection:
    clips: frozenset[int] = field(default_factory=frozenset)
    keyframe: Optional[int] = None


class EditorModel:
    def __init__(self, fps: float, n_source: int, n_tracks: int = 2) -> None:
        if fps <= 0 or n_source <= 0:
            raise ValueError("fps and n_source must be positive")
        self.fps = float(fps)
        self.n_source = int(n_source)
        self.n_tracks = int(n_tracks)
        self.undo = UndoStack()
        self.events = EmitterGroup("clips", "keyframes", "playhead", "selection", "range",
                                   "duration", "pending_pose", "sources", "dirty")
        self._clips: dict[int, AudioClip] = {}
        self._keys: dict[int, Pose] = {}
        self._sources: dict[str, np.ndarray] = {}
        self._ids = itertools.count(1)
        self._playhead = 0
        self._in: Optional[int] = None
        self._out: Optional[int] = None
        self._pending: Optional[Pose] = None
        self._duration = self._compute_duration()
        self.selection = Selection()
        self.mix_revision = 0       # bumps on every change of what is heard
        self._edits = self._saved = 0   # edit revision now / when last saved: unsaved while they differ
        self.undo.events.changed.connect(lambda e: self._touched())

    # --- read ----------------------------------------------------------------------
    @property
    def clips(self) -> list[AudioClip]:
        return sorted(self._clips.values(), key=lambda c: (c.track, c.start, c.id))

    def clip(self, clip_id: int) -> AudioClip:
        return self._clips[clip_id]

    @property
    def keyframes(self) -> dict[int, Pose]:
        return dict(sorted(self._keys.items()))

    @property
    def playhead(self) -> int:
        return self._playhead

    @property
    def duration(self) -> int:
        """Frames on the timeline: up to the last clip's end, or the source clip when empty."""
        return self._duration

    @property
    def in_point(self) -> Optional[int]:
        return self._in

    @property
    def out_point(self) -> Optional[int]:
        return self._out

    def range(self) -> tuple[int, int]:
        """[start, stop) to export: the in/out points, else the whole timeline."""
        a = self._in if self._in is not None else 0
        b = self._out + 1 if self._out is not None else self._duration
        a = min(max(a, 0), self._duration - 1)
        return a, max(a + 1, min(b, self._duration))

    @property
    def pending_pose(self) -> Optional[Pose]:
        return self._pending

    def frames_to_seconds(self, frames: float) -> float:
        return frames / self.fps

    def seconds_to_frames(self, seconds: float) -> int:
        return int(round(seconds * self.fps))

    def timecode(self, frame: int) -> str:
        """HH:MM:SS:FF at the clip's frame rate (frames counted, non-drop)."""
        base = max(1, int(round(self.fps)))
        ff = frame % base
        s = frame // base
        return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}:{ff:02d}"

    def length_text(self, frames: int) -> str:
        """A span as the app writes it everywhere (model.formats.duration_text)."""
        from .formats import duration_text

        return duration_text(frames, self.fps)

    def overlaps(self) -> list[tuple[int, int]]:
        """[start, end) spans where clips on different tracks sound together (they mix)."""
        spans = sorted((c.start, c.end, c.track) for c in self._clips.values())
        out: list[tuple[int, int]] = []
        for i, (a0, a1, ta) in enumerate(spans):
            for b0, b1, tb in spans[i + 1:]:
                if b0 >= a1:
                    break
                if tb != ta:
                    out.append((b0, min(a1, b1)))
        out.sort()
        merged: list[tuple[int, int]] = []
        for a, b in out:
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        return merged

    # --- saved state ------------------------------------------------------------------
    @property
    def dirty(self) -> bool:
        """True while an edit is not yet written to the project."""
        return self._edits != self._saved

    @property
    def edit_revision(self) -> int:
        return self._edits

    def mark_saved(self, revision: Optional[int] = None) -> None:
        """The state at `revision` (default: now) is on disk; later edits stay unsaved."""
        self._saved = self._edits if revision is None else revision
        self.events.dirty(dirty=self.dirty)

    def _touched(self) -> None:
        self._edits += 1
        self.events.dirty(dirty=True)

    # --- audio sources -----------------------------------------------------------
    def add_source(self, path: str | Path, wave: np.ndarray) -> None:
        """Register decoded audio (16 kHz mono) so clips from `path` are heard."""
        self._sources[str(path)] = np.asarray(wave, np.float32)
        self._mix_changed()
        self.events.sources(path=str(path))

    def has_source(self, path: str | Path) -> bool:
        return str(path) in self._sources

    def source(self, path: str | Path) -> Optional[np.ndarray]:
        return self._sources.get(str(path))

    def source_frames(self, wave: np.ndarray) -> int:
        return max(1, int(math.ceil(len(wave) / SAMPLE_RATE * self.fps)))

    # --- clip edits (undoable) -----------------------------------------------------
    def add_clip(self, path: str | Path, track: int = 0, start: Optional[int] = None) -> AudioClip:
        """Place the whole registered file on `track` at `start` (default: the playhead)."""
        wave = self._sources.get(str(path))
        if wave is None:
            raise KeyError(f"audio {path} is not loaded; call add_source first")
        n = self.source_frames(wave)
        clip = AudioClip(next(self._ids), str(path), self._track(track),
                         max(0, self._playhead if start is None else int(start)), 0, n, n,
                         name=Path(path).name)
        self.undo.push(AddClip(self, clip))
        self.select(clips=[clip.id])
        return clip

    def remove_clips(self, ids: Iterable[int]) -> None:
        clips = [self._clips[i] for i in ids if i in self._clips]
        if clips:
            self.undo.push(RemoveClips(self, clips))

    def move_clip(self, clip_id: int, start: int, track: Optional[int] = None) -> None:
        c = self._clips[clip_id]
        start, track = max(0, int(start)), self._track(c.track if track is None else track)
        if (start, track) != (c.start, c.track):
            self.undo.push(EditClip(self, c, f"Move {c.name}", start=start, track=track))

    def trim_clip(self, clip_id: int, edge: str, frame: int) -> None:
        """Drag the 'left' or 'right' edge to timeline `frame`, within the file and at least one frame."""
        c = self._clips[clip_id]
        frame = int(frame)
        if edge == "left":
            lo = max(c.start - c.src_in, 0)     # cannot reveal before the file's start or time zero
            new_start = min(max(frame, lo), c.end - 1)
            delta = new_start - c.start
            changes = dict(start=new_start, src_in=c.src_in + delta, length=c.length - delta)
        elif edge == "right":
            new_end = min(max(frame, c.start + 1), c.start + c.src_len - c.src_in)
            changes = dict(length=new_end - c.start)
        else:
            raise ValueError(f"edge must be 'left' or 'right', not {edge!r}")
        if any(getattr(c, k) != v for k, v in changes.items()):
            self.undo.push(EditClip(self, c, f"Trim {c.name}", **changes))

    def set_clip_gain(self, clip_id: int, gain: float) -> None:
        c = self._clips[clip_id]
        gain = float(np.clip(gain, 0.0, 4.0))
        if gain != c.gain:
            self.undo.push(EditClip(self, c, f"Gain of {c.name}", gain=gain))

    def split_clip(self, clip_id: int, frame: int) -> Optional[int]:
        """Cut a clip in two at `frame`; returns the id of the right part."""
        c = self._clips[clip_id]
        if not c.start < frame < c.end:
            return None
        right = AudioClip(next(self._ids), c.path, c.track, frame, c.src_in + frame - c.start,
                          c.end - frame, c.src_len, c.gain, c.name)
        with self.undo.macro(f"Split {c.name}"):
            self.undo.push(EditClip(self, c, "", length=frame - c.start))
            self.undo.push(AddClip(self, right))
        return right.id

    # --- pose keyframes (undoable) ---------------------------------------------------
    def set_keyframe(self, frame: Optional[int] = None, pose: Optional[Pose] = None) -> int:
        """Key `pose` (default: the sliders' pending pose, else the interpolated one) at `frame` (default: playhead)."""
        frame = self._playhead if frame is None else max(0, int(frame))
        if pose is None:
            pose = self._pending if self._pending is not None else self.pose_at([frame])[0]
        pose = _clamp_pose(pose)
        old = self._keys.get(frame)
        if old != pose:
            self.undo.push(SetKeyframe(self, frame, pose, old))
        self.set_pending_pose(None)
        self.select(keyframe=frame)
        return frame

    def delete_keyframe(self, frame: int) -> None:
        if frame in self._keys:
            self.undo.push(DeleteKeyframe(self, frame, self._keys[frame]))

    def move_keyframe(self, src: int, dst: int) -> None:
        dst = max(0, int(dst))
        if src in self._keys and dst != src:
            self.undo.push(MoveKeyframe(self, src, dst, self._keys[src], self._keys.get(dst)))
            if self.selection.keyframe == src:
                self.select(keyframe=dst)

    def pose_at(self, frames: Iterable[int]) -> np.ndarray:
        """(N, 3) yaw, pitch, roll in degrees, interpolated between keyframes; zero with none."""
        frames = np.asarray(list(frames), np.int64)
        if not self._keys:
            return np.zeros((len(frames), 3), np.float32)
        from speech2lip.core.dub.pose import PoseKey, PoseTrack

        track = PoseTrack([PoseKey(f, *p) for f, p in sorted(self._keys.items())])
        return np.asarray(track.at(frames), np.float32).reshape(len(frames), 3)

    def preview_pose(self, frame: int) -> Pose:
        """What the viewer shows at `frame`: the sliders' pending pose at the playhead, else the track."""
        if self._pending is not None and frame == self._playhead:
            return self._pending
        return tuple(float(v) for v in self.pose_at([frame])[0])

    def pose_track(self):
        """The keyframes as core's PoseTrack (None with no keyframes), for dub/export."""
        if not self._keys:
            return None
        from speech2lip.core.dub.pose import PoseKey, PoseTrack

        return PoseTrack([PoseKey(f, *p) for f, p in sorted(self._keys.items())])

    # --- view state (not undoable) -----------------------------------------------------
    def set_playhead(self, frame: int) -> None:
        frame = int(min(max(int(frame), 0), self._duration - 1))
        if frame != self._playhead:
            self._playhead = frame
            if self._pending is not None:
                self.set_pending_pose(None)
            self.events.playhead(frame=frame)

    def step(self, frames: int) -> None:
        self.set_playhead(self._playhead + frames)

    def set_pending_pose(self, pose: Optional[Pose]) -> None:
        pose = None if pose is None else _clamp_pose(pose)
        if pose != self._pending:
            self._pending = pose
            self.events.pending_pose(pose=pose)

    def select(self, clips: Iterable[int] = (), keyframe: Optional[int] = None) -> None:
        sel = Selection(frozenset(i for i in clips if i in self._clips),
                        keyframe if keyframe in self._keys else None)
        if sel != self.selection:
            self.selection = sel
            self.events.selection(clips=sel.clips, keyframe=sel.keyframe)

    def set_in_point(self, frame: Optional[int]) -> None:
        self._in = None if frame is None else max(0, int(frame))
        if self._in is not None and self._out is not None and self._out < self._in:
            self._out = None
        self.events.range(in_point=self._in, out_point=self._out)
        self._touched()

    def set_out_point(self, frame: Optional[int]) -> None:
        self._out = None if frame is None else max(0, int(frame))
        if self._in is not None and self._out is not None and self._out < self._in:
            self._in = None
        self.events.range(in_point=self._in, out_point=self._out)
        self._touched()

    # --- what the renderer needs -----------------------------------------------------------
    def background(self, frames: Iterable[int]) -> np.ndarray:
        """Source frame index shown at each output frame."""
        return pingpong(np.asarray(list(frames), np.int64), self.n_source)

    def mix(self, start: int = 0, stop: Optional[int] = None) -> np.ndarray:
        """16 kHz mono mix of all clips over frames [start, stop), clipped to [-1, 1]."""
        stop = self._duration if stop is None else stop
        spf = SAMPLE_RATE / self.fps
        a, b = int(round(start * spf)), int(round(stop * spf))
        out = np.zeros(max(0, b - a), np.float32)
        for c in self._clips.values():
            wave = self._sources.get(c.path)
            if wave is None:
                continue
            t0 = int(round(c.start * spf))
            s0 = int(round(c.src_in * spf))
            n = min(int(round(c.length * spf)), len(wave) - s0)
            lo, hi = max(t0, a), min(t0 + n, b)
            if hi > lo:
                out[lo - a:hi - a] += c.gain * wave[s0 + lo - t0:s0 + hi - t0]
        return np.clip(out, -1.0, 1.0)

    # --- persistence ---------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "version": SESSION_VERSION, "fps": self.fps, "tracks": self.n_tracks,
            "clips": [{k: v for k, v in asdict(c).items() if k != "id"} for c in self.clips],
            "keyframes": [[f, *p] for f, p in sorted(self._keys.items())],
            "in": self._in, "out": self._out, "playhead": self._playhead,
        }

    def load_json(self, obj: dict[str, Any]) -> list[str]:
        """Restore a saved session (clears undo). Returns the audio paths whose sources must be added."""
        if not isinstance(obj, dict) or obj.get("version") != SESSION_VERSION:
            raise ValueError("not a dubbing session this version reads")
        self._clips.clear()
        for c in obj.get("clips", []):
            clip = AudioClip(next(self._ids), str(c["path"]), self._track(int(c["track"])), int(c["start"]),
                             int(c["src_in"]), int(c["length"]), int(c["src_len"]), float(c.get("gain", 1.0)),
                             str(c.get("name") or Path(c["path"]).name))
            self._clips[clip.id] = clip
        self._keys = {int(k[0]): _clamp_pose(k[1:4]) for k in obj.get("keyframes", [])}
        self.n_tracks = max(self.n_tracks, int(obj.get("tracks", self.n_tracks)))
        self._in, self._out = obj.get("in"), obj.get("out")
        self.undo.clear()
        self._structure_changed()
        self.events.keyframes(frames=sorted(self._keys))
        self.events.range(in_point=self._in, out_point=self._out)
        self.set_playhead(int(obj.get("playhead", 0)))
        self.mark_saved()                # what was just read is what the file holds
        return sorted({c.path for c in self._clips.values()})

    # --- primitives used by commands --------------------------------------------------------
    def _insert_clip(self, clip: AudioClip) -> None:
        self._clips[clip.id] = clip
        self._structure_changed(added=clip.id)

    def _remove_clip(self, clip_id: int) -> None:
        self._clips.pop(clip_id, None)
        if clip_id in self.selection.clips:
            self.select(clips=self.selection.clips - {clip_id}, keyframe=self.selection.keyframe)
        self._structure_changed(removed=clip_id)

    def _replace_clip(self, clip: AudioClip) -> None:
        self._clips[clip.id] = clip
        self._structure_changed(changed=clip.id)

    def _put_key(self, frame: int, pose: Pose) -> None:
        self._keys[frame] = pose
        self.events.keyframes(frames=sorted(self._keys))

    def _drop_key(self, frame: int) -> None:
        self._keys.pop(frame, None)
        if self.selection.keyframe == frame:
            self.select(clips=self.selection.clips)
        self.events.keyframes(frames=sorted(self._keys))

    def _structure_changed(self, **what) -> None:
        self._mix_changed()
        self.events.clips(**what)
        d = self._compute_duration()
        if d != self._duration:
            self._duration = d
            self.events.duration(frames=d)
            if self._playhead >= d:
                self.set_playhead(d - 1)

    def _mix_changed(self) -> None:
        self.mix_revision += 1

    def _compute_duration(self) -> int:
        ends = [c.end for c in self._clips.values()]
        return max(ends) if ends else self.n_source

    def _track(self, track: int) -> int:
        track = max(0, int(track))
        if track >= self.n_tracks:
            self.n_tracks = track + 1
        return track


def _clamp_pose(pose: Iterable[float]) -> Pose:
    """Keep each angle inside what the clip's depth supports (core.dub.pose.LIMITS)."""
    from speech2lip.core.dub.pose import LIMITS

    y, p, r = (round(float(np.clip(float(v), -lim, lim)), 2) for v, lim in zip(pose, LIMITS))
    return (y, p, r)
