"""The app as a daily tool (issue 14): autosave that survives a crash, and every advertised shortcut works."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence

from app_support import copy_project, make_window, trained_short


@pytest.fixture()
def editor(qtbot, tmp_path, tmp_path_factory):
    root = copy_project(trained_short(tmp_path_factory), tmp_path / "proj")
    win = make_window(qtbot, tmp_path)
    assert win.open_project(root) and win.current() == "dub"
    ed = win.editor
    qtbot.waitUntil(lambda: ed.view.viewport().width() > 300, timeout=5000)
    win.activateWindow()
    ed.view.setFocus()
    yield win, ed
    win.close()


def saved_session(root):
    return json.loads((root / "studio.json").read_text())["session"]


# --- 1: autosave ------------------------------------------------------------------------------------

def test_edits_autosave_with_a_marker_and_ctrl_s(qtbot, editor):
    win, ed = editor
    root, m = ed.project.root, ed.model
    before = (root / "studio.json").read_text() if (root / "studio.json").exists() else ""
    m.set_keyframe(20, (5.0, 0.0, 0.0))
    assert m.dirty and win.isWindowModified() and "Unsaved" in win.saved_label.text()
    assert ed.autosave.isActive()
    qtbot.waitUntil(lambda: not m.dirty, timeout=10_000)        # debounced: written a moment later
    assert saved_session(root)["keyframes"] == [[20, 5.0, 0.0, 0.0]]
    assert not win.isWindowModified() and win.saved_label.text() == "Saved"
    assert (root / "studio.json").read_text() != before

    # A burst of edits is written once, after the last.
    writes = []
    real = ed.save_session
    ed.save_session = lambda: writes.append(1) or real()
    ed.autosave.timeout.disconnect()
    ed.autosave.timeout.connect(ed.save_session)
    for f in (30, 31, 32):
        m.set_keyframe(f, (1.0, 1.0, 0.0))
    qtbot.waitUntil(lambda: not m.dirty, timeout=10_000)
    assert writes == [1] and len(saved_session(root)["keyframes"]) == 4

    # File > Save with Ctrl+S writes at once, without waiting for the timer.
    m.set_in_point(7)
    assert m.dirty
    qtbot.keyClick(ed.view, Qt.Key_S, Qt.ControlModifier)
    assert not m.dirty and saved_session(root)["in"] == 7 and not ed.autosave.isActive()


CRASH_SCRIPT = """
import os, signal, sys
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from speech2lip.app.main import create_window

win = create_window([sys.argv[1]])
app = QApplication.instance()

def edit():
    if win.editor is None:
        QTimer.singleShot(100, edit)
        return
    win.editor.model.set_keyframe(42, (7.5, -3.0, 0.0))
    win.editor.model.set_out_point(90)
    QTimer.singleShot(4000, lambda: os.kill(os.getpid(), signal.SIGKILL))   # a crash: no closeEvent

QTimer.singleShot(0, edit)
app.exec()
"""


@pytest.mark.slow
def test_a_killed_app_reopens_with_the_last_edit(qtbot, tmp_path, tmp_path_factory):
    root = copy_project(trained_short(tmp_path_factory), tmp_path / "proj")
    script = tmp_path / "crash.py"
    script.write_text(textwrap.dedent(CRASH_SCRIPT))
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "SPEECH2LIP_SETTINGS": str(tmp_path / "crash.ini")}
    proc = subprocess.run([sys.executable, str(script), str(root)], env=env, timeout=240)
    assert proc.returncode == -9                               # it really was killed

    win = make_window(qtbot, tmp_path)
    assert win.open_project(root) and win.current() == "dub"
    m = win.editor.model
    assert m.keyframes == {42: (7.5, -3.0, 0.0)} and m.out_point == 90
    assert not m.dirty and not win.isWindowModified()
    win.close()


# --- 2: shortcuts -----------------------------------------------------------------------------------

def key_event(seq: QKeySequence):
    combo = seq[0]
    return combo.key(), combo.keyboardModifiers()


def test_every_advertised_shortcut_fires_by_key(qtbot, editor, monkeypatch):
    from PySide6.QtWidgets import QDialog, QFileDialog

    win, ed = editor
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: ("", ""))
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", lambda *a, **k: ([], ""))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: "")
    ed.service.render_ahead = False
    ed.model.set_keyframe(10, (1.0, 0.0, 0.0))                 # something to undo and redo
    actions = dict(ed.actions_by_name)
    actions.update({a.text(): a for a in win.findChildren(type(win.save_act))
                    if a.shortcuts() and a.text() not in ("Quit", "Close project")})
    fired: list[str] = []
    for name, a in actions.items():
        a.triggered.connect(lambda _=False, n=name: fired.append(n))

    # No sequence may belong to two actions, or to one action twice: Qt then fires nothing.
    owners: dict[str, str] = {}
    for name, a in actions.items():
        for s in a.shortcuts():
            text = s.toString()
            assert text not in owners, f"{text} is given to {owners[text]} and {name}"
            owners[text] = name

    for name, a in actions.items():
        for seq in a.shortcuts():
            key, mods = key_event(seq)
            ed.view.setFocus()
            fired.clear()
            qtbot.keyClick(ed.view, key, mods)
            assert fired == [name], f"{seq.toString()} should trigger {name!r}, fired {fired}"
            if name == "Export…":
                ed._export.reject()
            for box in win.findChildren(QDialog):
                box.close()
            if name == "Undo":
                ed.model.undo.redo()
            if name == "Redo":
                ed.model.undo.undo()
            ed.playback.pause()

    # The ones in the Edit menu, tooltip and shortcuts dialog, by name.
    from speech2lip.app.editor.editor_page import SHORTCUTS

    assert ("Ctrl+Z / Ctrl+Shift+Z", "undo / redo") in SHORTCUTS
    assert QKeySequence("Ctrl+Shift+Z") in actions["Redo"].shortcuts()
    assert QKeySequence("Ctrl+S") in actions["Save"].shortcuts()


def test_x11_redo_binding_is_not_duplicated(monkeypatch):
    """On X11 QKeySequence.Redo is Ctrl+Shift+Z itself: adding it again by hand made it ambiguous."""
    from speech2lip.app.keys import key_sequences

    x11 = {QKeySequence.Redo: [QKeySequence("Ctrl+Shift+Z")], QKeySequence.Undo: [QKeySequence("Ctrl+Z")]}
    monkeypatch.setattr(QKeySequence, "keyBindings", staticmethod(lambda k: x11[k]))
    seqs = [s.toString() for s in key_sequences(QKeySequence.Redo, "Ctrl+Shift+Z", "Ctrl+Y")]
    assert seqs == ["Ctrl+Shift+Z", "Ctrl+Y"]
    assert [s.toString() for s in key_sequences(QKeySequence.Undo)] == ["Ctrl+Z"]


# --- 4: the window stays put ---------------------------------------------------------------------------

def clipped_texts(win) -> list[str]:
    """Buttons and one-line labels narrower than their text needs (what the user sees cut off)."""
    from PySide6.QtWidgets import QAbstractButton, QLabel

    from speech2lip.app.widgets import ElidedLabel

    out = []
    for w in win.findChildren(QAbstractButton) + win.findChildren(QLabel):
        if not w.isVisibleTo(win) or isinstance(w, ElidedLabel) or not w.text():
            continue
        if isinstance(w, QLabel) and (w.wordWrap() or w.textFormat() == Qt.RichText or "<" in w.text()):
            continue
        if w.width() + 1 < w.sizeHint().width():
            out.append(f"{type(w).__name__} {w.text()!r}: {w.width()} < {w.sizeHint().width()}")
    return out


def test_long_status_text_never_widens_the_window(qtbot, editor):
    win, ed = editor
    win.resize(1280, 800)
    qtbot.wait(100)
    assert win.width() == 1280 and win.minimumSizeHint().width() <= 1280
    ed.model.set_pending_pose((3.0, 0.0, 0.0))                    # "… · unsaved change" in the pose panel
    ed.model.set_playhead(ed.model.n_source - 1)
    long = " · ".join(["1620 frames cached", "38 ms/frame", "12 dropped", "no audio device: silent playback"] * 3)
    ed.transport.info.setText(long)
    shown, tip = ed.transport.info.shown_text(), ed.transport.info.toolTip()
    win.job_label.setText("Exporting… " + "x" * 300)
    for _ in range(3):
        qtbot.wait(50)
    assert win.width() == 1280 and win.minimumSizeHint().width() <= 1280
    assert clipped_texts(win) == []
    assert tip == long and shown.endswith("…")           # the whole text stays in the tooltip
    assert clipped_texts(win) == []
    usual = "120 frames cached (23 of 512 MB) · 38 ms/frame"
    info = ed.transport.info          # measured, not read back: a render finishing may reset the text
    assert info.fontMetrics().horizontalAdvance(usual) <= info.contentsRect().width()   # a usual line is not cut
    win.go("train")
    tp = win.train_page
    tp.stage.setText("Step 123456 / 1000000 · blend stage " * 4)
    qtbot.wait(50)
    assert win.width() == 1280 and clipped_texts(win) == []
    tp.stage.setText("Done: 200 steps in 0:06:40")
    tp.speed.setText("0.51 steps/s · ETA 0:12:34 (measuring…)")
    qtbot.wait(50)
    assert tp.stage.shown_text() == tp.stage.text() and tp.speed.shown_text() == tp.speed.text()


# --- 8: the frame cache is bounded in bytes, keeps frames near the playhead ----------------------------

def test_frame_cache_evicts_far_and_unreachable_frames_first():
    import numpy as np

    from speech2lip.app.editor.frame_cache import FrameCache

    frame = np.zeros((64, 64, 3), np.uint8)
    cache = FrameCache(10 * frame.nbytes)
    rev = [0]
    cache.is_live = lambda k: k[0] == rev[0]
    cache.set_focus(50)
    for f in list(range(40, 61)) + list(range(0, 10)):        # far frames rendered last (LRU would keep them)
        cache.put((0, f, (0.0, 0.0, 0.0)), frame)
    assert cache.nbytes <= 10 * frame.nbytes
    held = cache.frames()
    assert all(abs(f - 50) <= 6 for f in held if f != 9), held  # the newest put stays until the next one
    rev[0] = 1                                                    # an edit: everything held is unreachable
    cache.put((1, 0, (0.0, 0.0, 0.0)), frame)
    cache.put((1, 1, (0.0, 0.0, 0.0)), frame)
    n = len(cache)
    assert cache.prune() == n - 2 and cache.frames() == [0, 1]
    cache.set_limit(frame.nbytes)
    assert len(cache) == 1


def test_editor_cache_limit_comes_from_preferences(qtbot, editor):
    win, ed = editor
    from speech2lip.app.editor.frame_cache import DEFAULT_MB

    cache = ed.service.cache
    assert cache.max_bytes == DEFAULT_MB * 2**20
    ed.model.set_playhead(33)
    assert cache.focus == 33
    dlg = win.preferences()
    dlg.cache_mb.setValue(128)
    dlg.accept()
    assert cache.max_bytes == 128 * 2**20 and win.ctx.settings.preview_cache_mb() == 128
    assert "of 128 MB" in (ed._status() or ed.transport.info.full_text())
