"""Transport bar under the viewer: jump, step, play, timecode, A/B and mouth zoom toggles."""
from __future__ import annotations

from PySide6.QtCore import QSize
from PySide6.QtWidgets import QFrame, QHBoxLayout, QToolButton

from .. import theme
from ..model.editor import EditorModel
from .playback import Playback
from ..widgets import elided, label


def tool(icon_name: str, tip: str, checkable: bool = False) -> QToolButton:
    b = QToolButton()
    b.setIcon(theme.icon(icon_name))
    b.setIconSize(QSize(20, 20))
    b.setToolTip(tip)
    b.setCheckable(checkable)
    theme.set_role(b, "transport")
    return b


class TransportBar(QFrame):
    def __init__(self, model: EditorModel, playback: Playback, parent=None) -> None:
        super().__init__(parent)
        theme.set_role(self, "toolbar")
        self.model, self.playback = model, playback
        self.start_btn = tool("to-start", "Go to start (Home)")
        self.back_btn = tool("step-back", "Previous frame (←)")
        self.play_btn = tool("play", "Play / pause (Space)")
        self.play_btn.setIconSize(QSize(26, 26))
        self.play_btn.setObjectName("playButton")
        self.fwd_btn = tool("step-forward", "Next frame (→)")
        self.end_btn = tool("to-end", "Go to end (End)")
        self.loop_btn = tool("loop", "Loop playback", checkable=True)
        self.ab_btn = tool("ab", "A/B: show the original frame (\\)", checkable=True)
        self.ab_btn.setObjectName("abToggle")
        self.zoom_btn = tool("mouth-zoom", "Zoom to the mouth (Z)", checkable=True)
        self.zoom_btn.setObjectName("mouthZoom")
        self.timecode = label("00:00:00:00", "timecode")
        self.timecode.setObjectName("timecode")
        self.total = label("/ 00:00:00:00", "caption")
        self.rate = label("", "badge")
        self.rate.setVisible(False)
        self.info = elided("", "caption")        # status text shortens; it never widens the window
        self.info.setObjectName("transportInfo")

        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 4, 10, 4)
        lay.setSpacing(4)
        lay.addWidget(self.timecode)
        lay.addWidget(self.total)
        lay.addSpacing(8)
        lay.addWidget(self.rate)
        lay.addStretch(1)
        for b in (self.start_btn, self.back_btn, self.play_btn, self.fwd_btn, self.end_btn):
            lay.addWidget(b)
        lay.addStretch(1)
        lay.addWidget(self.info)
        for b in (self.loop_btn, self.ab_btn, self.zoom_btn):
            lay.addWidget(b)

        self.start_btn.clicked.connect(lambda: model.set_playhead(0))
        self.end_btn.clicked.connect(lambda: model.set_playhead(model.duration - 1))
        self.back_btn.clicked.connect(lambda: model.step(-1))
        self.fwd_btn.clicked.connect(lambda: model.step(1))
        self.play_btn.clicked.connect(playback.toggle)
        self.loop_btn.toggled.connect(lambda on: setattr(playback, "loop", on))
        model.events.playhead.connect(lambda e: self.update_time())
        model.events.duration.connect(lambda e: self.update_time())
        playback.state_changed.connect(self._playing)
        playback.rate_changed.connect(self._rate)
        self.update_time()

    def update_time(self) -> None:
        m = self.model
        self.timecode.setText(m.timecode(m.playhead))
        self.total.setText(f"/ {m.timecode(m.duration)}")

    def _playing(self, on: bool) -> None:
        self.play_btn.setIcon(theme.icon("pause" if on else "play"))

    def _rate(self, rate: int) -> None:
        self.rate.setVisible(rate not in (0, 1))
        self.rate.setText(f"{'◀◀' if rate < 0 else '▶▶'} {abs(rate)}×")
