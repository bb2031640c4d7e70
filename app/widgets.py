"""Small widgets shared by the pages: an image view, panels, stage rows, labels."""
from __future__ import annotations

from typing import Optional

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen
from PySide6.QtWidgets import (QFrame, QHBoxLayout, QLabel, QProgressBar, QSizePolicy, QVBoxLayout,
                               QWidget)

from . import theme


def label(text: str = "", role: Optional[str] = None, wrap: bool = False) -> QLabel:
    w = QLabel(text)
    if role:
        theme.set_role(w, role)
    w.setWordWrap(wrap)
    return w


class ElidedLabel(QLabel):
    """One line that shortens itself ("…") to the width it is given instead of widening the window.

    The whole text stays in the tooltip. Status lines change while playing; a plain
    QLabel grows its minimum width with them and pushes the window wider.
    """

    def __init__(self, text: str = "", parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self._full = ""
        self.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Preferred)   # wants its text; may get less
        self.setMinimumWidth(40)
        self.setText(text)

    def setText(self, text: str) -> None:     # noqa: N802 (Qt's name)
        self._full = text
        self.setToolTip(text if text else "")
        self._elide()

    def full_text(self) -> str:
        return self._full

    def text(self) -> str:                     # the whole text, as set; the screen may show less
        return self._full

    def shown_text(self) -> str:
        return super().text()

    def minimumSizeHint(self) -> QSize:        # noqa: N802
        return QSize(40, super().minimumSizeHint().height())

    def sizeHint(self) -> QSize:               # noqa: N802
        return QSize(min(self.fontMetrics().horizontalAdvance(self._full) + 8, 420), super().sizeHint().height())

    def resizeEvent(self, event) -> None:      # noqa: N802
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        shown = self.fontMetrics().elidedText(self._full, Qt.ElideRight, max(self.width() - 2, 10))
        if shown != super().text():
            super().setText(shown)


def elided(text: str = "", role: Optional[str] = None) -> ElidedLabel:
    w = ElidedLabel(text)
    if role:
        theme.set_role(w, role)
    return w


def panel(role: str = "panel", layout: str = "v", margins: int = 12, spacing: int = 8) -> tuple[QFrame, QVBoxLayout]:
    frame = QFrame()
    theme.set_role(frame, role)
    lay = QVBoxLayout(frame) if layout == "v" else QHBoxLayout(frame)
    lay.setContentsMargins(margins, margins, margins, margins)
    lay.setSpacing(spacing)
    return frame, lay


class ImageView(QWidget):
    """Draws one image scaled to fit (aspect kept), with optional boxes, a badge and a zoom window."""

    def __init__(self, empty_text: str = "", parent: Optional[QWidget] = None, min_size: int = 120) -> None:
        super().__init__(parent)
        self._img: Optional[QImage] = None
        self._empty = empty_text
        self._badge = ""
        self._caption = ""
        self._boxes: list[tuple[QRectF, QColor, str]] = []
        self._zoom: Optional[QRectF] = None
        self.setMinimumSize(min_size, min_size * 3 // 4)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.setAttribute(Qt.WA_OpaquePaintEvent)

    def sizeHint(self) -> QSize:
        return QSize(320, 240)

    def set_enlargeable(self, on: bool = True) -> None:
        """A click opens the picture at its full size in a window of its own."""
        self.enlargeable = on
        self.setCursor(Qt.PointingHandCursor if on else Qt.ArrowCursor)
        self.setToolTip("Click to open at full size" if on else "")

    def mouseReleaseEvent(self, event) -> None:     # noqa: N802
        if getattr(self, "enlargeable", False) and self._img is not None and event.button() == Qt.LeftButton:
            self.enlarged = open_full_size(self._img, self._caption or "Picture", self.window())
        super().mouseReleaseEvent(event)

    @property
    def image(self) -> Optional[QImage]:
        return self._img

    def set_image(self, img) -> None:
        if isinstance(img, np.ndarray):
            img = theme.qimage(img)
        self._img = img
        self.update()

    def set_empty_text(self, text: str) -> None:
        self._empty = text
        self.update()

    def set_badge(self, text: str) -> None:
        self._badge = text
        self.update()

    def set_caption(self, text: str) -> None:
        self._caption = text
        self.update()

    def set_boxes(self, boxes: list[tuple[QRectF, QColor, str]]) -> None:
        self._boxes = boxes
        self.update()

    def set_zoom(self, rect: Optional[QRectF]) -> None:
        """Show only `rect` (image pixels) of the image, e.g. the mouth."""
        self._zoom = rect
        self.update()

    def target_rect(self) -> QRectF:
        if self._img is None:
            return QRectF()
        src = self._zoom or QRectF(0, 0, self._img.width(), self._img.height())
        r = QRectF(self.rect()).adjusted(4, 4, -4, -4)
        s = min(r.width() / src.width(), r.height() / src.height())
        w, h = src.width() * s, src.height() * s
        return QRectF(r.center().x() - w / 2, r.center().y() - h / 2, w, h)

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#0d0e10"))
        if self._img is None:
            p.setPen(QColor("#6b6e77"))
            p.drawText(self.rect().adjusted(12, 12, -12, -12), Qt.AlignCenter | Qt.TextWordWrap, self._empty)
            return
        p.setRenderHint(QPainter.SmoothPixmapTransform, True)
        src = self._zoom or QRectF(0, 0, self._img.width(), self._img.height())
        dst = self.target_rect()
        p.drawImage(dst, self._img, src)
        sx, sy = dst.width() / src.width(), dst.height() / src.height()
        for rect, colour, text in self._boxes:
            r = QRectF(dst.x() + (rect.x() - src.x()) * sx, dst.y() + (rect.y() - src.y()) * sy,
                       rect.width() * sx, rect.height() * sy)
            p.setPen(QPen(colour, 2))
            p.setBrush(Qt.NoBrush)
            p.drawRect(r)
            if text:
                self._tag(p, QPointF(r.x(), r.y() - 2), text, colour)
        if self._badge:
            self._tag(p, QPointF(dst.x() + 8, dst.y() + 24), self._badge, QColor(theme.ACCENT))
        if self._caption:
            f = p.font()
            f.setPointSizeF(9)
            p.setFont(f)
            p.setPen(QColor("#d9dadf"))
            box = QRectF(dst.x(), dst.bottom() - 22, dst.width(), 22)
            p.fillRect(box, QColor(0, 0, 0, 150))
            text = p.fontMetrics().elidedText(self._caption, Qt.ElideRight, int(box.width()) - 8)
            p.drawText(box, Qt.AlignCenter, text)

    @staticmethod
    def _tag(p: QPainter, at: QPointF, text: str, colour: QColor) -> None:
        f = QFont(p.font())
        f.setPointSizeF(8.5)
        f.setBold(True)
        p.setFont(f)
        w = p.fontMetrics().horizontalAdvance(text) + 10
        r = QRectF(at.x(), at.y() - 16, w, 16)
        p.fillRect(r, colour)
        p.setPen(QColor("#ffffff"))
        p.drawText(r, Qt.AlignCenter, text)


class StageRow(QWidget):
    """One stage of a job: a state mark, a name, a progress bar and a short message."""

    def __init__(self, title: str, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 2, 0, 2)
        self.mark = QLabel("○")
        self.mark.setFixedWidth(18)
        self.title = label(title)
        self.title.setMinimumWidth(220)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setValue(0)
        self.bar.setTextVisible(False)
        self.msg = elided("", "caption")
        self.msg.setMinimumWidth(200)
        lay.addWidget(self.mark)
        lay.addWidget(self.title)
        lay.addWidget(self.bar, 1)
        lay.addWidget(self.msg)
        self.state = "pending"

    def set_state(self, state: str, fraction: Optional[float] = None, message: Optional[str] = None) -> None:
        self.state = state
        marks = {"pending": ("○", "#5f626b"), "running": ("●", theme.ACCENT), "done": ("✓", "#4fc37a"),
                 "failed": ("✕", "#ff5a5f"), "cancelled": ("–", "#f0b429")}
        ch, colour = marks[state]
        self.mark.setText(ch)
        self.mark.setStyleSheet(f"color: {colour}; font-weight: bold;")
        if state == "done":
            fraction = 1.0
        if fraction is not None:
            self.bar.setValue(int(round(1000 * min(max(fraction, 0.0), 1.0))))
        self.bar.setProperty("state", state)
        theme.restyle(self.bar)
        if message is not None:
            self.msg.setText(message)


def open_full_size(img: QImage, title: str, parent: Optional[QWidget] = None):
    """A non-modal window showing `img` at 100 %, scrollable when larger than the screen."""
    from PySide6.QtGui import QPixmap
    from PySide6.QtWidgets import QDialog, QScrollArea

    dlg = QDialog(parent)
    dlg.setObjectName("fullSizePicture")
    dlg.setWindowTitle(title)
    dlg.setAttribute(Qt.WA_DeleteOnClose)
    pic = QLabel()
    pic.setPixmap(QPixmap.fromImage(img))
    area = QScrollArea()
    area.setWidget(pic)
    area.setAlignment(Qt.AlignCenter)
    lay = QVBoxLayout(dlg)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.addWidget(area)
    dlg.resize(min(img.width() + 24, 1400), min(img.height() + 24, 900))
    dlg.show()
    return dlg


def hline() -> QFrame:
    line = QFrame()
    line.setFrameShape(QFrame.HLine)
    line.setStyleSheet("color: #2c2e34;")
    return line


def _box(lay, widgets, spacing: int, margins: int):
    """Fill a box layout: widgets and layouts in order, None for a stretch."""
    lay.setSpacing(spacing)
    lay.setContentsMargins(margins, margins, margins, margins)
    for w in widgets:
        if isinstance(w, QWidget):
            lay.addWidget(w)
        elif w is None:
            lay.addStretch(1)
        else:
            lay.addLayout(w)
    return lay


def vbox(*widgets, spacing: int = 8, margins: int = 0) -> QVBoxLayout:
    return _box(QVBoxLayout(), widgets, spacing, margins)


def hbox(*widgets, spacing: int = 8, margins: int = 0) -> QHBoxLayout:
    return _box(QHBoxLayout(), widgets, spacing, margins)
