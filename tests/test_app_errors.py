"""Errors from core reach the user as dialogs that say what to do, never as a bare traceback."""
from __future__ import annotations

import errno
import json

import numpy as np
import pytest
from PySide6.QtCore import Qt

from app_support import copy_project, faceless_clip, make_window, prepared_short, wait_done
from speech2lip.app.errors import describe, last_error_dialog
from speech2lip.core.errors import FaceError, MediaError, ProjectError


def test_describe_maps_core_and_system_errors():
    t, msg, user = describe(FaceError("no face found in a.mp4; use a clip where one speaker faces the camera."))
    assert (t, user) == ("No usable face", True) and msg.startswith("no face found")
    assert describe(ProjectError("x is corrupt; prepare again"))[2]
    oom = type("OutOfMemoryError", (RuntimeError,), {})("CUDA out of memory. Tried to allocate 2 GiB")
    t, msg, user = describe(oom)
    assert user and "GPU ran out of memory" in msg and "quick" in msg
    t, msg, user = describe(OSError(errno.ENOSPC, "No space left on device", "/data/p/frames.npy"))
    assert (t, user) == ("Disk full", True) and "/data/p/frames.npy" in msg
    t, msg, user = describe(KeyError("boom"))
    assert not user and "bug" in msg


def test_faceless_clip_warns_then_prepare_shows_a_user_error(qtbot, tmp_path):
    clip = faceless_clip(tmp_path / "noise.mp4")
    win = make_window(qtbot, tmp_path)
    ip = win.import_page
    wait_done(qtbot, win.new_from_clip(clip), 60)
    assert ip.report is not None and ip.report.face_box is None
    assert "not found" in ip.facts["Face"].text()
    assert any("No face" in w for w in ip.report.warnings)
    assert not ip.prepare_btn.isEnabled()                      # the wizard does not let it through

    # Forced through anyway (as a folder of frames might be), core's FaceError becomes a dialog.
    target = tmp_path / "projects" / "noise"
    job = win.prepare_page.start(str(clip), str(target))
    wait_done(qtbot, job, 120)
    assert job.state == "failed" and isinstance(job.error, FaceError)
    box = last_error_dialog(win)
    assert box is not None and box.windowTitle() == "No usable face"
    assert "no face found" in box.text() and "faces the camera" in box.text()
    assert box.detailedText() == ""                            # no traceback for a user error
    assert "Traceback" not in box.text()
    assert not target.exists()
    box.close()
    win.close()


def test_unreadable_file_is_a_media_error(qtbot, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\\x00\\x01 not a video" * 100)
    win = make_window(qtbot, tmp_path)
    job = win.new_from_clip(bad)
    wait_done(qtbot, job, 60)
    assert isinstance(job.error, MediaError)
    box = last_error_dialog(win)
    assert box.windowTitle() == "Cannot use this file" and "broken.mp4" in box.text()
    assert box.detailedText() == ""
    win.close()


@pytest.mark.parametrize("damage", ["manifest", "frames", "newer"])
def test_corrupt_project_opens_a_dialog(qtbot, tmp_path, tmp_path_factory, damage):
    root = copy_project(prepared_short(tmp_path_factory), tmp_path / "proj")
    if damage == "manifest":
        (root / "project.json").write_text("{ this is not json", encoding="utf-8")
    elif damage == "frames":
        data = (root / "frames.npy").read_bytes()
        (root / "frames.npy").write_bytes(data[: len(data) // 3])
    else:
        obj = json.loads((root / "project.json").read_text())
        obj["schema_version"] = 99
        (root / "project.json").write_text(json.dumps(obj))
    win = make_window(qtbot, tmp_path)
    assert not win.open_project(root)
    assert win.project is None and win.current() == "start"
    box = last_error_dialog(win)
    assert box is not None and box.windowTitle() == "Project problem"
    expect = {"manifest": "corrupt", "frames": "prepare the clip again", "newer": "newer"}[damage]
    assert expect in box.text()
    assert box.detailedText() == ""
    win.close()


def test_unexpected_error_keeps_traceback_in_details(qtbot, tmp_path):
    from speech2lip.app.errors import show_error

    win = make_window(qtbot, tmp_path)
    try:
        np.zeros(3)[5]
    except IndexError as e:
        import traceback

        box = show_error(win, e, traceback.format_exc())
    assert box.windowTitle() == "Unexpected error" and "IndexError" in box.text()
    assert "Traceback" in box.detailedText() and "Traceback" not in box.text()
    qtbot.mouseClick(box.button(box.StandardButton.Ok), Qt.LeftButton)
    win.close()


def test_recent_projects_with_thumbnails(qtbot, tmp_path, tmp_path_factory):
    root = copy_project(prepared_short(tmp_path_factory), tmp_path / "projects" / "talk")
    broken = tmp_path / "projects" / "broken"
    broken.mkdir(parents=True)
    (broken / "project.json").write_text("{}")
    win = make_window(qtbot, tmp_path)
    win.ctx.settings.add_recent(root)
    win.go("start")
    lst = win.start_page.recent
    items = {lst.item(i).text().split("\n")[0]: lst.item(i) for i in range(lst.count())}
    assert set(items) == {"talk", "broken"}
    assert not items["talk"].icon().isNull() and "not trained" in items["talk"].text()
    lst.itemActivated.emit(items["talk"])
    assert win.project is not None and win.project.root == root and win.current() == "train"
    assert win.ctx.settings.recent_projects()[0] == root.resolve()
    win.close()
