"""Issue 13, item 7 in the app: a clip with two faces shows both as thumbnails; the one clicked is prepared."""
from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from app_support import make_window, wait_done
from conftest import side_by_side
from speech2lip.app.model.face_pick import AUTO, FacePick
from speech2lip.core.project import Project


@pytest.mark.slow
def test_two_faces_show_as_thumbnails_and_the_clicked_one_is_prepared(qtbot, tmp_path, media):
    # The left speaker's speech: Auto would take face 1, so clicking face 2 must be what decides.
    clip = side_by_side(tmp_path / "media" / "two.mp4", media["obama_a"], media["reagan"], audio_from=0,
                        seconds=6.0)
    win = make_window(qtbot, tmp_path)
    ip = win.import_page
    wait_done(qtbot, win.new_from_clip(clip), 60)
    assert ip.report is not None and [f.number for f in ip.report.faces] == [1, 2]
    assert ip.faces_panel.isVisible()
    faces = [b for k, b in ip.face_buttons.items() if k]
    assert len(faces) == 2 and all(not b.icon().isNull() for b in faces)            # two thumbnails
    assert ip.face_buttons[0].isChecked() and ip.face_buttons[0].text().startswith("Auto")
    assert [text for _, _, text in ip.view._boxes] == ["1", "2"]                    # numbered on the frame

    qtbot.mouseClick(ip.face_buttons[2], Qt.LeftButton)
    assert ip.face_buttons[2].isChecked() and not ip.face_buttons[0].isChecked()
    assert ip.pick.face == "2" and "Face 2 (right)" in ip.faces_text.text()

    pp = win.prepare_page
    with qtbot.waitSignal(pp.prepared, timeout=240_000):
        qtbot.mouseClick(ip.prepare_btn, Qt.LeftButton)
        assert pp.job is not None and pp.job.kwargs["face"] == "2"                  # the job got the choice
        assert pp.job.kwargs["tracker"] == "facemesh"                               # the built-in tracker
    choice = Project(ip.folder.text()).manifest.stats["face_choice"]
    assert (choice["chosen"], choice["by"], choice["asked"]) == (2, "asked", "2")
    assert pp.faces_view.isVisible() and pp.faces_view.image is not None
    assert "face 2 (right) of 2, as chosen" in pp.summary.text()
    assert "face 1 (left) follows the speech far better" in pp.summary.text()        # the warning, shown

    # Another clip, with one face: the choice is gone and prepare goes back to Auto.
    wait_done(qtbot, win.new_from_clip(media["obama_a"]), 60)
    assert ip.faces_panel.isHidden() and ip.pick.face == AUTO and not ip.face_buttons
    win.close()


def test_face_pick_model():
    class Thumb:
        def __init__(self, number, position):
            self.number, self.position = number, position

    pick = FacePick()
    assert not pick.offered and pick.face == AUTO and pick.describe() == ""
    pick.set_faces([Thumb(1, "left"), Thumb(2, "right")])
    assert pick.offered and pick.face == AUTO and "Auto" in pick.describe()
    pick.pick(1)
    assert pick.face == "1" and pick.describe() == "Face 1 (left) will be prepared."
    with pytest.raises(ValueError):
        pick.pick(3)
    pick.set_faces([Thumb(1, "left")])
    assert pick.face == AUTO and not pick.offered


def test_the_tracker_list_greys_out_what_cannot_run_here(qtbot, tmp_path, monkeypatch):
    """The import page offers every tracker; those missing a package or weights are greyed out,
    with what they need in the tooltip."""
    from PySide6.QtCore import Qt

    from speech2lip.core.prepare import tracking as T

    monkeypatch.setattr(T, "availability", lambda: {"facemesh": None, "mediapipe": "needs mediapipe",
                                                   "fan": "weights missing"})
    win = make_window(qtbot, tmp_path)
    combo = win.import_page.tracker
    assert [combo.itemData(i) for i in range(combo.count())] == ["facemesh", "mediapipe", "fan"]
    enabled = [combo.model().item(i).isEnabled() for i in range(combo.count())]
    assert enabled == [True, False, False] and combo.currentData() == "facemesh"
    assert combo.itemData(2, Qt.ToolTipRole) == "weights missing"
