"""The evaluation report: run core.evaluation.evaluate with progress and cancel, then show report.html."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from PySide6.QtCore import QUrl, Qt
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QDialog, QProgressBar, QPushButton, QTextBrowser, QVBoxLayout

from speech2lip.core.jobs import Progress
from speech2lip.core.project import Project, report_html

from .. import theme
from ..errors import show_error
from ..widgets import hbox, label
from ..worker import HIGH, Job

STAGE_TEXT = {"load": "Loading the model", "calibrate": "Measuring the speaker's own sync",
              "render": "Rendering the held-out frames", "track": "Tracking lips",
              "metrics": "Computing metrics", "report": "Writing the report"}


def report_path(project: Project) -> Path:
    return project.report_path


class EvaluateDialog(QDialog):
    """Progress of one evaluation run; opens the report when it is written."""

    def __init__(self, parent, ctx, project: Project) -> None:
        super().__init__(parent)
        from speech2lip.core.evaluation.evaluate import evaluate

        self.setWindowTitle("Evaluating the model")
        self.setObjectName("evaluateDialog")
        self.setMinimumWidth(460)
        self.project = project
        self.msg = label("Waiting for the engine…")
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.cancel_btn = QPushButton("Cancel")
        theme.set_role(self.cancel_btn, "danger")
        lay = QVBoxLayout(self)
        lay.addWidget(label("Scoring the model against the real held-out frames and the baselines "
                            "(static mouth, nearest-audio retrieval).", "caption", wrap=True))
        lay.addWidget(self.msg)
        lay.addWidget(self.bar)
        lay.addLayout(hbox(None, self.cancel_btn))
        self.job = Job("evaluate", evaluate, str(project.root))
        self.job.progress.connect(self._progress)
        self.job.succeeded.connect(self._done)
        self.job.failed.connect(self._failed)
        self.job.cancelled.connect(self.reject)
        self.cancel_btn.clicked.connect(self.job.cancel)
        ctx.engine.submit(self.job, HIGH)

    def _progress(self, p: Progress) -> None:
        self.msg.setText(STAGE_TEXT.get(p.stage, p.message or p.stage) + (f" · {p.message}" if p.message and p.stage in STAGE_TEXT else ""))
        if p.total:
            self.bar.setValue(int(1000 * p.fraction))

    def _done(self, report: dict) -> None:
        self.accept()
        ReportDialog(self.project, self.parent(), Path(report.get("output", self.project.eval_dir()))).show()

    def _failed(self, exc: BaseException, tb: str) -> None:
        self.reject()
        show_error(self.parent(), exc, tb, context="Evaluation failed.")


def run_evaluation(parent, ctx, project: Project) -> EvaluateDialog:
    dlg = EvaluateDialog(parent, ctx, project)
    dlg.setAttribute(Qt.WA_DeleteOnClose)
    dlg.open()
    return dlg


class ReportDialog(QDialog):
    """report.html in a text browser (pictures load from the report folder)."""

    def __init__(self, project: Project, parent=None, folder: Optional[Path] = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Evaluation report — {project.root.name}")
        self.setObjectName("reportDialog")
        self.resize(1000, 760)
        folder = folder or report_path(project).parent
        html = report_html(folder)
        self.browser = QTextBrowser()
        self.browser.setOpenExternalLinks(True)
        self.browser.setSearchPaths([str(folder)])
        if html.is_file():
            self.browser.setSource(QUrl.fromLocalFile(str(html)))
        else:
            self.browser.setHtml(f"<p>No report yet in {folder}. Use Project ▸ Evaluate the model.</p>")
        open_btn = QPushButton("Open in web browser")
        open_btn.clicked.connect(lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(html))))
        open_btn.setEnabled(html.is_file())
        close = QPushButton("Close")
        close.clicked.connect(self.accept)
        lay = QVBoxLayout(self)
        lay.addWidget(self.browser, 1)
        lay.addLayout(hbox(open_btn, None, close))
