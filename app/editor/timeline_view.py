"""The timeline: a QGraphicsView over the session model, with track headers beside it.

Rows, top to bottom: ruler, video (thumbnails of the background schedule),
pose keyframes, then audio tracks. Ctrl+wheel zooms around the cursor, the
wheel scrolls, drops of audio files land on the track under the cursor.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import QGraphicsScene, QGraphicsView, QHBoxLayout, QWidget

from ..model.editor import EditorModel
from .timeline_items import (AUDIO_H, GAP, KEYS_H, RULER_H, SNAP_PX, VIDEO_H, ClipItem, KeyframeItem, PlayheadItem, RulerItem, VideoTrackItem, audio_y, keys_y, track_at, video_y, wave_peaks)

MIN_PPF, MAX_PPF = 0.02, 40.0
HEADER_W = 96


class TimelineView(QGraphicsView):
    files_dropped = Signal(list, int, int)      # paths, track, frame
    zoom_changed = Signal(float)

    def __init__(self, model: EditorModel, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.model = model
        self.ppf = 4.0
        self.magnet = True
        self._thumb_source: Optional[Callable[[int], Optional[np.ndarray]]] = None
        self._thumbs: dict[int, QImage] = {}
        self._thumb_aspect = 1.0
        self._peaks: dict[str, np.ndarray] = {}
        self.setScene(QGraphicsScene(self))
        self.setObjectName("timeline")
        self.setAlignment(Qt.AlignLeft | Qt.AlignTop)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOn)
        self.setViewportUpdateMode(QGraphicsView.SmartViewportUpdate)
        self.setAcceptDrops(True)
        self.setFocusPolicy(Qt.StrongFocus)
        self.setRenderHint(QPainter.Antialiasing, False)
        self.ruler = RulerItem(self)
        self.video = VideoTrackItem(self)
        self.playhead = PlayheadItem(self)
        for it in (self.ruler, self.video, self.playhead):
            self.scene().addItem(it)
        self.clip_items: dict[int, ClipItem] = {}
        self.key_items: dict[int, KeyframeItem] = {}
        ev = model.events
        ev.clips.connect(self._on_clips)
        ev.keyframes.connect(lambda e: self.sync_keyframes())
        ev.selection.connect(lambda e: self.viewport().update())
        ev.playhead.connect(self._on_playhead)
        ev.duration.connect(lambda e: self.relayout())
        ev.range.connect(lambda e: self.ruler.update())
        ev.clips.connect(lambda e: self.ruler.update_overlaps())
        ev.sources.connect(self._on_source)
        self.relayout()

    # --- data the items draw ------------------------------------------------------------------
    def set_thumbnail_source(self, fn: Callable[[int], Optional[np.ndarray]], aspect: float = 1.0) -> None:
        """fn(source_frame) -> RGB array; called lazily for the thumbnails in view."""
        self._thumb_source, self._thumb_aspect = fn, aspect
        self._thumbs.clear()
        self.video.update()

    def thumb_width(self) -> float:
        return (VIDEO_H - 4) * self._thumb_aspect

    def thumbnail(self, source_frame: int) -> Optional[QImage]:
        if self._thumb_source is None:
            return None
        img = self._thumbs.get(source_frame)
        if img is None:
            import cv2

            rgb = self._thumb_source(source_frame)
            if rgb is None:
                return None
            h = int(VIDEO_H - 4)
            small = cv2.resize(np.asarray(rgb), (max(1, int(h * self._thumb_aspect)), h), interpolation=cv2.INTER_AREA)
            from ..theme import qimage

            img = self._thumbs[source_frame] = qimage(small)
        return img

    def peaks(self, path: str) -> Optional[np.ndarray]:
        return self._peaks.get(path)

    def _on_source(self, e) -> None:
        wave = self.model.source(e.path)
        if wave is not None:
            self._peaks[e.path] = wave_peaks(wave)
        for it in self.clip_items.values():
            if it.clip.path == e.path:
                it.update()

    # --- geometry ----------------------------------------------------------------------------
    def scene_width(self) -> float:
        tail = max(self.model.fps * 5, self.model.duration * 0.25)
        return max((self.model.duration + tail) * self.ppf, float(self.viewport().width()))

    def scene_height(self) -> float:
        return audio_y(self.model.n_tracks) + GAP

    def relayout(self) -> None:
        self.scene().setSceneRect(QRectF(0, 0, self.scene_width(), self.scene_height()))
        for it in (self.ruler, self.video, self.playhead):
            it.prepareGeometryChange()
            it.update()
        self.playhead.setPos(self.model.playhead * self.ppf, 0)
        for it in self.clip_items.values():
            it.sync(self.model.clip(it.clip.id))
        self.sync_keyframes()
        self.setMinimumHeight(int(self.scene_height()) + 16)
        self.viewport().update()

    def set_ppf(self, ppf: float, anchor_x: Optional[float] = None) -> None:
        """Zoom to `ppf` pixels per frame, keeping the frame under viewport x `anchor_x` in place."""
        ppf = float(np.clip(ppf, MIN_PPF, MAX_PPF))
        if ppf == self.ppf:
            return
        bar = self.horizontalScrollBar()
        ax = self.viewport().width() / 2 if anchor_x is None else anchor_x
        frame = (bar.value() + ax) / self.ppf
        self.ppf = ppf
        self.relayout()
        bar.setValue(int(frame * ppf - ax))
        self.zoom_changed.emit(ppf)

    def fit(self) -> None:
        w = max(200, self.viewport().width() - 40)
        self.set_ppf(w / max(self.model.duration, 1), anchor_x=0)
        self.horizontalScrollBar().setValue(0)

    def snap(self, frame: float, exclude: Optional[int] = None, length: Optional[int] = None) -> int:
        """Round to a frame, then (magnet on) pull to the playhead, 0 and other clips' edges."""
        f = int(round(frame))
        if not self.magnet:
            return f
        targets = [0, self.model.playhead, *self.model.keyframes]
        for c in self.model.clips:
            if c.id != exclude:
                targets += [c.start, c.end]
        reach = SNAP_PX / self.ppf
        best, dist = f, reach + 1
        for t in targets:
            for offset in ((0, length) if length else (0,)):
                d = abs(frame + offset - t)
                if d < dist:
                    best, dist = t - offset, d
        return int(best) if dist <= reach else f

    def scrub_to(self, x: float) -> None:
        self.model.set_playhead(int(round(x / self.ppf)))

    def ensure_playhead_visible(self) -> None:
        x = self.model.playhead * self.ppf
        bar = self.horizontalScrollBar()
        w = self.viewport().width()
        if not bar.value() + 20 <= x <= bar.value() + w - 20:
            bar.setValue(int(x - w * 0.1))

    # --- model -> items ----------------------------------------------------------------------
    def _on_clips(self, e) -> None:
        live = {c.id: c for c in self.model.clips}
        for cid in list(self.clip_items):
            if cid not in live:
                self.scene().removeItem(self.clip_items.pop(cid))
        for cid, clip in live.items():
            item = self.clip_items.get(cid)
            if item is None:
                item = self.clip_items[cid] = ClipItem(self, clip)
                self.scene().addItem(item)
            elif item.clip != clip or item._ghost is not None:
                item.sync(clip)
        self.relayout()

    def sync_keyframes(self) -> None:
        keys = set(self.model.keyframes)
        for f in list(self.key_items):
            if f not in keys:
                self.scene().removeItem(self.key_items.pop(f))
        for f in keys:
            item = self.key_items.get(f)
            if item is None:
                self.key_items[f] = item = KeyframeItem(self, f)
                self.scene().addItem(item)
            item.sync(f)

    def _on_playhead(self, e) -> None:
        self.playhead.setPos(e.frame * self.ppf, 0)

    # --- input ------------------------------------------------------------------------------
    def wheelEvent(self, event) -> None:
        if event.modifiers() & Qt.ControlModifier:
            steps = event.angleDelta().y() / 120.0
            self.set_ppf(self.ppf * (1.25 ** steps), anchor_x=event.position().x())
            event.accept()
            return
        bar = self.horizontalScrollBar()
        delta = event.angleDelta().y() or event.angleDelta().x()
        bar.setValue(bar.value() - int(delta))
        event.accept()

    def mousePressEvent(self, event) -> None:
        item = self.itemAt(event.position().toPoint())
        if item is None or item is self.video:
            pos = self.mapToScene(event.position().toPoint())
            if pos.y() < video_y() + VIDEO_H or item is self.video:
                self.scrub_to(pos.x())
            if not (event.modifiers() & Qt.ControlModifier):
                self.model.select()
        super().mousePressEvent(event)

    def keyPressEvent(self, event) -> None:
        if event.key() in (Qt.Key_Delete, Qt.Key_Backspace):
            sel = self.model.selection
            if sel.clips:
                self.model.remove_clips(sel.clips)
            elif sel.keyframe is not None:
                self.model.delete_keyframe(sel.keyframe)
            event.accept()
            return
        event.ignore()        # transport keys go to the editor's shortcuts

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if not paths:
            return
        pos = self.mapToScene(event.position().toPoint())
        track = track_at(pos.y()) if pos.y() >= audio_y(0) else 0
        self.files_dropped.emit(paths, track, max(0, int(round(pos.x() / self.ppf))))
        event.acceptProposedAction()

    def drawBackground(self, p: QPainter, rect: QRectF) -> None:
        p.fillRect(rect, QColor("#16171a"))
        p.fillRect(QRectF(rect.left(), keys_y(), rect.width(), KEYS_H), QColor("#1b1c21"))
        for t in range(self.model.n_tracks):
            p.fillRect(QRectF(rect.left(), audio_y(t), rect.width(), AUDIO_H),
                       QColor("#1c1e22") if t % 2 == 0 else QColor("#1a1b1f"))
        end = self.model.duration * self.ppf
        if end < rect.right():      # past the end of the dub
            p.fillRect(QRectF(max(end, rect.left()), RULER_H, rect.right() - max(end, rect.left()),
                              rect.height()), QColor(0, 0, 0, 70))


class TrackHeaders(QWidget):
    """Names of the rows, aligned with the view (which never scrolls vertically)."""

    def __init__(self, view: TimelineView) -> None:
        super().__init__()
        self.view = view
        self.setFixedWidth(HEADER_W)
        view.model.events.clips.connect(lambda e: self.update())

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#1f2025"))
        off = self.view.mapFromScene(0, 0).y()
        rows = [(video_y(), VIDEO_H, "V1  Video", "#5b7fb5"), (keys_y(), KEYS_H, "Pose", "#f0b429")]
        rows += [(audio_y(t), AUDIO_H, f"A{t + 1}  Audio", "#2f8f6f") for t in range(self.view.model.n_tracks)]
        f = p.font()
        f.setPointSizeF(8.5)
        f.setBold(True)
        p.setFont(f)
        for y, h, text, colour in rows:
            r = QRectF(0, y + off, HEADER_W - 1, h)
            p.fillRect(r, QColor("#25262b"))
            p.fillRect(QRectF(0, y + off, 3, h), QColor(colour))
            p.setPen(QColor("#c9cbd2"))
            p.drawText(r.adjusted(10, 0, 0, 0), Qt.AlignVCenter | Qt.AlignLeft, text)
        p.setPen(QColor("#111215"))
        p.drawLine(HEADER_W - 1, 0, HEADER_W - 1, self.height())


class Timeline(QWidget):
    """Headers plus view, as one widget."""

    def __init__(self, model: EditorModel, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.view = TimelineView(model)
        self.headers = TrackHeaders(self.view)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.headers)
        lay.addWidget(self.view, 1)


def audio_extensions() -> tuple[str, ...]:
    return (".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".opus", ".wma", ".aiff", ".aif",
            ".mp4", ".mov", ".mkv", ".webm")


def is_media(path: str | Path) -> bool:
    return Path(path).suffix.lower() in audio_extensions()
