"""The viewer: the dubbed frame at the playhead, an A/B toggle against the original, zoom to the mouth."""
from __future__ import annotations

from typing import Optional

import numpy as np
from PySide6.QtCore import QRectF, Signal
from PySide6.QtWidgets import QVBoxLayout, QWidget

from speech2lip.core.project import Project

from ..model.editor import EditorModel
from .render_service import PreviewService
from ..widgets import ImageView

MOUTH_MARGIN = 2.6       # zoom window width over the lips' width: lips, chin and nostrils
HOLD_FRAMES = 8          # while playing, keep the last dubbed frame this long before showing the original


def mouth_rect(project: Project, source_frame: int) -> QRectF:
    """The mouth region in full-resolution source pixels, from the frame's lips (or the canonical box)."""
    from speech2lip.core.prepare.faces import LIPS

    x0, y0, side = project.manifest.crop[:3]
    s = side / project.size
    lm = np.asarray(project.array("landmarks")[source_frame][LIPS, :2], np.float64)
    if np.isfinite(lm).all():
        (ax, ay), (bx, by) = lm.min(0), lm.max(0)
        cx, cy, w = (ax + bx) / 2, (ay + by) / 2, (bx - ax) * MOUTH_MARGIN
    else:
        bx0, by0, bw, bh = project.manifest.mouth_box
        cx, cy, w = bx0 + bw / 2, by0 + bh / 2, max(bw, bh) * 1.2
    h = w * 0.75
    return QRectF(x0 + (cx - w / 2) * s, y0 + (cy - h / 2) * s, w * s, h * s)


class PreviewViewer(QWidget):
    shown = Signal(int, str)        # frame, what was shown: "dubbed", "original", "held"

    def __init__(self, service: PreviewService, model: EditorModel, project: Project,
                 parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.service, self.model, self.project = service, model, project
        self.compare = False        # A/B: True shows the original
        self.mouth_zoom = False
        self.playing = False
        self.status = ""
        self.shown_frame: Optional[int] = None
        self.shown_kind = ""
        self.view = ImageView("", min_size=240)
        self.view.setObjectName("previewImage")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.view)
        model.events.playhead.connect(lambda e: self.show_frame(e.frame))
        model.events.pending_pose.connect(self._pose_changed)
        model.events.keyframes.connect(lambda e: self._pose_changed(None))
        model.events.clips.connect(lambda e: self.refresh())
        model.events.sources.connect(lambda e: self.refresh())
        service.frame_ready.connect(self._ready)
        service.state_changed.connect(self.set_status)

    def set_compare(self, on: bool) -> None:
        self.compare = on
        self.refresh()

    def set_mouth_zoom(self, on: bool) -> None:
        self.mouth_zoom = on
        self.refresh()

    def set_status(self, text: str) -> None:
        self.status = text
        self.refresh()

    def refresh(self) -> None:
        self.show_frame(self.model.playhead, force=True)

    def _pose_changed(self, _e) -> None:
        self.refresh()

    def _ready(self, frame: int) -> None:
        if frame == self.model.playhead:
            self.show_frame(frame, force=True)

    def show_frame(self, frame: int, force: bool = False) -> None:
        bg = int(self.model.background([frame])[0])
        if self.compare:
            img, kind, badge = self.service.original(frame), "original", "A · ORIGINAL"
        else:
            img = self.service.cached(frame)
            kind, badge = "dubbed", "B · DUBBED"
            if img is not None:
                self.service.fill_ahead()
            else:
                if (self.playing and self.shown_kind in ("dubbed", "held") and self.shown_frame is not None
                        and 0 <= frame - self.shown_frame <= HOLD_FRAMES):
                    # dropping frames: keep the last dubbed picture rather than flash the original
                    self.shown.emit(frame, "held")
                    self.shown_kind = "held"
                    return
                img, kind = self.service.original(frame), "original"
                # the service's "paused while training" holds only while training runs
                training = self.service.ctx.engine.has_running("train")
                badge = self.status if self.status and training else "RENDERING…"
                self.service.request(frame)      # the viewer asks; the service renders and says when
        self.view.set_image(img)
        self.view.set_badge(badge)
        self.view.set_zoom(mouth_rect(self.project, bg) if self.mouth_zoom else None)
        self.shown_frame, self.shown_kind = frame, kind
        self.shown.emit(frame, kind)
