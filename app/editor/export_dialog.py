"""The export dialog: range, size, quality, sound bitrate, output path; progress with cancel; "Show in folder"."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from PySide6.QtCore import QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (QButtonGroup, QComboBox, QDialog, QFileDialog, QGridLayout, QLineEdit,
                               QProgressBar, QPushButton, QRadioButton, QToolButton, QVBoxLayout)

from speech2lip.core.jobs import Progress
from speech2lip.core.project import Project

from .. import theme
from ..errors import show_error
from .export_job import AUDIO_BITRATES, DEFAULT_AUDIO_BITRATE, QUALITIES, ExportSettings, export
from ..model.editor import EditorModel
from ..widgets import hbox, label
from ..worker import HIGH, Job


def default_output(project: Project) -> Path:
    base = Path.home() / "Videos"
    base = base if base.is_dir() else project.exports
    stem, n = f"{project.root.name}_dub", 1
    path = base / f"{stem}.mp4"
    while path.exists():
        n += 1
        path = base / f"{stem}_{n}.mp4"
    return path


class ExportDialog(QDialog):
    exported = Signal(str)

    def __init__(self, parent, ctx, project: Project, model: EditorModel, checkpoint: Optional[str]) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export dubbed video")
        self.setObjectName("exportDialog")
        self.setMinimumWidth(560)
        self.ctx, self.project, self.model, self.checkpoint = ctx, project, model, checkpoint
        self.job: Optional[Job] = None
        self.output_path: Optional[Path] = None

        self.whole = QRadioButton(f"Whole timeline ({model.timecode(model.duration)})")
        a, b = model.range()
        has_range = model.in_point is not None or model.out_point is not None
        self.inout = QRadioButton(f"In to out ({model.timecode(a)} – {model.timecode(b - 1)})")
        self.inout.setEnabled(has_range)
        group = QButtonGroup(self)
        group.addButton(self.whole)
        group.addButton(self.inout)
        (self.inout if has_range else self.whole).setChecked(True)

        src = project.manifest.source
        self.size = QComboBox()
        self.size.setObjectName("exportSize")
        self.size.addItem(f"Source ({src['width']} × {src['height']})", "source")
        self.size.addItem("1080p (height 1080)", "1080p")
        self.size.addItem("720p (height 720)", "720p")
        self.quality = QComboBox()
        self.quality.setObjectName("exportQuality")
        for q in QUALITIES:
            self.quality.addItem(q, q)
        self.quality.setCurrentText("High")
        self.audio_bitrate = QComboBox()
        self.audio_bitrate.setObjectName("exportAudioBitrate")
        for kbps in AUDIO_BITRATES:
            self.audio_bitrate.addItem(f"{kbps} kb/s AAC", kbps)
        self.audio_bitrate.setCurrentIndex(AUDIO_BITRATES.index(DEFAULT_AUDIO_BITRATE))
        self.path = QLineEdit(str(default_output(project)))
        self.path.setObjectName("exportPath")
        browse = QToolButton()
        browse.setIcon(theme.icon("folder"))
        browse.clicked.connect(self._browse)

        grid = QGridLayout()
        grid.setHorizontalSpacing(12)
        grid.setVerticalSpacing(8)
        grid.addWidget(label("Range", "caption"), 0, 0)
        grid.addWidget(self.whole, 0, 1)
        grid.addWidget(self.inout, 1, 1)
        grid.addWidget(label("Size", "caption"), 2, 0)
        grid.addWidget(self.size, 2, 1)
        grid.addWidget(label("Quality", "caption"), 3, 0)
        grid.addWidget(self.quality, 3, 1)
        grid.addWidget(label("Sound", "caption"), 4, 0)
        grid.addWidget(self.audio_bitrate, 4, 1)
        grid.addWidget(label("Save as", "caption"), 5, 0)
        grid.addLayout(hbox(self.path, browse), 5, 1)
        grid.setColumnStretch(1, 1)

        self.bar = QProgressBar()
        self.bar.setObjectName("exportProgress")
        self.bar.setRange(0, 1000)
        self.bar.setValue(0)
        self.status = label("", "caption", wrap=True)
        self.export_btn = QPushButton(theme.icon("export"), " Export")
        self.export_btn.setObjectName("startExport")
        theme.set_role(self.export_btn, "primary")
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setObjectName("cancelExport")
        self.show_btn = QPushButton(theme.icon("folder"), " Show in folder")
        self.show_btn.setObjectName("showInFolder")
        self.show_btn.setVisible(False)
        self.export_btn.clicked.connect(self.start)
        self.cancel_btn.clicked.connect(self._cancel)
        self.show_btn.clicked.connect(self.show_in_folder)

        lay = QVBoxLayout(self)
        lay.setSpacing(12)
        lay.addWidget(label("Export", "heading"))
        lay.addLayout(grid)
        lay.addWidget(self.bar)
        lay.addWidget(self.status)
        lay.addLayout(hbox(self.show_btn, None, self.cancel_btn, self.export_btn))

    def settings(self) -> ExportSettings:
        start, stop = self.model.range() if self.inout.isChecked() else (0, self.model.duration)
        return ExportSettings(Path(self.path.text().strip()).expanduser(), start, stop,
                              self.size.currentData(), self.quality.currentData(),
                              int(self.audio_bitrate.currentData()))

    def start(self) -> Optional[Job]:
        if self.job is not None and self.job.is_active:
            return None
        s = self.settings()
        m = self.model
        # The preview's plan: the whole timeline's mix and keyframes; the export renders s.start..s.stop of it.
        self.job = Job("export", export, str(self.project.root), m.mix(), s, pose_track=m.pose_track(),
                       checkpoint=self.checkpoint)
        self.job.progress.connect(self._progress)
        self.job.succeeded.connect(self._done)
        self.job.failed.connect(self._failed)
        self.job.cancelled.connect(self._cancelled)
        for w in (self.whole, self.inout, self.size, self.quality, self.audio_bitrate, self.path, self.export_btn):
            w.setEnabled(False)
        self.status.setText("Waiting for the engine…" if self.ctx.engine.busy else "Starting…")
        self.show_btn.setVisible(False)
        return self.ctx.engine.submit(self.job, HIGH)

    def _progress(self, p: Progress) -> None:
        if p.total:
            frac = 0.95 * p.fraction if p.stage == "render" else 0.95 + 0.05 * p.fraction
            self.bar.setValue(int(1000 * frac))
        self.status.setText(p.message or p.stage)

    def _done(self, path) -> None:
        self.output_path = Path(path)
        self.bar.setValue(1000)
        self.status.setText(f"Saved {self.output_path}")
        self.show_btn.setVisible(True)
        self.cancel_btn.setText("Close")
        self.job = None
        self.exported.emit(str(path))

    def _failed(self, exc: BaseException, tb: str) -> None:
        self._reset("Export failed; nothing was written.")
        show_error(self, exc, tb, context="The export failed.")

    def _cancelled(self) -> None:
        self._reset("Cancelled; nothing was written.")

    def _reset(self, text: str) -> None:
        self.job = None
        self.bar.setValue(0)
        self.status.setText(text)
        for w in (self.whole, self.size, self.quality, self.audio_bitrate, self.path, self.export_btn):
            w.setEnabled(True)
        has_range = self.model.in_point is not None or self.model.out_point is not None
        self.inout.setEnabled(has_range)

    def _cancel(self) -> None:
        if self.job is not None and self.job.is_active:
            self.job.cancel()
            self.status.setText("Cancelling…")
        else:
            self.reject()

    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export as", self.path.text(), "MP4 video (*.mp4)")
        if path:
            self.path.setText(path if path.lower().endswith(".mp4") else path + ".mp4")

    def show_in_folder(self) -> None:
        if self.output_path is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.output_path.parent)))

    def reject(self) -> None:
        if self.job is not None and self.job.is_active:
            self.job.cancel()
        super().reject()
