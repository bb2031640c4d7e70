"""Wizard step 2, Prepare: a progress bar per stage with cancel, then the diagnostic pictures (and,
when the clip showed several faces, which one was prepared and why)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from PySide6.QtCore import Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QGridLayout, QPushButton, QWidget

from speech2lip.core.jobs import Progress
from speech2lip.core.project import Project

from .. import theme
from ..errors import show_error
from ..model.face_pick import AUTO
from ..widgets import ImageView, StageRow, hbox, label, panel, vbox
from ..worker import HIGH, Job

STAGES = [
    ("probe", "Reading the clip"),
    ("faces", "Tracking the face"),
    ("pose", "Fitting head poses"),
    ("frames", "Caching working frames"),
    ("mouths", "Warping mouths to canonical"),
    ("audio", "Speech features"),
    ("diagnostics", "Diagnostic pictures"),
]
PICTURES = [
    ("landmarks.png", "Face landmarks"),
    ("canonical.png", "Canonical frame and mouth box"),
    ("motion_before.png", "Motion before warping"),
    ("motion_after.png", "Motion after canonical warping"),
]


class PreparePage(QWidget):
    prepared = Signal(str)          # project folder
    back_requested = Signal()
    continue_requested = Signal()

    def __init__(self, ctx, parent=None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.job: Optional[Job] = None
        self.project: Optional[Project] = None

        stages, st_lay = panel()
        self.heading = label("Preparing", "heading")
        st_lay.addWidget(self.heading)
        self.rows: dict[str, StageRow] = {}
        for key, title in STAGES:
            self.rows[key] = StageRow(title)
            st_lay.addWidget(self.rows[key])
        self.cancel_btn = QPushButton(theme.icon("stop"), " Cancel")
        self.cancel_btn.setObjectName("cancelPrepare")
        theme.set_role(self.cancel_btn, "danger")
        self.cancel_btn.clicked.connect(self.cancel)
        self.back_btn = QPushButton("◂  Back to import")
        self.back_btn.clicked.connect(self.back_requested)
        self.next_btn = QPushButton("Continue to training  ▸")
        self.next_btn.setObjectName("toTraining")
        theme.set_role(self.next_btn, "primary")
        self.next_btn.clicked.connect(self.continue_requested)
        self.summary = label("", "caption", wrap=True)
        st_lay.addWidget(self.summary)
        st_lay.addLayout(hbox(self.back_btn, None, self.cancel_btn, self.next_btn))

        diag, diag_lay = panel()
        diag_lay.addWidget(label("Diagnostics", "heading"))
        diag_lay.addWidget(label("Check that the landmarks sit on the face, the mouth box covers lips and jaw, "
                                 "and that after warping the motion is left on the lips and eyes.",
                                 "caption", wrap=True))
        grid = QGridLayout()
        grid.setSpacing(10)
        self.pictures: dict[str, ImageView] = {}
        for i, (name, caption) in enumerate(PICTURES):
            v = ImageView("appears when preparing is done", min_size=160)
            v.set_caption(caption)
            v.set_enlargeable()
            self.pictures[name] = v
            grid.addWidget(v, i // 2, i % 2)
        self.faces_view = ImageView("", min_size=160)      # only when the clip showed several faces
        self.faces_view.set_caption("Faces found, and the one prepared")
        self.faces_view.set_enlargeable()
        self.faces_view.setVisible(False)
        grid.addWidget(self.faces_view, 0, 2, 2, 1)
        diag_lay.addLayout(grid, 1)

        lay = vbox(stages, diag, spacing=14, margins=18)
        lay.setStretch(1, 1)
        self.setLayout(lay)
        self._set_idle()

    # --- running ------------------------------------------------------------------------------
    def start(self, video: str, project_dir: str, size: int = 256, face: str = AUTO,
              tracker: str = "facemesh") -> Job:
        """face: prepare's choice among several faces (a number from the import page, or Auto);
        tracker: a core.prepare.tracking backend name."""
        from speech2lip.core.prepare.job import prepare

        self.project = None
        for row in self.rows.values():
            row.set_state("pending", 0.0, "")
        for v in self.pictures.values():
            v.set_image(None)
        self.faces_view.setVisible(False)
        self.heading.setText(f"Preparing {Path(video).name}")
        self.summary.setText(f"Into {project_dir}")
        job = Job("prepare", prepare, video, project_dir, size=size, face=face, tracker=tracker)
        job.progress.connect(self._progress)
        job.succeeded.connect(self._done)
        job.failed.connect(self._failed)
        job.cancelled.connect(self._cancelled)
        self.job = job
        self.cancel_btn.setEnabled(True)
        self.cancel_btn.setVisible(True)
        self.next_btn.setEnabled(False)
        self.back_btn.setEnabled(False)
        return self.ctx.engine.submit(job, HIGH)

    def cancel(self) -> None:
        if self.job is not None and self.job.is_active:
            self.job.cancel()
            self.cancel_btn.setEnabled(False)
            self.summary.setText("Cancelling…")

    @property
    def running(self) -> bool:
        return self.job is not None and self.job.is_active

    def _progress(self, p: Progress) -> None:
        keys = [k for k, _ in STAGES]
        if p.stage not in self.rows:
            return
        idx = keys.index(p.stage)
        for k in keys[:idx]:
            if self.rows[k].state != "done":
                self.rows[k].set_state("done", message="")
        frac = p.fraction if p.total else None
        msg = f"{p.done} / {p.total}" if p.total > 1 else (p.message or "")
        self.rows[p.stage].set_state("running", frac, msg)

    def _done(self, project: Project) -> None:
        for row in self.rows.values():
            row.set_state("done", message="")
        self.job = None
        self.show_project(project)
        self.prepared.emit(str(project.root))

    def _failed(self, exc: BaseException, tb: str) -> None:
        self._mark_running("failed")
        self.job = None
        self._set_idle()
        self.summary.setText("Preparing stopped. Nothing was written to the project folder.")
        show_error(self.window(), exc, tb, context="Preparing the clip failed.")

    def _cancelled(self) -> None:
        self._mark_running("cancelled")
        self.job = None
        self._set_idle()
        self.summary.setText("Cancelled. Nothing was written to the project folder.")

    def _mark_running(self, state: str) -> None:
        for row in self.rows.values():
            if row.state == "running":
                row.set_state(state)

    def _set_idle(self) -> None:
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.setVisible(False)
        self.back_btn.setEnabled(True)
        self.next_btn.setEnabled(self.project is not None)

    # --- showing a prepared project ------------------------------------------------------------
    def show_project(self, project: Project) -> None:
        self.project = project
        self.heading.setText(f"Prepared: {project.manifest.source.get('name', project.root.name)}")
        for row in self.rows.values():
            row.set_state("done", message="")
        for name, view in self.pictures.items():
            path = project.diagnostics / name
            view.set_image(QImage(str(path)) if path.is_file() else None)
            if not path.is_file():
                view.set_empty_text(f"{name} is missing")
        several = project.faces_picture.is_file()
        self.faces_view.set_image(QImage(str(project.faces_picture)) if several else None)
        self.faces_view.setVisible(several)
        st = project.manifest.stats
        parts = [f"{project.n_frames} frames at {project.fps:g} fps",
                 f"face in {100 * st.get('face_coverage', 0):.0f}% of frames"]
        if "residual_mean_px" in st:
            parts.append(f"pose fit residual {st['residual_mean_px']:.2f} px")
        if "prepare_seconds" in st:
            parts.append(f"prepared in {st['prepare_seconds']:.1f} s")
        if len(st.get("faces", [])) > 1:
            parts.append(f"prepared {st['face_choice']['reason']}")
        warn = "".join(f"  ⚠ {w}" for w in st.get("warnings", []))
        self.summary.setText(" · ".join(parts) + warn)
        self._set_idle()
