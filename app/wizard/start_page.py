"""The start page: new project from a clip, open a project, recent projects with thumbnails."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import QListWidget, QListWidgetItem, QPushButton, QWidget

from speech2lip.core.project import Project

from .. import theme
from ..model.formats import duration_text
from ..widgets import hbox, label, panel, vbox

THUMB = QSize(208, 150)


def project_summary(root: Path) -> tuple[QPixmap, str, str]:
    """(thumbnail, title, detail) of a project folder; a broken one says so instead of failing."""
    pm = QPixmap(THUMB)
    pm.fill(QColor("#101114"))
    try:
        project = Project(root)
        m = project.manifest
        frame = project.frames[m.canonical_index]
        img = theme.qimage(frame).scaled(THUMB, Qt.KeepAspectRatio, Qt.SmoothTransformation)
        p = QPainter(pm)
        p.drawImage((THUMB.width() - img.width()) // 2, (THUMB.height() - img.height()) // 2, img)
        p.end()
        trained = project.is_trained
        detail = f"{duration_text(project.n_frames, project.fps)} · {project.fps:g} fps · " + (
            "trained" if trained else "not trained")
    except Exception as e:       # a damaged folder still gets listed; opening it explains
        p = QPainter(pm)
        p.setPen(QColor("#f0b429"))
        p.drawText(pm.rect(), Qt.AlignCenter, "⚠ cannot read")
        p.end()
        detail = type(e).__name__
    return pm, root.name, detail


class StartPage(QWidget):
    new_clip_requested = Signal()
    open_requested = Signal()
    project_chosen = Signal(str)

    def __init__(self, settings, parent=None) -> None:
        super().__init__(parent)
        self.settings = settings

        title = label("Speech2Lip Studio", "title")
        sub = label("Teach the app one speaker's lips from a short video, then dub it with any speech.",
                    "subtitle", wrap=True)
        self.new_btn = QPushButton(theme.icon("video-add"), "  New project from clip…")
        self.open_btn = QPushButton(theme.icon("folder"), "  Open project…")
        for b in (self.new_btn, self.open_btn):
            theme.set_role(b, "big")
            b.setIconSize(QSize(22, 22))
            b.setMinimumWidth(300)
        theme.set_role(self.new_btn, "primary")
        self.new_btn.setStyleSheet("text-align: left; padding: 12px 18px; font-size: 11pt;")
        self.new_btn.clicked.connect(self.new_clip_requested)
        self.open_btn.clicked.connect(self.open_requested)

        drop, drop_lay = panel("dropzone", margins=24)
        self.drop_zone = drop
        for text, role in (("Drop a video anywhere on this window", "heading"),
                           ("MP4, MOV, MKV, WebM…  20 s to a few minutes of one person talking "
                            "to the camera works best.", "caption")):
            w = label(text, role, wrap=True)
            w.setAlignment(Qt.AlignCenter)
            drop_lay.addWidget(w)
        drop.setMinimumHeight(130)

        steps, steps_lay = panel()
        steps_lay.addWidget(label("How it works", "heading"))
        for n, (head, text) in enumerate([
                ("Import", "Check the clip: face, length, audio."),
                ("Prepare", "Track the face and map every frame to one head pose."),
                ("Train", "Learn the speaker's lips from their own speech (minutes on a CPU)."),
                ("Dub", "Drop new speech on the timeline, adjust the head pose, export an MP4.")], 1):
            row = label(f"<b style='color:#6aa8ff'>{n}</b>&nbsp;&nbsp;<b>{head}</b> — {text}", wrap=True)
            row.setTextFormat(Qt.RichText)
            steps_lay.addWidget(row)

        left = vbox(title, sub, spacing=14)
        left.addSpacing(26)
        for w in (self.new_btn, self.open_btn, drop, steps):
            left.addWidget(w)
        left.addStretch(1)

        self.recent = QListWidget()
        self.recent.setObjectName("recentProjects")
        self.recent.setViewMode(QListWidget.IconMode)
        self.recent.setIconSize(THUMB)
        self.recent.setGridSize(QSize(THUMB.width() + 24, THUMB.height() + 56))
        self.recent.setResizeMode(QListWidget.Adjust)
        self.recent.setMovement(QListWidget.Static)
        self.recent.setWordWrap(True)
        self.recent.setSpacing(6)
        self.recent.itemActivated.connect(self._activated)
        self.recent.itemDoubleClicked.connect(self._activated)
        self.empty_note = label("No projects yet. Start with a clip of someone talking.", "caption")
        right = vbox(label("Recent projects", "heading"), self.recent, self.empty_note, spacing=10)

        lay = hbox(left, right, spacing=36, margins=40)
        lay.setStretch(0, 4)
        lay.setStretch(1, 6)
        self.setLayout(lay)

    def refresh(self) -> None:
        from speech2lip.core.project import find_projects

        seen: list[Path] = []
        for p in [*self.settings.recent_projects(), *find_projects(self.settings.projects_dir())]:
            if p.resolve() not in {s.resolve() for s in seen}:
                seen.append(p)
        self.recent.clear()
        for root in seen:
            pm, title, detail = project_summary(root)
            item = QListWidgetItem(QIcon(pm), f"{title}\n{detail}")
            item.setData(Qt.UserRole, str(root))
            item.setToolTip(str(root))
            item.setTextAlignment(Qt.AlignHCenter | Qt.AlignTop)
            self.recent.addItem(item)
        self.empty_note.setVisible(not seen)

    def showEvent(self, event) -> None:
        self.refresh()
        super().showEvent(event)

    def _activated(self, item: QListWidgetItem) -> None:
        self.project_chosen.emit(item.data(Qt.UserRole))
