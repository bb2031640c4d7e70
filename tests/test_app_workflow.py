"""The whole path a new user takes, driven through the GUI on a real clip:
drop a clip -> import -> prepare -> train a few steps -> editor -> drop speech on the
timeline -> step frames -> pose keyframe -> export -> check the MP4.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt

from app_support import SPEECH, TINY_STEPS, drop_urls, make_window, short_clip, tiny_configs, wait_done

pytestmark = pytest.mark.slow


def test_clip_to_exported_mp4(qtbot, tmp_path, monkeypatch):
    from speech2lip.app.editor.timeline_items import audio_y
    from speech2lip.core.media import probe, read_audio, read_frames

    clip = short_clip(tmp_path / "media" / "talk.mp4")
    win = make_window(qtbot, tmp_path, configs=tiny_configs)

    # Import: dropping the video anywhere on the window starts a project.
    drop_urls(qtbot, win, [clip])
    ip = win.import_page
    qtbot.waitUntil(lambda: ip.report is not None, timeout=60_000)
    assert win.current() == "import"
    assert ip.facts["Duration"].text().startswith("0:05")
    assert ip.facts["Resolution"].text().startswith("256 × 256")
    assert ip.report.face_box is not None and ip.report.coverage > 0.9
    assert any("Short clip" in w for w in ip.report.warnings)
    root = Path(ip.folder.text())
    assert root.parent == tmp_path / "projects" and not root.exists()

    # Prepare: every stage completes and the diagnostics show.
    pp = win.prepare_page
    with qtbot.waitSignal(pp.prepared, timeout=240_000):
        qtbot.mouseClick(ip.prepare_btn, Qt.LeftButton)
    assert all(r.state == "done" for r in pp.rows.values())
    assert all(v.image is not None and not v.image.isNull() for v in pp.pictures.values())
    assert (root / "project.json").is_file() and win.project is not None

    # Train a few steps: live losses and previews arrive, a checkpoint is written.
    qtbot.mouseClick(pp.next_btn, Qt.LeftButton)
    tp = win.train_page
    assert win.current() == "train" and not tp.editor_btn.isEnabled()
    tp.steps.setValue(TINY_STEPS)
    with qtbot.waitSignal(tp.trained, timeout=240_000):
        qtbot.mouseClick(tp.start_btn, Qt.LeftButton)
    assert (root / "checkpoints" / "latest.pt").is_file()
    # The chart is rebuilt from history.json: the held-out figures at steps 0 and TINY_STEPS (losses
    # are logged every 10 steps, so a 3-step run has none; they showed live as a provisional point).
    assert tp.plot.series["heldout_psnr"][0] == [0.0, float(TINY_STEPS)] and "heldout_psnr" in tp.plot.evals
    assert tp.mouths.image is not None and tp.blended.image is not None
    assert tp.editor_btn.isEnabled()

    # Editor: drop speech on audio track A1 at frame 15.
    qtbot.mouseClick(tp.editor_btn, Qt.LeftButton)
    ed = win.editor
    assert win.current() == "dub"
    view = ed.view
    qtbot.waitUntil(lambda: view.viewport().width() > 300, timeout=5000)
    x = int(round(15 * view.ppf)) - view.horizontalScrollBar().value()
    y = int(audio_y(0) + 20) - view.verticalScrollBar().value()
    drop_urls(qtbot, view.viewport(), [SPEECH], QPoint(x, y))
    qtbot.waitUntil(lambda: len(ed.model.clips) == 1, timeout=30_000)
    c = ed.model.clips[0]
    wave = read_audio(SPEECH)
    assert c.track == 0 and abs(c.start - 15) <= 1
    assert c.length == int(np.ceil(len(wave) / 16000 * ed.model.fps))
    assert ed.model.duration == c.end

    # Step frames with the keyboard.
    win.activateWindow()
    view.setFocus()
    ed.model.set_playhead(c.start + 20)
    qtbot.keyClick(view, Qt.Key_Right)
    assert ed.model.playhead == c.start + 21
    qtbot.keyClick(view, Qt.Key_Left)
    qtbot.keyClick(view, Qt.Key_Left)
    ph = ed.model.playhead
    assert ph == c.start + 19
    assert ed.transport.timecode.text() == ed.model.timecode(ph)

    # The viewer shows the dubbed frame, which differs from the original only near the mouth.
    qtbot.waitUntil(lambda: ed.viewer.shown_kind == "dubbed" and ed.viewer.shown_frame == ph, timeout=90_000)
    dubbed = ed.service.cached(ph).astype(np.int16)
    original = ed.service.original(ph).astype(np.int16)
    changed = np.abs(dubbed - original).max(-1) > 8
    assert changed.any()
    ys, xs = np.nonzero(changed)
    from speech2lip.app.editor.preview import mouth_rect

    box = mouth_rect(ed.project, int(ed.model.background([ph])[0]))
    assert box.left() - 40 < np.median(xs) < box.right() + 40 and box.top() - 40 < np.median(ys) < box.bottom() + 40

    # Pose keyframe: move the yaw slider (the preview updates), then set the keyframe.
    ed.pose.sliders["yaw"].setValue(80)
    assert ed.model.pending_pose == (8.0, 0.0, 0.0)
    qtbot.waitUntil(lambda: ed.viewer.shown_kind == "dubbed" and ed.service.key(ph)[2] == (8.0, 0.0, 0.0)
                    and ed.service.cached(ph) is not None, timeout=90_000)
    turned = ed.service.cached(ph)
    assert np.abs(turned.astype(np.int16) - dubbed).max() > 20
    qtbot.mouseClick(ed.pose.key_btn, Qt.LeftButton)
    assert ed.model.keyframes == {ph: (8.0, 0.0, 0.0)}
    assert ph in view.key_items and view.key_items[ph].x() == pytest.approx(ph * view.ppf)

    # In/out points for a one-second export, then export.
    ed.model.set_playhead(c.start)
    qtbot.keyClick(view, Qt.Key_I)
    ed.model.set_playhead(c.start + 29)
    qtbot.keyClick(view, Qt.Key_O)
    assert ed.model.range() == (c.start, c.start + 30)
    dlg = ed.export()
    assert dlg.inout.isChecked()
    out = tmp_path / "exports" / "dub.mp4"
    dlg.path.setText(str(out))
    qtbot.mouseClick(dlg.export_btn, Qt.LeftButton)
    job = dlg.job
    wait_done(qtbot, job, 240)
    assert job.state == "done", job.error
    assert dlg.show_btn.isVisible()
    assert sorted(p.name for p in out.parent.iterdir()) == ["dub.mp4"]     # no temp files left
    info = probe(out)
    assert info.has_audio and (info.width, info.height) == (256, 256) and info.fps == pytest.approx(30.0)
    assert info.duration == pytest.approx(1.0, abs=0.1)
    assert sum(1 for _ in read_frames(out)) == 30
    heard = read_audio(out)
    expect = ed.model.mix(c.start, c.start + 30)
    n = min(len(heard), len(expect))
    assert abs(len(heard) - len(expect)) < 1600
    assert np.corrcoef(heard[:n], expect[:n])[0, 1] > 0.9               # the dub's audio is the timeline's
    win.close()
