"""The dubbing editor's views on a trained real project: timeline gestures, undo/redo, transport, viewer."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication

from app_support import SPEECH, SPEECH_FLAC, copy_project, make_window, trained_short, wait_done


@pytest.fixture()
def editor(qtbot, tmp_path, tmp_path_factory):
    root = copy_project(trained_short(tmp_path_factory), tmp_path / "proj")
    win = make_window(qtbot, tmp_path)
    assert win.open_project(root)
    assert win.current() == "dub"               # trained: reopening goes straight to the editor
    ed = win.editor
    qtbot.waitUntil(lambda: ed.view.viewport().width() > 300, timeout=5000)
    win.activateWindow()
    ed.view.setFocus()
    yield win, ed
    win.close()


def add_speech(qtbot, ed, path=SPEECH, track=0, frame=0):
    n = len(ed.model.clips)
    wait_done(qtbot, ed.add_audio_files([str(path)], track, frame), 60)
    qtbot.waitUntil(lambda: len(ed.model.clips) == n + 1, timeout=5000)
    return [c for c in ed.model.clips if c.start == frame and c.track == track][-1]


def drag(qtbot, viewport, a: QPoint, b: QPoint, steps: int = 6) -> None:
    qtbot.mousePress(viewport, Qt.LeftButton, Qt.NoModifier, a)
    for i in range(1, steps + 1):
        qtbot.mouseMove(viewport, a + (b - a) * i / steps)
    qtbot.mouseRelease(viewport, Qt.LeftButton, Qt.NoModifier, b)


def clip_point(ed, clip, where: str = "middle") -> QPoint:
    from speech2lip.app.editor.timeline_items import AUDIO_H, audio_y

    view = ed.view
    x = {"middle": (clip.start + clip.length / 2) * view.ppf, "right": clip.end * view.ppf - 2,
         "left": clip.start * view.ppf + 2}[where]
    return view.mapFromScene(QPointF(x, audio_y(clip.track) + AUDIO_H / 2))


def test_drag_trim_delete_with_undo_redo(qtbot, editor):
    win, ed = editor
    m, view = ed.model, ed.view
    view.magnet = False
    view.set_ppf(4.0)
    view.horizontalScrollBar().setValue(0)
    c = add_speech(qtbot, ed, frame=10)
    item = view.clip_items[c.id]
    assert item.x() == pytest.approx(10 * 4.0)

    # Move: drag the clip 80 px right and down one track.
    a = clip_point(ed, c)
    drag(qtbot, view.viewport(), a, a + QPoint(80, int(view.mapFromScene(0, 61).y() - view.mapFromScene(0, 0).y())))
    moved = m.clip(c.id)
    assert (moved.start, moved.track) == (30, 1)
    assert item.x() == pytest.approx(30 * 4.0)

    # Trim the right edge 40 px (10 frames) to the left.
    a = clip_point(ed, moved, "right")
    drag(qtbot, view.viewport(), a, a - QPoint(40, 0))
    trimmed = m.clip(c.id)
    assert trimmed.length == c.length - 10 and trimmed.start == 30

    # Delete with the keyboard.
    m.select(clips=[c.id])
    qtbot.keyClick(view, Qt.Key_Delete)
    assert m.clips == [] and c.id not in view.clip_items

    # Undo the three edits one by one with Ctrl+Z; redo them with Ctrl+Shift+Z.
    qtbot.keyClick(view, Qt.Key_Z, Qt.ControlModifier)
    assert m.clip(c.id) == trimmed and c.id in view.clip_items
    qtbot.keyClick(view, Qt.Key_Z, Qt.ControlModifier)
    assert m.clip(c.id) == moved
    qtbot.keyClick(view, Qt.Key_Z, Qt.ControlModifier)
    assert m.clip(c.id) == c and view.clip_items[c.id].x() == pytest.approx(10 * 4.0)
    assert ed.undo_btn.isEnabled() and ed.redo_btn.isEnabled()
    qtbot.keyClick(view, Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)
    qtbot.keyClick(view, Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)
    assert m.clip(c.id) == trimmed
    qtbot.keyClick(view, Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)
    assert m.clips == [] and not ed.redo_btn.isEnabled()


def test_snapping_zoom_scrub_and_keyframe_markers(qtbot, editor):
    from speech2lip.app.editor.timeline_items import KEYS_H, RULER_H, keys_y

    win, ed = editor
    m, view = ed.model, ed.view
    view.set_ppf(4.0)
    view.horizontalScrollBar().setValue(0)
    a = add_speech(qtbot, ed, frame=0)
    b = add_speech(qtbot, ed, path=SPEECH_FLAC, track=1, frame=a.end + 40)

    # With the magnet on, dropping b 1 frame from a's end snaps onto it.
    p = clip_point(ed, m.clip(b.id))
    drag(qtbot, view.viewport(), p, p - QPoint(int(39 * 4), 0))
    assert m.clip(b.id).start == a.end

    # Scrub: press on the ruler.
    pos = view.mapFromScene(QPointF(50 * 4.0, RULER_H / 2))
    qtbot.mouseClick(view.viewport(), Qt.LeftButton, Qt.NoModifier, pos)
    assert m.playhead == 50 and view.playhead.x() == pytest.approx(200.0)

    # Ctrl+wheel zooms around the cursor: the frame under it stays put.
    before = view.ppf
    at = QPointF(view.mapFromScene(QPointF(50 * 4.0, 5)))
    ev = QWheelEvent(at, view.viewport().mapToGlobal(at), QPoint(), QPoint(0, 240), Qt.NoButton,
                     Qt.ControlModifier, Qt.NoScrollPhase, False)
    QApplication.sendEvent(view.viewport(), ev)
    assert view.ppf == pytest.approx(before * 1.25 ** 2)
    assert view.mapFromScene(QPointF(50 * view.ppf, 5)).x() == pytest.approx(at.x(), abs=2)

    # Keyframe markers: set two, drag one, delete the selected one with the keyboard, undo.
    m.set_keyframe(20, (5.0, 0.0, 0.0))
    m.set_keyframe(60, (-5.0, 2.0, 0.0))
    ppf = view.ppf
    start = view.mapFromScene(QPointF(60 * ppf, keys_y() + KEYS_H / 2))
    drag(qtbot, view.viewport(), start, start + QPoint(int(round(10 * ppf)), 0))
    assert sorted(m.keyframes) == [20, 70] and m.keyframes[70] == (-5.0, 2.0, 0.0)
    assert sorted(view.key_items) == [20, 70]
    m.select(keyframe=20)
    qtbot.keyClick(view, Qt.Key_Delete)
    assert sorted(m.keyframes) == [70] and sorted(view.key_items) == [70]
    qtbot.keyClick(view, Qt.Key_Z, Qt.ControlModifier)
    assert sorted(m.keyframes) == [20, 70]


def test_transport_keys_and_playback(qtbot, editor):
    win, ed = editor
    m, view = ed.model, ed.view
    add_speech(qtbot, ed, frame=0)
    ed.service.render_ahead = False            # keep the engine free; this test is about the clock
    qtbot.keyClick(view, Qt.Key_End)
    assert m.playhead == m.duration - 1
    qtbot.keyClick(view, Qt.Key_Home)
    assert m.playhead == 0
    qtbot.keyClick(view, Qt.Key_Right, Qt.ShiftModifier)
    assert m.playhead == 10

    qtbot.keyClick(view, Qt.Key_Space)
    assert ed.playback.playing and ed.viewer.playing
    qtbot.wait(700)
    qtbot.keyClick(view, Qt.Key_Space)
    assert not ed.playback.playing
    # The clock, not the renderer, sets the pace: ~0.7 s at 30 fps, frames dropped rather than queued.
    assert 10 + 10 <= m.playhead <= 10 + 40

    qtbot.keyClick(view, Qt.Key_L)
    qtbot.keyClick(view, Qt.Key_L)
    assert ed.playback.rate == 2 and ed.transport.rate.text().endswith("2×")
    qtbot.keyClick(view, Qt.Key_K)
    assert not ed.playback.playing
    qtbot.keyClick(view, Qt.Key_J)
    assert ed.playback.rate == -1
    qtbot.keyClick(view, Qt.Key_K)


def test_viewer_ab_mouth_zoom_and_cache(qtbot, editor):
    win, ed = editor
    m = ed.model
    add_speech(qtbot, ed, frame=0)
    m.set_playhead(30)
    qtbot.waitUntil(lambda: ed.viewer.shown_kind == "dubbed" and ed.viewer.shown_frame == 30, timeout=90_000)
    hits = ed.service.cache.hits
    assert ed.service.cached(30) is not None and ed.service.cache.hits == hits + 1

    qtbot.keyClick(ed.view, Qt.Key_Backslash)
    assert ed.transport.ab_btn.isChecked() and ed.viewer.shown_kind == "original"
    shown = ed.viewer.view.image
    orig = ed.service.original(30)
    assert (shown.width(), shown.height()) == (orig.shape[1], orig.shape[0])
    qtbot.keyClick(ed.view, Qt.Key_Backslash)
    assert ed.viewer.shown_kind == "dubbed"

    qtbot.keyClick(ed.view, Qt.Key_Z)
    z = ed.viewer.view._zoom
    assert z is not None and z.width() < orig.shape[1] / 2
    lips = ed.project.array("landmarks")[int(m.background([30])[0])][:, :2]
    assert np.isfinite(lips).all()

    # An edit to the audio makes the old frames unreachable (they were rendered for other speech).
    rev = m.mix_revision
    m.move_clip(m.clips[0].id, 5)
    assert m.mix_revision > rev and ed.service.cached(30) is None


def test_session_is_saved_and_restored(qtbot, editor, tmp_path):
    win, ed = editor
    root = ed.project.root
    c = add_speech(qtbot, ed, frame=12)
    ed.model.set_keyframe(30, (4.0, -2.0, 1.0))
    ed.model.set_in_point(12)
    win.close_project()
    assert win.current() == "start"
    assert win.open_project(root)
    ed2 = win.editor
    assert [(x.path, x.start, x.length) for x in ed2.model.clips] == [(c.path, 12, c.length)]
    assert ed2.model.keyframes == {30: (4.0, -2.0, 1.0)} and ed2.model.in_point == 12
    qtbot.waitUntil(lambda: ed2.model.has_source(c.path), timeout=30_000)
    assert np.abs(ed2.model.mix()).max() > 0.05
