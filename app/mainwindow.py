"""The main window: a header with the wizard steps, one page per step, menus, drops, persistence.

The window routes between pages and owns the project that is open; the pages
do the work. Jobs run on two queues held by the AppContext: `engine` (one at a
time: prepare, train, preview, export, evaluate) and `io` (probing, decoding).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from PySide6.QtCore import QSize, Qt, QUrl
from PySide6.QtGui import QAction, QDesktopServices, QIcon, QKeySequence
from PySide6.QtWidgets import (QButtonGroup, QFileDialog, QFrame, QHBoxLayout, QLabel, QMainWindow, QMessageBox,
                               QStackedWidget, QToolButton, QVBoxLayout, QWidget)

from speech2lip.core.errors import UserError
from speech2lip.core.project import Project

from . import studio_state, theme
from .errors import show_error
from .wizard.import_page import ImportPage
from .keys import key_sequences
from .model.face_pick import AUTO
from .wizard.prepare_page import PreparePage
from .settings import AppSettings
from .wizard.start_page import StartPage
from .wizard.train_page import TrainPage
from .widgets import ElidedLabel
from .worker import JobQueue

if TYPE_CHECKING:
    from speech2lip.core.config import EngineConfig

VIDEO_EXT = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".mts"}
STEPS = ("import", "prepare", "train", "dub")


class AppContext:
    """Services every page uses; not a place for state.

    configs: preset name -> EngineConfig, what training uses (core.config.preset; tests pass a tiny one).
    """

    def __init__(self, settings: AppSettings, configs: Optional[Callable[[str], "EngineConfig"]] = None) -> None:
        from speech2lip.core.config import preset

        self.settings = settings
        self.configs = configs or preset
        self.engine = JobQueue("engine")
        self.io = JobQueue("io")

    def shutdown(self, wait_ms: int = 60000) -> None:
        self.io.shutdown(wait_ms)
        self.engine.shutdown(wait_ms)


class MainWindow(QMainWindow):
    def __init__(self, settings: Optional[AppSettings] = None,
                 configs: Optional[Callable[[str], "EngineConfig"]] = None) -> None:
        super().__init__()
        self.ctx = AppContext(settings or AppSettings(), configs)
        self.project: Optional[Project] = None
        self.editor = None
        self._stop_training_on_close = False
        self.setWindowTitle("Speech2Lip Studio")
        self.setWindowIcon(theme.logo())
        self.setAcceptDrops(True)
        self.resize(1440, 900)

        self.start_page = StartPage(self.ctx.settings)
        self.import_page = ImportPage(self.ctx)
        self.prepare_page = PreparePage(self.ctx)
        self.train_page = TrainPage(self.ctx)
        self.stack = QStackedWidget()
        for page in (self.start_page, self.import_page, self.prepare_page, self.train_page):
            self.stack.addWidget(page)

        central = QWidget()
        lay = QVBoxLayout(central)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self._header())
        lay.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        self.job_label = ElidedLabel("")
        self.statusBar().addPermanentWidget(self.job_label)
        self._menus()
        self._wire()
        geo = self.ctx.settings.state("window/geometry")
        if geo is not None:
            self.restoreGeometry(geo)
        self.go("start")

    # --- layout -------------------------------------------------------------------------------
    def _header(self) -> QFrame:
        bar = QFrame()
        theme.set_role(bar, "header")
        lay = QHBoxLayout(bar)
        lay.setContentsMargins(12, 0, 12, 0)
        home = QToolButton()
        home.setIcon(theme.logo())
        home.setIconSize(QSize(26, 26))
        home.setToolTip("Start page")
        home.setAutoRaise(True)
        home.setStyleSheet("border: none; background: transparent;")
        home.clicked.connect(lambda: self.go("start"))
        self.title = QLabel("<b>Speech2Lip Studio</b>")
        self.title.setStyleSheet("font-size: 11pt; padding-left: 6px;")
        lay.addWidget(home)
        lay.addWidget(self.title)
        lay.addStretch(1)
        self.step_group = QButtonGroup(self)
        self.step_group.setExclusive(False)          # go() checks one, or none on the start page
        self.step_buttons: dict[str, QToolButton] = {}
        for n, key in enumerate(STEPS, 1):
            b = QToolButton()
            b.setText(f"{n}  {key.capitalize()}")
            b.setCheckable(True)
            b.setObjectName(f"step_{key}")
            theme.set_role(b, "step")
            b.clicked.connect(lambda _=False, k=key: self.go(k))
            self.step_group.addButton(b)
            self.step_buttons[key] = b
            lay.addWidget(b)
        lay.addStretch(1)
        self.project_label = QLabel("")
        self.project_label.setStyleSheet("color: #8d909a;")
        self.saved_label = QLabel("")
        self.saved_label.setObjectName("savedMarker")
        self.saved_label.setStyleSheet("color: #8d909a; padding-left: 8px;")
        lay.addWidget(self.project_label)
        lay.addWidget(self.saved_label)
        return bar

    def _menus(self) -> None:
        mb = self.menuBar()
        f = mb.addMenu("&File")
        self._act(f, "New project from clip…", QKeySequence.New, self.choose_clip, "video-add")
        self._act(f, "Open project…", QKeySequence.Open, self.choose_project, "folder")
        self.recent_menu = f.addMenu("Open recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        self.save_act = self._act(f, "Save", QKeySequence.Save, self.save)
        f.addSeparator()
        self._act(f, "Show project folder", None, self.show_project_folder)
        self._act(f, "Preferences…", QKeySequence.Preferences, self.preferences)
        self.close_act = self._act(f, "Close project", QKeySequence.Close, self.close_project)
        f.addSeparator()
        self._act(f, "Quit", QKeySequence.Quit, self.close)
        self.edit_menu = mb.addMenu("&Edit")
        self.timeline_menu = mb.addMenu("&Timeline")
        p = mb.addMenu("&Project")
        self.eval_act = self._act(p, "Evaluate the model…", None, self.evaluate, "report")
        self.report_act = self._act(p, "Show evaluation report", None, self.show_report)
        h = mb.addMenu("&Help")
        self._act(h, "Keyboard shortcuts", QKeySequence.HelpContents, self.show_shortcuts)
        self._act(h, "About Speech2Lip Studio", None, self.about)

    def _act(self, menu, text, key, slot, icon_name: Optional[str] = None) -> QAction:
        a = QAction(theme.icon(icon_name) if icon_name else QIcon(), text, self)
        if key is not None:
            a.setShortcuts(key_sequences(key))
        a.triggered.connect(slot)
        menu.addAction(a)
        return a

    def _wire(self) -> None:
        sp = self.start_page
        sp.new_clip_requested.connect(self.choose_clip)
        sp.open_requested.connect(self.choose_project)
        sp.project_chosen.connect(self.open_project)
        self.import_page.prepare_requested.connect(self._prepare)
        self.prepare_page.prepared.connect(self.open_project)
        self.prepare_page.back_requested.connect(lambda: self.go("import"))
        self.prepare_page.continue_requested.connect(lambda: self.go("train"))
        self.train_page.editor_requested.connect(lambda: self.go("dub"))
        self.train_page.trained.connect(self._trained)
        for q in (self.ctx.engine, self.ctx.io):
            q.job_started.connect(self._job_started)
            q.busy_changed.connect(self._busy_changed)

    # --- navigation -------------------------------------------------------------------------------
    def page(self, key: str) -> QWidget:
        if key == "dub":
            return self.ensure_editor()
        return {"start": self.start_page, "import": self.import_page, "prepare": self.prepare_page,
                "train": self.train_page}[key]

    def go(self, key: str) -> None:
        if key == "dub" and (self.project is None or studio_state.checkpoint_path(self.project.root) is None):
            key = "train" if self.project is not None else "start"
        page = self.page(key)
        if self.stack.indexOf(page) < 0:
            self.stack.addWidget(page)
        self.stack.setCurrentWidget(page)
        if self.editor is not None:
            self.editor.set_active(key == "dub")
        for k, b in self.step_buttons.items():
            b.setChecked(k == key)
        self._update_steps()

    def current(self) -> str:
        w = self.stack.currentWidget()
        for key in ("start", *STEPS):
            if key != "dub" and self.page(key) is w:
                return key
        return "dub" if w is self.editor and w is not None else "start"

    def _update_steps(self) -> None:
        has_project = self.project is not None
        trained = has_project and studio_state.checkpoint_path(self.project.root) is not None
        self.step_buttons["import"].setEnabled(self.import_page.report is not None)
        self.step_buttons["prepare"].setEnabled(has_project or self.prepare_page.running)
        self.step_buttons["train"].setEnabled(has_project)
        self.step_buttons["dub"].setEnabled(bool(trained))
        self.eval_act.setEnabled(bool(trained))
        self.report_act.setEnabled(has_project and self.project.report_path.is_file())
        self.close_act.setEnabled(has_project)
        self.save_act.setEnabled(has_project)
        # On the import page the header names no project: a new clip is being looked at, and an import
        # that fails must not leave the previous project's name there.
        importing = self.stack.currentWidget() is self.import_page
        name = self.project.root.name if has_project and not importing else ""
        self.project_label.setText(name)
        self.setWindowTitle(f"{name}[*] — Speech2Lip Studio" if name else "Speech2Lip Studio")
        self._update_saved()

    def _update_saved(self) -> None:
        """The unsaved marker: shown from an edit until the autosave (or Ctrl+S) has written it."""
        ed = self.editor
        dirty = ed is not None and ed.model.dirty
        self.setWindowModified(dirty)
        text = ed.save_error if ed is not None and ed.save_error else ("● Unsaved changes" if dirty else "")
        if ed is not None and not dirty and ed.model.edit_revision:
            text = "Saved"
        self.saved_label.setText(text)
        self.saved_label.setToolTip("Edits are saved into the project a moment after each change (Ctrl+S: now)")

    def save(self) -> bool:
        """File → Save: write the dubbing session now (it is also saved automatically)."""
        if self.editor is None:
            return self.project is not None
        ok = self.editor.save_session()
        self.statusBar().showMessage("Saved" if ok else self.editor.save_error, 3000)
        return ok

    # --- projects ---------------------------------------------------------------------------------
    def choose_clip(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "New project from clip", str(Path.home()),
                                              "Videos (*.mp4 *.mov *.mkv *.webm *.avi *.m4v);;All files (*)")
        if path:
            self.new_from_clip(path)

    def new_from_clip(self, path: str | Path):
        self.go("import")
        job = self.import_page.load_clip(path)
        job.succeeded.connect(lambda _r: self._update_steps())
        return job

    def choose_project(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open project", str(self.ctx.settings.projects_dir()))
        if path:
            self.open_project(path)

    def open_project(self, path: str | Path) -> bool:
        try:
            project = Project(path)
            project.frames        # fail here, with a clear message, if the arrays are damaged
        except UserError as e:
            show_error(self, e)
            return False
        if self.editor is not None:
            self._drop_editor()
        self.project = project
        self.ctx.settings.add_recent(project.root)
        self.prepare_page.show_project(project)
        self.train_page.set_project(project)
        fresh = self.stack.currentWidget() is self.prepare_page
        if fresh:
            self._update_steps()         # a just-prepared project stays on its diagnostics
        elif studio_state.checkpoint_path(project.root) and not studio_state.training_unfinished(project.root):
            self.go("dub")
        else:
            self.go("train")
        return True

    def close_project(self) -> None:
        if self.train_page.running:
            self.train_page.stop(finish=False)
        self._drop_editor()
        self.project = None
        self.go("start")

    def ensure_editor(self):
        if self.editor is None and self.project is not None:
            from .editor.editor_page import EditorPage

            self.editor = EditorPage(self.ctx, self.project)
            self.editor.install_menus(self.edit_menu, self.timeline_menu)
            self.editor.model.events.dirty.connect(lambda e: self._update_saved())
            self.stack.addWidget(self.editor)
        return self.editor

    def _drop_editor(self) -> None:
        if self.editor is not None:
            self.editor.close_session()
            self.stack.removeWidget(self.editor)
            self.editor.deleteLater()
            self.editor = None
            self.edit_menu.clear()
            self.timeline_menu.clear()
            self._update_saved()

    def _prepare(self, video: str, folder: str, size: int, face: str = AUTO, tracker: str = "facemesh") -> None:
        if self.editor is not None:
            self._drop_editor()
        self.project = None
        self.go("prepare")
        self.prepare_page.start(video, folder, size, face, tracker)

    def _trained(self, checkpoint: str) -> None:
        if self.editor is not None:
            self.editor.set_checkpoint(checkpoint)
        self._update_steps()

    # --- project menu -----------------------------------------------------------------------------
    def show_project_folder(self) -> None:
        target = self.project.root if self.project else self.ctx.settings.projects_dir()
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(target)))

    def preferences(self):
        from .prefs_dialog import PreferencesDialog

        def apply(mb: int) -> None:
            if self.editor is not None:
                self.editor.service.cache.set_limit(mb * 2**20)

        dlg = PreferencesDialog(self.ctx.settings, apply, self)
        dlg.setAttribute(Qt.WA_DeleteOnClose)
        dlg.open()
        return dlg

    def evaluate(self) -> None:
        from .wizard.report_dialog import run_evaluation

        if self.project is not None:
            run_evaluation(self, self.ctx, self.project)

    def show_report(self) -> None:
        from .wizard.report_dialog import ReportDialog

        if self.project is not None:
            ReportDialog(self.project, self).show()

    def show_shortcuts(self) -> None:
        from .editor.editor_page import SHORTCUTS

        rows = "".join(f"<tr><td><b>{k}</b></td><td>&nbsp;&nbsp;{v}</td></tr>" for k, v in SHORTCUTS)
        box = QMessageBox(QMessageBox.Information, "Keyboard shortcuts", f"<table>{rows}</table>",
                          QMessageBox.Ok, self)
        box.open()

    def about(self) -> None:
        box = QMessageBox(QMessageBox.Information, "About Speech2Lip Studio",
                          "<b>Speech2Lip Studio</b><br>Learns one speaker's lips from a short video and "
                          "re-renders it to follow new speech.<br><br>Method: Speech2Lip, ICCV 2023.",
                          QMessageBox.Ok, self)
        box.setIconPixmap(theme.logo().pixmap(64, 64))
        box.open()

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for p in self.ctx.settings.recent_projects():
            self.recent_menu.addAction(p.name, lambda path=str(p): self.open_project(path))
        if self.recent_menu.isEmpty():
            self.recent_menu.addAction("No recent projects").setEnabled(False)

    # --- status --------------------------------------------------------------------------------
    def _job_started(self, job) -> None:
        names = {"prepare": "Preparing…", "train": "Training…", "export": "Exporting…",
                 "evaluate": "Evaluating…", "inspect": "Inspecting the clip…", "audio": "Decoding audio…"}
        if job.name in names and job.is_active:
            text = names[job.name]
            self.job_label.setText(text)
            job.finished.connect(lambda: self.job_label.text() == text and self.job_label.setText(""))

    def _busy_changed(self, busy: bool) -> None:
        self._update_steps()

    def _ask_stop_training(self) -> QMessageBox:
        step = self.train_page.current_step
        box = QMessageBox(QMessageBox.Question, "Training is running",
                          f"Training is at step {step}. Stop it and save the model to quit? "
                          "Reopening the project offers to resume.", QMessageBox.NoButton, self)
        box.setObjectName("closeDuringTraining")
        stop = box.addButton("Stop, save and quit", QMessageBox.AcceptRole)
        keep = box.addButton("Keep training", QMessageBox.RejectRole)
        box.setDefaultButton(keep)
        box.setAttribute(Qt.WA_DeleteOnClose)

        def answered(_r) -> None:
            if box.clickedButton() is stop:
                self._stop_training_on_close = True
                self.close()

        box.finished.connect(answered)
        box.open()
        return box

    # --- drops and closing ------------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:
        urls = event.mimeData().urls() if event.mimeData().hasUrls() else []
        if any(Path(u.toLocalFile()).suffix.lower() in VIDEO_EXT for u in urls):
            self.start_page.drop_zone.setProperty("active", True)
            theme.restyle(self.start_page.drop_zone)
            event.acceptProposedAction()

    def dragLeaveEvent(self, event) -> None:
        self.start_page.drop_zone.setProperty("active", False)
        theme.restyle(self.start_page.drop_zone)

    def dropEvent(self, event) -> None:
        self.dragLeaveEvent(event)
        for u in event.mimeData().urls():
            path = u.toLocalFile()
            if Path(path).suffix.lower() in VIDEO_EXT:
                self.new_from_clip(path)
                event.acceptProposedAction()
                return

    def closeEvent(self, event) -> None:
        if self.train_page.running and not self._stop_training_on_close:
            event.ignore()                   # ask first; the answer closes again, or keeps training
            self._ask_stop_training()
            return
        if self.train_page.running:
            self.statusBar().showMessage("Saving the training checkpoint…")
            self.train_page.stop(finish=False)       # the trainer saves; reopening offers to resume
        if self.prepare_page.running:
            self.prepare_page.cancel()
        if self.editor is not None:
            self.editor.close_session()
        self.ctx.settings.save_state("window/geometry", self.saveGeometry())
        self.ctx.settings.sync()
        self.ctx.shutdown()
        super().closeEvent(event)
