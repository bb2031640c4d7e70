"""Graphics items of the timeline: ruler, video thumbnails, audio clips, pose keyframes, playhead.

Items are thin: they paint model state and turn mouse gestures into model calls.
A drag moves the item on screen only; the edit reaches the model (and the undo
stack) once, on release. Positions are frames times the view's pixels-per-frame.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional

import numpy as np
from PySide6.QtCore import QLineF, QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QCursor, QFont, QLinearGradient, QPainter, QPainterPath, QPen, QPolygonF
from PySide6.QtWidgets import QGraphicsItem, QGraphicsObject, QMenu, QStyleOptionGraphicsItem

from .. import theme
from ..model.editor import SAMPLE_RATE, AudioClip

if TYPE_CHECKING:
    from .timeline_view import TimelineView

RULER_H, VIDEO_H, KEYS_H, AUDIO_H, GAP = 30.0, 62.0, 24.0, 58.0, 3.0
EDGE_PX = 7.0          # grab width of a clip's trim handles
SNAP_PX = 8.0          # snapping distance to the playhead and other clips' edges
PEAK_HOP = 80          # samples per waveform peak (5 ms at 16 kHz)


def video_y() -> float:
    return RULER_H + GAP


def keys_y() -> float:
    return video_y() + VIDEO_H + GAP


def audio_y(track: int) -> float:
    return keys_y() + KEYS_H + GAP + track * (AUDIO_H + GAP)


def track_at(y: float) -> int:
    return max(0, int((y - audio_y(0)) // (AUDIO_H + GAP)))


OVERLAP = "#ff5a5f"


def nice_step(ppf: float, fps: float, min_px: float = 90.0) -> int:
    """Frames between labelled ticks: whole frames, seconds or minutes, at least `min_px` apart."""
    base = max(1, int(round(fps)))
    for step in (1, 2, 5, 10, base // 2 or 1, base, 2 * base, 5 * base, 10 * base, 15 * base, 30 * base,
                 60 * base, 120 * base, 300 * base, 600 * base):
        if step * ppf >= min_px:
            return step
    return 600 * base


class RulerItem(QGraphicsItem):
    """Timecodes and ticks; pressing or dragging scrubs the playhead. Shades the in/out range and
    marks in red where clips on different tracks overlap (their speech is mixed)."""

    def __init__(self, view: "TimelineView") -> None:
        super().__init__()
        self.view = view
        self.setFlag(QGraphicsItem.ItemUsesExtendedStyleOption)
        self.setCursor(Qt.IBeamCursor)
        self.setZValue(5)
        self.overlaps: list[tuple[int, int]] = []

    def label(self, frame: int) -> str:
        """The main timecode's HH:MM:SS:FF: a shortened MM:SS:FF read as minutes."""
        return self.view.model.timecode(frame)

    def update_overlaps(self) -> None:
        self.overlaps = self.view.model.overlaps()
        n = len(self.overlaps)
        self.setToolTip(f"Red: {n} place(s) where speech on two tracks plays at once and is mixed" if n else "")
        self.update()

    def boundingRect(self) -> QRectF:
        return QRectF(0, 0, self.view.scene_width(), RULER_H)

    def paint(self, p: QPainter, option: QStyleOptionGraphicsItem, widget=None) -> None:
        m, ppf = self.view.model, self.view.ppf
        rect = option.exposedRect
        p.fillRect(rect, QColor("#1b1c20"))
        p.setPen(QColor("#2c2e34"))
        p.drawLine(QPointF(rect.left(), RULER_H - 0.5), QPointF(rect.right(), RULER_H - 0.5))
        a, b = m.range()
        if m.in_point is not None or m.out_point is not None:
            p.fillRect(QRectF(a * ppf, RULER_H - 7, (b - a) * ppf, 6), QColor(theme.RANGE))
        for a, b in self.overlaps:
            p.fillRect(QRectF(a * ppf, RULER_H - 4, (b - a) * ppf, 4), QColor(OVERLAP))
        step = nice_step(ppf, m.fps)
        minor = max(1, step // 5) if step >= 5 else 1
        f0 = max(0, int(rect.left() / ppf) // minor * minor)
        f1 = int(rect.right() / ppf) + minor
        font = QFont(p.font())
        font.setPointSizeF(8)
        p.setFont(font)
        for f in range(f0, f1 + 1, minor):
            x = f * ppf
            if f % step == 0:
                p.setPen(QColor("#8d909a"))
                p.drawLine(QPointF(x, 12), QPointF(x, RULER_H - 1))
                p.setPen(QColor("#c0c2c9"))
                p.drawText(QPointF(x + 4, 12), self.label(f))
            elif minor * ppf >= 5:
                p.setPen(QColor("#4a4d55"))
                p.drawLine(QPointF(x, RULER_H - 7), QPointF(x, RULER_H - 1))

    def mousePressEvent(self, event) -> None:
        self.view.scrub_to(event.scenePos().x())

    def mouseMoveEvent(self, event) -> None:
        self.view.scrub_to(event.scenePos().x())


class VideoTrackItem(QGraphicsItem):
    """Thumbnails of the source frame each output frame shows (the background schedule)."""

    def __init__(self, view: "TimelineView") -> None:
        super().__init__()
        self.view = view
        self.setFlag(QGraphicsItem.ItemUsesExtendedStyleOption)
        self.setPos(0, video_y())

    def boundingRect(self) -> QRectF:
        return QRectF(0, 0, self.view.model.duration * self.view.ppf, VIDEO_H)

    def paint(self, p: QPainter, option: QStyleOptionGraphicsItem, widget=None) -> None:
        view, m = self.view, self.view.model
        full = self.boundingRect()
        rect = option.exposedRect.intersected(full)
        path = QPainterPath()
        path.addRoundedRect(full, 4, 4)
        p.save()
        p.setClipPath(path)
        p.fillRect(rect, QColor(theme.VIDEO_CLIP))
        tw = view.thumb_width()
        if tw > 0:
            i0, i1 = int(rect.left() // tw), int(math.ceil(rect.right() / tw))
            for i in range(i0, i1 + 1):
                x = i * tw
                frame = int(x / view.ppf)
                if frame >= m.duration:
                    break
                img = view.thumbnail(int(m.background([frame])[0]))
                if img is not None:
                    p.drawImage(QRectF(x, 2, tw - 1, VIDEO_H - 4), img)
        p.restore()
        p.setPen(QPen(QColor("#5b7fb5"), 1))
        p.drawRoundedRect(full.adjusted(0.5, 0.5, -0.5, -0.5), 4, 4)


class ClipItem(QGraphicsObject):
    """One audio clip: drag to move (across tracks too), drag an edge to trim; both snap to frames."""

    def __init__(self, view: "TimelineView", clip: AudioClip) -> None:
        super().__init__()
        self.view = view
        self.clip = clip
        self._drag: Optional[str] = None      # "move", "left", "right"
        self._press = QPointF()
        self._ghost: Optional[tuple[int, int, int]] = None   # start, length, track while dragging
        self.setAcceptHoverEvents(True)
        self.setFlag(QGraphicsItem.ItemUsesExtendedStyleOption)
        self.setZValue(2)
        self.sync(clip)

    def sync(self, clip: AudioClip) -> None:
        self.prepareGeometryChange()
        self.clip = clip
        self._ghost = None
        self.setPos(clip.start * self.view.ppf, audio_y(clip.track))
        self.update()

    def _span(self) -> tuple[int, int, int]:
        return self._ghost or (self.clip.start, self.clip.length, self.clip.track)

    def boundingRect(self) -> QRectF:
        start, length, _ = self._span()
        dx = (start - self.clip.start) * self.view.ppf if self._drag in ("left",) else 0.0
        return QRectF(dx, 0, max(length * self.view.ppf, 2.0), AUDIO_H)

    def paint(self, p: QPainter, option: QStyleOptionGraphicsItem, widget=None) -> None:
        r = self.boundingRect()
        selected = self.clip.id in self.view.model.selection.clips
        base = QColor(theme.AUDIO_CLIP)
        grad = QLinearGradient(0, 0, 0, AUDIO_H)
        grad.setColorAt(0, base.lighter(118))
        grad.setColorAt(1, base.darker(125))
        p.setRenderHint(QPainter.Antialiasing, True)
        p.setBrush(QBrush(grad))
        p.setPen(QPen(QColor("#ffffff") if selected else base.lighter(150), 2 if selected else 1))
        p.drawRoundedRect(r.adjusted(0.5, 0.5, -0.5, -0.5), 4, 4)
        p.setRenderHint(QPainter.Antialiasing, False)
        self._paint_wave(p, r, option.exposedRect.intersected(r))
        p.setPen(QColor("#eafff6"))
        f = QFont(p.font())
        f.setPointSizeF(8.5)
        f.setBold(True)
        p.setFont(f)
        p.drawText(r.adjusted(6, 2, -6, 0), Qt.AlignLeft | Qt.AlignTop,
                   p.fontMetrics().elidedText(self.clip.name, Qt.ElideRight, int(max(r.width() - 12, 0))))

    def _paint_wave(self, p: QPainter, r: QRectF, exposed: QRectF) -> None:
        peaks = self.view.peaks(self.clip.path)
        if peaks is None or exposed.width() <= 0:
            return
        start, _, _ = self._span()
        src_in = self.clip.src_in + (start - self.clip.start)
        spf = SAMPLE_RATE / self.view.model.fps
        ppf = self.view.ppf
        x0, x1 = int(exposed.left()), int(math.ceil(exposed.right()))
        xs = np.arange(x0, x1 + 1, dtype=np.float64) - r.left()
        # peak bins covered by each pixel column, from the clip's source offset
        bins = ((src_in + xs / ppf) * spf / PEAK_HOP).astype(np.int64)
        valid = (bins[:-1] >= 0) & (bins[:-1] < len(peaks))
        if not valid.any():
            return
        lo = np.clip(bins[:-1], 0, len(peaks) - 1)
        vals = np.maximum.reduceat(peaks, lo)        # max over [lo[i], lo[i+1]) per column
        vals[-1] = peaks[lo[-1]]
        vals = np.where(valid, vals, 0.0)
        mid, half = AUDIO_H / 2 + 6, AUDIO_H / 2 - 12
        p.setPen(QPen(QColor(theme.AUDIO_WAVE), 1))
        p.drawLines([QLineF(x0 + i + 0.5, mid - v * half, x0 + i + 0.5, mid + v * half + 0.5)
                     for i, v in enumerate(vals.tolist()) if v > 0.0])

    # --- gestures ---------------------------------------------------------------------------
    def _edge_at(self, x: float) -> Optional[str]:
        w = self.clip.length * self.view.ppf
        if w > 3 * EDGE_PX:
            if x <= EDGE_PX:
                return "left"
            if x >= w - EDGE_PX:
                return "right"
        return None

    def hoverMoveEvent(self, event) -> None:
        self.setCursor(QCursor(Qt.SizeHorCursor if self._edge_at(event.pos().x()) else Qt.OpenHandCursor))

    def mousePressEvent(self, event) -> None:
        if event.button() != Qt.LeftButton:
            event.ignore()
            return
        m = self.view.model
        if event.modifiers() & Qt.ControlModifier:
            m.select(clips=m.selection.clips ^ {self.clip.id})
        elif self.clip.id not in m.selection.clips:
            m.select(clips=[self.clip.id])
        self._drag = self._edge_at(event.pos().x()) or "move"
        self._press = event.scenePos()
        if self._drag == "move":
            self.setCursor(QCursor(Qt.ClosedHandCursor))

    def mouseMoveEvent(self, event) -> None:
        if self._drag is None:
            return
        c, ppf = self.clip, self.view.ppf
        dx = event.scenePos().x() - self._press.x()
        if self._drag == "move":
            start = self.view.snap(c.start + dx / ppf, exclude=c.id, length=c.length)
            track = track_at(event.scenePos().y())
            self._ghost = (max(0, start), c.length, track)
            self.setPos(self._ghost[0] * ppf, audio_y(track))
        elif self._drag == "left":
            frame = self.view.snap(c.start + dx / ppf, exclude=c.id)
            frame = min(max(frame, c.start - c.src_in, 0), c.end - 1)
            self.prepareGeometryChange()
            self._ghost = (frame, c.end - frame, c.track)
        else:
            end = self.view.snap(c.end + dx / ppf, exclude=c.id)
            end = min(max(end, c.start + 1), c.start + c.src_len - c.src_in)
            self.prepareGeometryChange()
            self._ghost = (c.start, end - c.start, c.track)
        self.update()

    def mouseReleaseEvent(self, event) -> None:
        drag, ghost = self._drag, self._ghost
        self._drag = None
        self.setCursor(QCursor(Qt.OpenHandCursor))
        if ghost is None:
            return
        m, c = self.view.model, self.clip
        if drag == "move":
            m.move_clip(c.id, ghost[0], ghost[2])
        elif drag == "left":
            m.trim_clip(c.id, "left", ghost[0])
        else:
            m.trim_clip(c.id, "right", ghost[0] + ghost[1])
        if c.id in {x.id for x in m.clips}:
            self.sync(m.clip(c.id))       # a no-op edit emits nothing; put the item back

    def contextMenuEvent(self, event) -> None:
        m = self.view.model
        menu = QMenu()
        split = menu.addAction(theme.icon("scissors"), "Split at playhead")
        split.setEnabled(self.clip.start < m.playhead < self.clip.end)
        delete = menu.addAction(theme.icon("trash"), "Delete")
        chosen = menu.exec(event.screenPos())
        if chosen is split:
            m.split_clip(self.clip.id, m.playhead)
        elif chosen is delete:
            m.remove_clips([self.clip.id])


class KeyframeItem(QGraphicsObject):
    """A pose keyframe marker: click selects and seeks, drag moves, right-click deletes."""

    SIZE = 7.0

    def __init__(self, view: "TimelineView", frame: int) -> None:
        super().__init__()
        self.view = view
        self.frame = frame
        self._press_x: Optional[float] = None
        self.setCursor(Qt.PointingHandCursor)
        self.setZValue(3)
        self.setToolTip("Pose keyframe — drag to move, right-click to delete")
        self.sync(frame)

    def sync(self, frame: int) -> None:
        self.frame = frame
        self.setPos(frame * self.view.ppf, keys_y() + KEYS_H / 2)
        self.update()

    def boundingRect(self) -> QRectF:
        s = self.SIZE + 2
        return QRectF(-s, -s, 2 * s, 2 * s)

    def paint(self, p: QPainter, option, widget=None) -> None:
        s = self.SIZE
        selected = self.view.model.selection.keyframe == self.frame
        p.setRenderHint(QPainter.Antialiasing, True)
        p.setBrush(QColor("#ffffff") if selected else QColor(theme.KEYFRAME))
        p.setPen(QPen(QColor("#1a1a1a"), 1))
        p.drawPolygon(QPolygonF([QPointF(0, -s), QPointF(s, 0), QPointF(0, s), QPointF(-s, 0)]))

    def mousePressEvent(self, event) -> None:
        if event.button() != Qt.LeftButton:
            event.ignore()
            return
        self._press_x = event.scenePos().x()
        self.view.model.select(keyframe=self.frame)

    def mouseMoveEvent(self, event) -> None:
        if self._press_x is None:
            return
        frame = max(0, self.view.snap(self.frame + (event.scenePos().x() - self._press_x) / self.view.ppf))
        self.setX(frame * self.view.ppf)

    def mouseReleaseEvent(self, event) -> None:
        if self._press_x is None:
            return
        moved = abs(event.scenePos().x() - self._press_x) > 2
        self._press_x = None
        m = self.view.model
        if moved:
            m.move_keyframe(self.frame, int(round(self.x() / self.view.ppf)))
        else:
            m.set_playhead(self.frame)
        self.view.sync_keyframes()

    def contextMenuEvent(self, event) -> None:
        menu = QMenu()
        delete = menu.addAction(theme.icon("trash"), "Delete keyframe")
        if menu.exec(event.screenPos()) is delete:
            self.view.model.delete_keyframe(self.frame)


class PlayheadItem(QGraphicsItem):
    def __init__(self, view: "TimelineView") -> None:
        super().__init__()
        self.view = view
        self.setZValue(10)
        self.setAcceptedMouseButtons(Qt.NoButton)

    def boundingRect(self) -> QRectF:
        return QRectF(-7, 0, 14, self.view.scene_height())

    def paint(self, p: QPainter, option, widget=None) -> None:
        colour = QColor(theme.PLAYHEAD)
        p.setPen(QPen(colour, 1.5))
        p.drawLine(QPointF(0, RULER_H - 10), QPointF(0, self.view.scene_height()))
        p.setRenderHint(QPainter.Antialiasing, True)
        p.setBrush(colour)
        p.setPen(Qt.NoPen)
        p.drawPolygon(QPolygonF([QPointF(-6, RULER_H - 14), QPointF(6, RULER_H - 14), QPointF(6, RULER_H - 8),
                                 QPointF(0, RULER_H - 2), QPointF(-6, RULER_H - 8)]))


def wave_peaks(wave: np.ndarray) -> np.ndarray:
    """Absolute peaks per PEAK_HOP samples, normalised to the loudest, for drawing."""
    n = len(wave) // PEAK_HOP
    if n == 0:
        return np.zeros(1, np.float32)
    peaks = np.abs(wave[: n * PEAK_HOP]).reshape(n, PEAK_HOP).max(axis=1)
    top = float(peaks.max()) or 1.0
    return (peaks / top).astype(np.float32)
