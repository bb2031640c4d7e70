"""The entry point, persisted layout, and the report viewer."""
from __future__ import annotations

from app_support import copy_project, make_window, prepared_short


def test_entry_point_opens_the_project_given(qtbot, tmp_path, tmp_path_factory, monkeypatch):
    from speech2lip.app.main import build_parser, create_window

    assert build_parser().parse_args([]).path is None
    root = copy_project(prepared_short(tmp_path_factory), tmp_path / "proj")
    monkeypatch.setenv("SPEECH2LIP_SETTINGS", str(tmp_path / "s.ini"))
    win = create_window([str(root)])            # what `speech2lip-studio PROJECT_DIR` shows
    qtbot.addWidget(win)
    qtbot.waitUntil(lambda: win.project is not None, timeout=30_000)
    assert win.project.root == root and win.current() == "train" and win.isVisible()
    win.close()


def test_window_geometry_and_recent_projects_persist(qtbot, tmp_path, tmp_path_factory):
    from speech2lip.app.mainwindow import MainWindow
    from speech2lip.app.settings import AppSettings

    root = copy_project(prepared_short(tmp_path_factory), tmp_path / "proj")
    win = make_window(qtbot, tmp_path)
    win.resize(900, 640)
    assert win.open_project(root)
    win.close()
    settings = AppSettings(tmp_path / "settings.ini")               # what the next run reads
    assert settings.recent_projects() == [root.resolve()]
    geometry = settings.state("window/geometry")
    assert geometry is not None
    win2 = MainWindow(settings)
    qtbot.addWidget(win2)
    assert win2.restoreGeometry(geometry)
    win2.close()


def test_report_dialog_shows_the_report_with_pictures(qtbot, tmp_path, tmp_path_factory):
    from PySide6.QtGui import QColor, QImage

    from speech2lip.app.wizard.report_dialog import ReportDialog
    from speech2lip.core.project import Project

    root = copy_project(prepared_short(tmp_path_factory), tmp_path / "proj")
    (root / "eval").mkdir()
    img = QImage(40, 20, QImage.Format_RGB888)
    img.fill(QColor("#ff0000"))
    img.save(str(root / "eval" / "strip.png"))
    (root / "eval" / "report.html").write_text(
        "<html><body><h1>Held-out evaluation</h1><table><tr><th>method</th><th>LMD</th></tr>"
        "<tr><td>model</td><td>0.031</td></tr></table><img src='strip.png'></body></html>")
    dlg = ReportDialog(Project(root))
    qtbot.addWidget(dlg)
    dlg.show()
    text = dlg.browser.toPlainText()
    assert "Held-out evaluation" in text and "0.031" in text
    assert not dlg.browser.document().resource(3, "strip.png") is None      # 3: QTextDocument.ImageResource
