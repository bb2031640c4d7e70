"""The entry point, persisted layout, and the report viewer."""
from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from app_support import copy_project, make_window, prepared_short


def test_entry_point_opens_the_project_given(qtbot, tmp_path, tmp_path_factory, monkeypatch):
    from speech2lip.app.main import build_parser, main
    from speech2lip.app.mainwindow import MainWindow

    assert build_parser().parse_args([]).path is None
    root = copy_project(prepared_short(tmp_path_factory), tmp_path / "proj")
    monkeypatch.setenv("SPEECH2LIP_SETTINGS", str(tmp_path / "s.ini"))
    seen = {}

    def check():
        wins = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        if wins and wins[0].project is not None:
            seen["project"] = wins[0].project.root
            seen["page"] = wins[0].current()
            wins[0].close()
            QApplication.instance().quit()
        else:
            QTimer.singleShot(50, check)

    QTimer.singleShot(50, check)
    assert main([str(root)]) == 0
    assert seen == {"project": root, "page": "train"}


def test_window_geometry_and_recent_projects_persist(qtbot, tmp_path, tmp_path_factory):
    root = copy_project(prepared_short(tmp_path_factory), tmp_path / "proj")
    win = make_window(qtbot, tmp_path)
    win.resize(1234, 777)
    assert win.open_project(root)
    win.close()
    win2 = make_window(qtbot, tmp_path)           # same settings file
    assert win2.ctx.settings.recent_projects() == [root.resolve()]
    assert (win2.width(), win2.height()) == (1234, 777)
    win2.close()


def test_report_dialog_shows_the_report_with_pictures(qtbot, tmp_path, tmp_path_factory):
    from PySide6.QtGui import QColor, QImage

    from speech2lip.app.report_dialog import ReportDialog
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
