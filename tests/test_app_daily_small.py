"""Issue 14, item 9: the small things a daily user trips over."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt

from app_support import CLIP, copy_project, make_window, prepared_short, wait_done
from test_app_daily import editor  # noqa: F401  (the fixture)


def test_one_length_format_everywhere(qtbot, tmp_path, tmp_path_factory):
    from speech2lip.app.model.formats import duration_text
    from speech2lip.app.wizard.start_page import project_summary
    from speech2lip.core.media import probe

    assert duration_text(600, 30.0) == "0:20.0 (600 frames)"
    assert duration_text(1899, 30.0) == "1:03.3 (1899 frames)"
    win = make_window(qtbot, tmp_path)
    wait_done(qtbot, win.new_from_clip(CLIP), 120)
    info = probe(CLIP)
    assert win.import_page.facts["Duration"].text() == duration_text(info.n_frames, info.fps)
    root = copy_project(prepared_short(tmp_path_factory), tmp_path / "proj")
    from speech2lip.core.project import Project

    p = Project(root)
    assert project_summary(root)[2].startswith(duration_text(p.n_frames, p.fps))
    win.close()


def test_ruler_overlap_paused_badge_and_lengths_in_the_editor(qtbot, editor):  # noqa: F811
    win, ed = editor
    m = ed.model
    ed.service.render_ahead = False
    # Ruler labels use the main timecode (12 s is 00:00:12:00, not "00:12:00").
    f = int(12 * m.fps)
    assert ed.view.ruler.label(f) == m.timecode(f) == "00:00:12:00"

    # Overlapping speech on A1 and A2 is marked on the ruler and named in the status line.
    wave = (0.1 * np.sin(np.arange(16000 * 2) / 5)).astype(np.float32)
    m.add_source("/tmp/a.wav", wave)
    m.add_source("/tmp/b.wav", wave)
    a = m.add_clip("/tmp/a.wav", 0, 0)
    b = m.add_clip("/tmp/b.wav", 1, 30)
    assert ed.view.ruler.overlaps == [(30, a.end)]
    assert "overlap" in ed.transport.info.full_text() and "Red" in ed.view.ruler.toolTip()
    m.move_clip(b.id, a.end + 5)
    assert ed.view.ruler.overlaps == [] and "overlap" not in ed.transport.info.full_text()

    # The clip panel writes the length as everywhere else.
    m.select(clips=[a.id])
    assert ed.clip_panel.values["Length"].text() == m.length_text(a.length)

    # "Preview paused while training" only while training runs: otherwise an unrendered frame says so.
    ed.viewer.set_status("Preview paused while training")
    m.set_playhead(m.duration - 3)
    assert ed.viewer.view._badge == "RENDERING…"


def test_failed_import_clears_the_header(qtbot, tmp_path, tmp_path_factory):
    root = copy_project(prepared_short(tmp_path_factory), tmp_path / "proj")
    win = make_window(qtbot, tmp_path)
    assert win.open_project(root) and win.project_label.text() == "proj"
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    job = win.new_from_clip(bad)
    wait_done(qtbot, job, 60)
    assert job.state == "failed"
    assert win.project_label.text() == "" and "proj" not in win.windowTitle()
    win.close()


def test_diagnostic_picture_opens_at_full_size(qtbot, tmp_path):
    from PySide6.QtWidgets import QDialog, QLabel

    win = make_window(qtbot, tmp_path)
    win.go("prepare")
    view = next(iter(win.prepare_page.pictures.values()))
    img = np.zeros((600, 900, 3), np.uint8)
    img[:, :450] = 200
    view.set_image(img)
    qtbot.mouseClick(view, Qt.LeftButton)
    dlg = [d for d in win.findChildren(QDialog) if d.objectName() == "fullSizePicture"][0]
    assert dlg.isVisible()
    pix = dlg.findChild(QLabel).pixmap()
    assert (pix.width(), pix.height()) == (900, 600)               # 100 %, not scaled to the tile
    dlg.close()
    win.close()


def test_message_box_has_no_gap_beside_its_icon(qtbot, tmp_path):
    from PySide6.QtWidgets import QLabel

    from speech2lip.app.errors import show_error
    from speech2lip.core.errors import UserError

    win = make_window(qtbot, tmp_path)
    box = show_error(win, UserError("the clip has no audio track."))
    qtbot.waitUntil(box.isVisible, timeout=5000)
    icon = box.findChild(QLabel, "qt_msgboxex_icon_label")
    text = box.findChild(QLabel, "qt_msgbox_label")
    assert icon is not None and text is not None
    assert icon.width() < 100                                  # the icon's own size, not 320 px
    assert text.geometry().left() - icon.geometry().right() < 60
    box.close()
    win.close()
