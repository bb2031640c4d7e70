"""The dub plan: what each output frame shows, decided once for dub, eval, preview and export.

An output frame k shows background frame `background[k]` of the clip (ping-pong
over the clip, as the editor's timeline shows it), driven by the speech window
centred at `times[k]` (or the clip's rest window where the speech is silent), with
the head turned by `pose[k]`. The editor's preview renders frame k of a plan; its
export renders frames in..out of the same plan, so the file holds what the user
approved frame by frame (docs/architecture.md, "Plan").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

import numpy as np

from .. import audio as A

SILENCE_RMS = 1e-3          # -60 dBFS: below this an output frame's audio counts as silence


def pingpong(frames: Iterable[int] | np.ndarray, n: int) -> np.ndarray:
    """Background frame shown at each output frame: 0..n-1, n-2..1, 0.. reflecting, never out of range."""
    frames = np.asarray(frames, np.int64)
    if n <= 1:
        return np.zeros_like(frames)
    period = 2 * n - 2
    k = np.mod(frames, period)
    return np.where(k < n, k, period - k)


def frame_rms(wave: np.ndarray, times: np.ndarray, half_window_s: float = 0.1) -> np.ndarray:
    """(N,) RMS of the 16 kHz waveform within +-half_window_s of each timestamp."""
    half = int(half_window_s * A.SAMPLE_RATE)
    c = np.concatenate([[0.0], np.cumsum(np.asarray(wave, np.float64) ** 2)])
    centre = np.round(np.asarray(times) * A.SAMPLE_RATE).astype(np.int64)
    lo = np.clip(centre - half, 0, len(wave))
    hi = np.clip(centre + half, 0, len(wave))
    return np.sqrt((c[hi] - c[lo]) / np.maximum(1, hi - lo))


def rest_window(project) -> np.ndarray:
    """The clip's quietest training window: what silence looks like to the model (40, 80)."""
    mel = np.array(project.array("mel"), np.float32)
    times = A.frame_times(project.n_train, project.fps)
    energy = A.mel_windows(mel.mean(1, keepdims=True), times, window=10)[..., 0].mean(1)   # +-50 ms
    return A.mel_windows(mel, times[[int(np.argmin(energy))]])[0]


@dataclass
class DubPlan:
    """Per output frame: background frame, speech window (rest in silence) and head-pose offset.

    Windows are cut on demand from the speech's mel, so a long timeline costs its
    mel, not a window per frame.
    """

    fps: float
    background: np.ndarray                 # (N,) int64 clip frame per output frame
    times: np.ndarray                      # (N,) s, the centre of each frame's speech window
    mel: np.ndarray                        # (T, 80) log-mel of the driving speech
    silent: np.ndarray                     # (N,) bool: the rest window replaces the speech there
    rest: np.ndarray                       # (40, 80) the clip's rest window
    pose: Optional[np.ndarray] = None      # (N, 3) yaw/pitch/roll offsets in degrees; None: as filmed
    notes: list[str] = field(default_factory=list)   # what the plan changed (pose clamping), for the user

    def __len__(self) -> int:
        return len(self.background)

    @classmethod
    def for_frames(cls, project, background: np.ndarray, times: np.ndarray, mel: np.ndarray,
                   wave: np.ndarray, pose: Optional[np.ndarray] = None) -> "DubPlan":
        """A plan over chosen clip frames (evaluation's held-out frames), driven by `wave` at `times`."""
        times = np.asarray(times, np.float64)
        return cls(float(project.fps), np.asarray(background, np.int64), times, np.asarray(mel, np.float32),
                   frame_rms(wave, times) < SILENCE_RMS, rest_window(project), pose)

    @classmethod
    def for_speech(cls, project, wave: np.ndarray, start: int = 0, n_out: Optional[int] = None,
                   pose_track=None) -> "DubPlan":
        """The timeline plan: `wave` (16 kHz mono) from output frame 0, the clip ping-ponging from
        timeline phase `start` (0 for the editor's timeline), poses from a core.dub.pose.PoseTrack."""
        fps = float(project.fps)
        if n_out is None:
            n_out = max(1, int(round(len(wave) / A.SAMPLE_RATE * fps)))
        times = A.frame_times(n_out, fps)
        background = pingpong(int(start) + np.arange(n_out), project.n_frames)
        pose, notes = None, []
        if pose_track is not None:
            track, notes = pose_track.clamp()
            pose = None if track.is_zero() else np.asarray(track.at(np.arange(n_out)), np.float32).reshape(-1, 3)
        plan = cls.for_frames(project, background, times, A.speech_features(wave), wave, pose)
        plan.notes = list(notes)
        return plan

    def speech_windows(self, frames: Iterable[int] | np.ndarray) -> np.ndarray:
        """(K, 40, 80) the speech's own windows at output frames `frames`."""
        return A.mel_windows(self.mel, self.times[self._idx(frames)])

    def windows(self, frames: Iterable[int] | np.ndarray) -> np.ndarray:
        """(K, 40, 80) what drives the lips: the speech window, or the rest window in silence."""
        idx = self._idx(frames)
        w = A.mel_windows(self.mel, self.times[idx])
        w[self.silent[idx]] = self.rest
        return w

    def inputs(self, frames: Iterable[int] | np.ndarray, pose: Optional[np.ndarray] = None):
        """(windows, background, pose offsets or None) for rendering output frames `frames`.

        pose: offsets to use instead of the plan's (the editor's sliders before they become a key)."""
        idx = self._idx(frames)
        if pose is None and self.pose is not None:
            pose = self.pose[idx]
        if pose is not None and not np.any(pose):
            pose = None
        return self.windows(idx), self.background[idx], pose

    def _idx(self, frames) -> np.ndarray:
        idx = np.asarray(list(frames) if not isinstance(frames, np.ndarray) else frames, np.int64).reshape(-1)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"output frame {int(idx.max())} is outside the plan (0..{len(self) - 1})")
        return idx
