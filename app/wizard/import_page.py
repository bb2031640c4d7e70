"""Wizard step 1, Import: the clip's first frame with the face box, its facts and quality warnings,
and, when the clip shows several faces, their thumbnails to choose the one to prepare."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (QButtonGroup, QComboBox, QFileDialog, QGridLayout, QHBoxLayout, QLineEdit,
                               QPushButton, QToolButton, QWidget)

from .. import theme
from ..errors import show_error
from .inspect_clip import ClipReport, inspect_clip
from ..model.face_pick import AUTO_TEXT, FacePick
from ..model.formats import duration_text
from ..widgets import ImageView, hbox, label, panel, vbox
from ..worker import HIGH, Job


def unique_folder(base: Path, stem: str) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem).strip("._") or "project"
    path, n = base / safe, 2
    while path.exists():
        path, n = base / f"{safe}-{n}", n + 1
    return path


FACE_ICON = 64
CHOSEN, OTHER = QColor("#4fc37a"), QColor("#f0b429")


class ImportPage(QWidget):
    prepare_requested = Signal(str, str, int, str, str)   # video, project folder, working size, face, tracker
    inspected = Signal(object)                        # ClipReport

    def __init__(self, ctx, parent=None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.report: Optional[ClipReport] = None
        self.pick = FacePick()
        self._job: Optional[Job] = None

        self.view = ImageView("Choose or drop a clip to start.", min_size=320)
        self.view.setObjectName("importPreview")

        facts, facts_lay = panel()
        facts_lay.addWidget(label("Clip", "heading"))
        grid = QGridLayout()
        grid.setHorizontalSpacing(16)
        grid.setVerticalSpacing(6)
        self.facts: dict[str, object] = {}
        for r, key in enumerate(["File", "Duration", "Frame rate", "Resolution", "Audio", "Face"]):
            grid.addWidget(label(key, "caption"), r, 0)
            v = label("—", "value")
            v.setTextInteractionFlags(Qt.TextSelectableByMouse)
            grid.addWidget(v, r, 1)
            self.facts[key] = v
        grid.setColumnStretch(1, 1)
        facts_lay.addLayout(grid)

        warn, self._warn_lay = panel()
        self.warn_panel = warn
        self.warn_title = label("Checks", "heading")
        self._warn_lay.addWidget(self.warn_title)
        self.warn_text = label("", wrap=True)
        self.warn_text.setTextFormat(Qt.RichText)
        self._warn_lay.addWidget(self.warn_text)

        faces, faces_lay = panel()
        self.faces_panel = faces
        faces_lay.addWidget(label("Faces", "heading"))
        self.faces_text = label("", "caption", wrap=True)
        faces_lay.addWidget(self.faces_text)
        self.face_row = QHBoxLayout()
        self.face_row.setSpacing(6)
        faces_lay.addLayout(self.face_row)
        self.face_group = QButtonGroup(self)
        self.face_group.setExclusive(True)
        self.face_group.idClicked.connect(self._face_clicked)
        self.face_buttons: dict[int, QToolButton] = {}      # 0: Auto, then the face numbers
        faces.setVisible(False)

        dest, dest_lay = panel()
        dest_lay.addWidget(label("Project", "heading"))
        self.folder = QLineEdit()
        self.folder.setObjectName("projectFolder")
        self.folder.setToolTip("The project folder; it must be new or empty.")
        browse = QToolButton()
        browse.setIcon(theme.icon("folder"))
        browse.setToolTip("Choose where the project is stored")
        browse.clicked.connect(self._browse)
        captions = [label(t, "caption") for t in ("Folder", "Working size", "Face tracker")]
        width = max(c.sizeHint().width() for c in captions)
        for c in captions:                       # one column of captions: the fields line up
            c.setMinimumWidth(width)
        dest_lay.addLayout(hbox(captions[0], self.folder, browse))
        self.size = QComboBox()
        self.size.addItem("256 × 256 — fast, works on any computer", 256)
        self.size.addItem("512 × 512 — sharper, wants a GPU", 512)
        dest_lay.addLayout(hbox(captions[1], self.size, None))
        self.tracker = QComboBox()
        self.tracker.setObjectName("trackerCombo")
        from speech2lip.core.prepare.tracking import LABELS, availability

        for i, (name, why) in enumerate(availability().items()):
            self.tracker.addItem(LABELS[name], name)
            if why is not None:                  # shown, greyed out, with what it needs
                self.tracker.model().item(i).setEnabled(False)
                self.tracker.setItemData(i, why, Qt.ToolTipRole)
        self.tracker.setToolTip("Which face tracker finds the lips; the built-in one needs nothing extra.")
        dest_lay.addLayout(hbox(captions[2], self.tracker, None))

        self.prepare_btn = QPushButton("Prepare  ▸")
        self.prepare_btn.setObjectName("prepareButton")
        theme.set_role(self.prepare_btn, "primary")
        self.prepare_btn.setEnabled(False)
        self.prepare_btn.clicked.connect(self._prepare)
        self.other_btn = QPushButton(theme.icon("video-add"), " Choose another clip…")
        self.other_btn.clicked.connect(self._choose)
        self.status = label("", "caption")

        right = vbox(facts, warn, faces, dest, None, self.status, hbox(self.other_btn, None, self.prepare_btn),
                     spacing=12)
        right_w = QWidget()
        right_w.setLayout(right)
        right_w.setFixedWidth(430)
        self.setLayout(hbox(self.view, right_w, spacing=18, margins=18))

    # --- loading ------------------------------------------------------------------------
    def load_clip(self, path: str | Path) -> Job:
        path = Path(path)
        if self._job is not None and self._job.is_active:
            self._job.cancel()
        self.report = None
        self._show_faces([])
        self.prepare_btn.setEnabled(False)
        self.view.set_image(None)
        self.view.set_boxes([])
        self.view.set_empty_text(f"Looking at {path.name}…")
        self.facts["File"].setText(path.name)
        for k in ("Duration", "Frame rate", "Resolution", "Audio", "Face"):
            self.facts[k].setText("…")
        self.warn_text.setText("")
        self.status.setText(f"Inspecting {path.name}…")
        self.folder.setText(str(unique_folder(self.ctx.settings.projects_dir(), path.stem)))
        job = Job("inspect", inspect_clip, path)
        job.succeeded.connect(self._show_report)
        job.failed.connect(self._failed)
        self._job = job
        return self.ctx.io.submit(job, HIGH, slot="inspect")

    def _failed(self, exc: BaseException, tb: str) -> None:
        self.status.setText("")
        self.view.set_empty_text("This file cannot be used.")
        show_error(self.window(), exc, tb)

    def _show_report(self, r: ClipReport) -> None:
        self.report = r
        info = r.info
        self.view.set_image(r.face_frame)
        self._show_faces(r.faces)
        if r.face_box and not r.faces:
            x0, y0, x1, y1 = r.face_box
            self.view.set_boxes([(QRectF(x0, y0, x1 - x0, y1 - y0), CHOSEN, "face")])
        self.facts["Duration"].setText(duration_text(info.n_frames, info.fps))
        self.facts["Frame rate"].setText(f"{info.fps:.3g} fps")
        self.facts["Resolution"].setText(f"{info.width} × {info.height}" +
                                         (f"  (rotated {info.rotation}°)" if info.rotation else ""))
        self.facts["Audio"].setText(f"yes, {info.audio_rate} Hz" if info.has_audio else "none")
        self.facts["Face"].setText("not found" if r.face_box is None else
                                   f"found in {100 * r.coverage:.0f}% of {r.samples} sampled frames")
        if r.warnings:
            rows = "".join(f"<p style='color:#f0b429'>⚠ {w}</p>" for w in r.warnings)
        else:
            rows = "<p style='color:#4fc37a'>✓ Good clip: a face throughout, speech, enough length.</p>"
        self.warn_text.setText(rows)
        self.status.setText("")
        self.prepare_btn.setEnabled(r.face_box is not None)
        self.inspected.emit(r)

    # --- the faces, when there are several ---------------------------------------------------
    def _show_faces(self, faces: list) -> None:
        self.pick.set_faces(faces)
        for b in self.face_buttons.values():
            self.face_group.removeButton(b)
        while self.face_row.count():                 # the last clip's buttons and stretch
            item = self.face_row.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.face_buttons = {}
        self.faces_panel.setVisible(self.pick.offered)
        if not self.pick.offered:
            return
        self._face_button(0, AUTO_TEXT.replace(": ", ":\n"), None, "Prepare the face whose mouth follows the speech")
        for f in faces:
            self._face_button(f.number, f"{f.number} · {f.position}", f.thumbnail,
                              f"Prepare face {f.number} ({f.position}), seen in {100 * f.share:.0f}% of the "
                              "sampled frames")
        self.face_row.addStretch(1)
        self._face_clicked(0)

    def _face_button(self, key: int, text: str, thumbnail, tip: str) -> None:
        b = QToolButton()
        b.setObjectName(f"face{key}")
        b.setCheckable(True)
        b.setText(text)
        b.setToolTip(tip)
        b.setToolButtonStyle(Qt.ToolButtonTextUnderIcon)
        b.setIconSize(QSize(FACE_ICON, FACE_ICON))
        if thumbnail is not None:
            b.setIcon(QIcon(QPixmap.fromImage(theme.qimage(thumbnail))))
        else:
            b.setMinimumHeight(FACE_ICON + 24)
        self.face_group.addButton(b, key)
        self.face_row.addWidget(b)
        self.face_buttons[key] = b

    def _face_clicked(self, key: int) -> None:
        self.pick.pick(key or None)
        self.face_buttons[key].setChecked(True)
        self.faces_text.setText(self.pick.describe())
        boxes = []
        for f in self.pick.faces:
            if f.box is not None:
                x0, y0, x1, y1 = f.box
                colour = CHOSEN if f.number == self.pick.chosen else OTHER
                boxes.append((QRectF(x0, y0, x1 - x0, y1 - y0), colour, str(f.number)))
        self.view.set_boxes(boxes)

    # --- actions --------------------------------------------------------------------------
    def _browse(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Folder for new projects", str(self.ctx.settings.projects_dir()))
        if d and self.report is not None:
            self.ctx.settings.set_projects_dir(d)
            self.folder.setText(str(unique_folder(Path(d), self.report.path.stem)))

    def _choose(self) -> None:
        self.window().choose_clip()

    def _prepare(self) -> None:
        if self.report is None:
            return
        self.prepare_requested.emit(str(self.report.path), self.folder.text().strip(), int(self.size.currentData()),
                                    self.pick.face, str(self.tracker.currentData()))
