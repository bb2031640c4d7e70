"""Inspector of the selected audio clip: where it sits, what part of the file plays, its gain."""
from __future__ import annotations

import math

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QGridLayout, QSlider, QVBoxLayout

from .. import theme
from ..model.editor import EditorModel
from ..widgets import label

GAIN_MIN_DB, GAIN_MAX_DB = -24, 12


class ClipPanel(QFrame):
    def __init__(self, model: EditorModel, parent=None) -> None:
        super().__init__(parent)
        theme.set_role(self, "panel")
        self.model = model
        lay = QVBoxLayout(self)
        lay.setContentsMargins(12, 10, 12, 12)
        lay.addWidget(label("Clip", "heading"))
        self.none = label("Select an audio clip on the timeline.", "caption", wrap=True)
        lay.addWidget(self.none)
        grid = QGridLayout()
        grid.setHorizontalSpacing(10)
        self.values = {}
        for r, key in enumerate(("File", "Starts at", "Length", "From file at")):
            grid.addWidget(label(key, "caption"), r, 0)
            self.values[key] = label("", "value")
            grid.addWidget(self.values[key], r, 1)
        self.gain = QSlider(Qt.Horizontal)
        self.gain.setObjectName("clipGain")
        self.gain.setRange(GAIN_MIN_DB, GAIN_MAX_DB)
        self.gain_label = label("", "caption")
        self.gain_label.setFixedWidth(56)
        grid.addWidget(label("Gain", "caption"), 4, 0)
        grid.addWidget(self.gain, 4, 1)
        grid.addWidget(self.gain_label, 4, 2)
        grid.setColumnStretch(1, 1)
        self.details = QFrame()
        self.details.setLayout(grid)
        lay.addWidget(self.details)
        self.gain.sliderReleased.connect(self._gain_released)
        self.gain.valueChanged.connect(lambda v: self.gain_label.setText(f"{v:+d} dB"))
        for name in ("selection", "clips"):
            getattr(model.events, name).connect(lambda e: self.refresh())
        self.refresh()

    def _selected(self):
        ids = [i for i in self.model.selection.clips]
        return self.model.clip(ids[0]) if len(ids) == 1 else None

    def _gain_released(self) -> None:
        c = self._selected()
        if c is not None:
            self.model.set_clip_gain(c.id, 10 ** (self.gain.value() / 20))

    def refresh(self) -> None:
        c = self._selected()
        self.none.setVisible(c is None)
        self.details.setVisible(c is not None)
        if c is None:
            return
        m = self.model
        self.values["File"].setText(c.name)
        self.values["File"].setToolTip(c.path)
        self.values["Starts at"].setText(m.timecode(c.start))
        self.values["Length"].setText(m.length_text(c.length))
        self.values["From file at"].setText(f"{c.src_in / m.fps:.2f} s")
        db = 20 * math.log10(c.gain) if c.gain > 0 else GAIN_MIN_DB
        self.gain.blockSignals(True)
        self.gain.setValue(int(round(db)))
        self.gain.blockSignals(False)
        self.gain_label.setText(f"{int(round(db)):+d} dB")
