"""Head pose: yaw, pitch and roll sliders, keyframes at the playhead, jumps between keyframes.

The sliders show the interpolated pose at the playhead. Moving one sets the
model's pending pose, which the viewer renders at once; "Set keyframe" stores it.
"""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QDoubleSpinBox, QFrame, QGridLayout, QPushButton, QSlider, QToolButton,
                               QVBoxLayout)

from .. import theme
from ..model.editor import EditorModel
from ..widgets import elided, hbox, label

AXES = (("yaw", "Yaw", "turn left / right"), ("pitch", "Pitch", "nod up / down"), ("roll", "Roll", "tilt"))
STEPS = 10        # slider steps per degree


class PosePanel(QFrame):
    def __init__(self, model: EditorModel, parent=None) -> None:
        super().__init__(parent)
        from speech2lip.core.dub.pose import LIMITS

        theme.set_role(self, "panel")
        self.model = model
        self._updating = False
        lay = QVBoxLayout(self)
        lay.setContentsMargins(12, 10, 12, 12)
        lay.setSpacing(8)
        lay.addWidget(label("Head pose", "heading"))
        self.where = elided("", "caption")
        lay.addWidget(self.where)
        grid = QGridLayout()
        grid.setHorizontalSpacing(8)
        self.sliders: dict[str, QSlider] = {}
        self.spins: dict[str, QDoubleSpinBox] = {}
        for r, ((key, name, tip), limit) in enumerate(zip(AXES, LIMITS)):
            s = QSlider(Qt.Horizontal)
            s.setObjectName(f"{key}Slider")
            s.setRange(int(-limit * STEPS), int(limit * STEPS))
            s.setToolTip(f"{name}: {tip}, ±{limit:.0f}°")
            sp = QDoubleSpinBox()
            sp.setRange(-limit, limit)
            sp.setDecimals(1)
            sp.setSingleStep(0.5)
            sp.setSuffix("°")
            sp.setFixedWidth(78)
            s.valueChanged.connect(lambda v, k=key: self._slider_moved(k, v / STEPS))
            sp.valueChanged.connect(lambda v, k=key: self._slider_moved(k, v))
            self.sliders[key], self.spins[key] = s, sp
            grid.addWidget(label(name), r, 0)
            grid.addWidget(s, r, 1)
            grid.addWidget(sp, r, 2)
        grid.setColumnStretch(1, 1)
        lay.addLayout(grid)

        self.key_btn = QPushButton(theme.icon("keyframe-add"), " Set keyframe")
        self.key_btn.setObjectName("setKeyframe")
        self.key_btn.setToolTip("Store this pose at the playhead (Ctrl+K)")
        theme.set_role(self.key_btn, "primary")
        self.key_btn.clicked.connect(lambda: self.model.set_keyframe())
        self.del_btn = QPushButton(theme.icon("trash"), "")
        self.del_btn.setToolTip("Delete the keyframe at the playhead")
        self.del_btn.clicked.connect(lambda: self.model.delete_keyframe(self.model.playhead))
        self.reset_btn = QPushButton("Reset")
        self.reset_btn.setToolTip("Back to the clip's own pose (0°) here")
        self.reset_btn.clicked.connect(lambda: self.model.set_pending_pose((0.0, 0.0, 0.0)))
        self.prev_btn = QToolButton()
        self.prev_btn.setText("◂◆")
        self.prev_btn.setToolTip("Previous keyframe")
        self.prev_btn.clicked.connect(lambda: self._jump(-1))
        self.next_btn = QToolButton()
        self.next_btn.setText("▸◆")
        self.next_btn.setToolTip("Next keyframe")
        self.next_btn.clicked.connect(lambda: self._jump(1))
        lay.addLayout(hbox(self.prev_btn, self.next_btn, None, self.reset_btn, self.del_btn))
        lay.addWidget(self.key_btn)          # its own row: "Update keyframe" is never clipped

        ev = model.events
        for name in ("playhead", "keyframes", "pending_pose"):
            getattr(ev, name).connect(lambda e: self.refresh())
        self.refresh()

    def _slider_moved(self, key: str, value: float) -> None:
        if self._updating:
            return
        pose = dict(zip(("yaw", "pitch", "roll"), self.model.preview_pose(self.model.playhead)))
        pose[key] = value
        self.model.set_pending_pose((pose["yaw"], pose["pitch"], pose["roll"]))

    def _jump(self, direction: int) -> None:
        keys = sorted(self.model.keyframes)
        here = self.model.playhead
        cands = [k for k in keys if (k > here if direction > 0 else k < here)]
        if cands:
            self.model.set_playhead(cands[0] if direction > 0 else cands[-1])

    def refresh(self) -> None:
        m = self.model
        pose = m.preview_pose(m.playhead)
        self._updating = True
        try:
            for (key, _, _), v in zip(AXES, pose):
                self.sliders[key].setValue(int(round(v * STEPS)))
                self.spins[key].setValue(v)
        finally:
            self._updating = False
        on_key = m.playhead in m.keyframes
        pending = m.pending_pose is not None
        self.key_btn.setText(" Update keyframe" if on_key else " Set keyframe")
        self.key_btn.setEnabled(pending or not on_key)
        self.del_btn.setEnabled(on_key)
        n = len(m.keyframes)
        state = "keyframe here" if on_key else ("interpolated" if n else "no keyframes: the clip's own pose")
        self.where.setText(f"At {m.timecode(m.playhead)} · {state}" + (" · unsaved change" if pending else ""))
