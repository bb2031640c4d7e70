"""Playback: a clock that moves the playhead, with the timeline's audio heard in sync.

The clock is a QElapsedTimer started together with the audio, so the picture
follows the sound: each tick jumps to the frame that is due now and frames that
were not ready are skipped (dropped), never queued up behind the audio.
Audio goes through sounddevice when it has an output device; otherwise the
clock runs alone (silent playback).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from PySide6.QtCore import QElapsedTimer, QObject, Qt, QTimer, Signal

from ..model.editor import SAMPLE_RATE, EditorModel

SHUTTLE_RATES = (1, 2, 4, 8)


class AudioOut:
    """Plays a mono 16 kHz wave on the default output device, if there is one."""

    def __init__(self) -> None:
        self._sd = None
        try:
            import sounddevice as sd

            sd.query_devices(kind="output")
            self._sd = sd
        except Exception:        # no PortAudio, no device, or a headless box: play silently
            self._sd = None

    @property
    def available(self) -> bool:
        return self._sd is not None

    def play(self, wave: np.ndarray) -> None:
        if self._sd is not None and len(wave):
            self._sd.play(np.asarray(wave, np.float32), SAMPLE_RATE, blocking=False)

    def stop(self) -> None:
        if self._sd is not None:
            self._sd.stop()


class Playback(QObject):
    state_changed = Signal(bool)       # playing
    rate_changed = Signal(int)
    dropped = Signal(int)              # frames skipped since play started

    def __init__(self, model: EditorModel, audio: Optional[AudioOut] = None, parent=None) -> None:
        super().__init__(parent)
        self.model = model
        self.audio = audio or AudioOut()
        self.rate = 0
        self.loop = False
        self.frames_dropped = 0
        self._clock = QElapsedTimer()
        self._start_frame = 0
        self._last = 0
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.PreciseTimer)
        self._timer.timeout.connect(self._tick)

    @property
    def playing(self) -> bool:
        return self.rate != 0

    def play(self, rate: int = 1) -> None:
        m = self.model
        if rate > 0 and m.playhead >= m.duration - 1:
            m.set_playhead(0)
        self.audio.stop()
        self.rate = rate
        self._start_frame = self._last = m.playhead
        self.frames_dropped = 0
        if rate == 1:      # audio only at normal speed, as editors do
            self.audio.play(m.mix(m.playhead, m.duration))
        self._clock.start()
        self._timer.start(max(5, int(500 / m.fps)))      # tick at twice the frame rate
        self.state_changed.emit(True)
        self.rate_changed.emit(rate)

    def pause(self) -> None:
        if not self.playing:
            return
        self._timer.stop()
        self.audio.stop()
        self.rate = 0
        self.state_changed.emit(False)
        self.rate_changed.emit(0)

    def toggle(self) -> None:
        self.pause() if self.playing else self.play(1)

    def shuttle(self, direction: int) -> None:
        """J (-1) / L (+1): start, or speed up in that direction; K (0) stops."""
        if direction == 0:
            self.pause()
            return
        if self.rate * direction > 0:
            i = SHUTTLE_RATES.index(abs(self.rate)) if abs(self.rate) in SHUTTLE_RATES else 0
            rate = SHUTTLE_RATES[min(i + 1, len(SHUTTLE_RATES) - 1)] * direction
        else:
            rate = direction
        self.play(rate)

    def due_frame(self) -> int:
        return self._start_frame + int(self._clock.elapsed() / 1000.0 * self.model.fps * self.rate)

    def _tick(self) -> None:
        m = self.model
        f = self.due_frame()
        if f >= m.duration or f < 0:
            if self.loop and self.rate > 0:
                m.set_playhead(0)
                self.play(self.rate)
                return
            m.set_playhead(min(max(f, 0), m.duration - 1))
            self.pause()
            return
        if f != self._last:
            skipped = abs(f - self._last) - 1
            if skipped > 0:
                self.frames_dropped += skipped
                self.dropped.emit(self.frames_dropped)
            self._last = f
            m.set_playhead(f)
