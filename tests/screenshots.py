"""Screenshots of every page of the app, for the README and for checking the look by eye.

    xvfb-run -a -s "-screen 0 1920x1200x24" python tests/screenshots.py [--project TRAINED_PROJECT]

Runs the real app on a virtual display and saves PNGs into docs/screenshots/:
start, import, prepare (running and done), train (mid-run), editor (mid-dub),
editor with the mouth zoom, export (mid-export) and, with --report, the
evaluation report. With --project (a trained project, e.g. made by
`speech2lip train`), the editor and training pages show that model; without
it, a 5.5 s cut of a real clip is prepared and trained for a few steps.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from app_support import CLIP, SPEECH, SPEECH_FLAC, short_clip, tiny_configs  # noqa: E402

OUT = HERE.parent / "docs" / "screenshots"
SIZE = (1600, 1000)


def wait_until(app, cond, timeout_s: float = 300.0, what: str = "") -> None:
    """Run the event loop until cond() holds (a script's version of qtbot.waitUntil)."""
    from PySide6.QtCore import QEventLoop, QTimer

    t0 = time.monotonic()
    loop = QEventLoop()
    timer = QTimer()
    timer.setInterval(50)
    timer.timeout.connect(lambda: (cond() or time.monotonic() - t0 > timeout_s) and loop.quit())
    timer.start()
    if not cond():
        loop.exec()
    timer.stop()
    if not cond():
        raise TimeoutError(f"timed out waiting for {what or cond}")


def pause(app, seconds: float) -> None:
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def step(text: str) -> None:
    print(f"… {text}", flush=True)


def shot(app, widget, name: str) -> Path:
    pause(app, 0.4)                       # let pending paints land
    path = OUT / f"{name}.png"
    widget.grab().save(str(path))
    print(f"saved {path.relative_to(HERE.parent)}")
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", type=Path, help="a trained project to show in the train and editor pages")
    ap.add_argument("--report", action="store_true", help="also run the evaluation and capture the report")
    args = ap.parse_args(argv)

    from PySide6.QtWidgets import QApplication


    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="s2l-shots-"))
    app = QApplication(sys.argv[:1])
    app.setApplicationName("Speech2Lip Studio")
    from speech2lip.app import theme
    from speech2lip.app.mainwindow import MainWindow
    from speech2lip.app.settings import AppSettings

    theme.apply(app)
    settings = AppSettings(work / "settings.ini")
    settings.set_projects_dir(work / "projects")
    win = None
    try:
        clip = short_clip(work / "media" / "address.mp4")
        trained = None
        if args.project is not None:
            trained = work / "projects" / args.project.name
            shutil.copytree(args.project, trained, ignore=shutil.ignore_patterns("eval", "eval_cross"))
            settings.add_recent(trained)

        # A few steps when training here: this is about the look.
        win = MainWindow(settings, configs=tiny_configs if args.project is None else None)
        win.resize(*SIZE)
        win.show()
        pause(app, 0.5)

        # Import
        job = win.new_from_clip(CLIP if CLIP.exists() else clip)
        wait_until(app, lambda: win.import_page.report is not None, 120, "clip inspection")
        shot(app, win, "import")

        # Prepare: mid-run, then the diagnostics
        win.import_page.folder.setText(str(work / "projects" / "address"))
        job = win.prepare_page.start(str(clip), str(work / "projects" / "address"))
        win.go("prepare")
        wait_until(app, lambda: win.prepare_page.rows["faces"].state == "running"
                   and win.prepare_page.rows["faces"].bar.value() > 300, 300, "face tracking")
        shot(app, win, "prepare_running")
        wait_until(app, lambda: job.state in ("done", "failed", "cancelled"), 600, "prepare")
        wait_until(app, lambda: win.project is not None, 30, "project open")
        shot(app, win, "prepare")

        # Train: mid-run with live curves and previews
        step("training")
        if trained is not None:
            win.open_project(trained)
        win.go("train")
        tp = win.train_page
        if trained is None:
            tp.steps.setValue(12)
            run = tp.start()
        else:
            from speech2lip.app import studio_state

            done = studio_state.last_step(trained)
            every = tp._resume_config().train.preview_every if tp._resume_config() else 100
            target = (done // every + 1) * every + 30       # the run crosses a preview step, then goes on
            tp.steps.setValue(target)
            studio_state.update(trained, train={"preset": tp.preset.currentData(), "steps": target,
                                                "minutes": None, "finished": False})
            run = tp.start(resume=True)
        wait_until(app, lambda: (tp.mouths.image is not None and tp._rate is not None)
                   or run.state in ("failed", "done"), 900, "training previews")
        if run.state == "failed":
            raise RuntimeError(f"training failed: {run.error}")
        pause(app, 3)
        shot(app, win, "train")
        tp.stop(finish=True)
        wait_until(app, lambda: run.state in ("done", "cancelled", "failed"), 300, "training to stop")

        # The start page, now with projects on it
        win.go("start")
        shot(app, win, "start")

        # Editor mid-dub
        step("editor")
        if trained is not None:
            win.open_project(trained)
        win.go("dub")
        ed = win.editor
        pause(app, 0.5)
        ed.add_audio_files([str(SPEECH_FLAC)], 0, 0)
        wait_until(app, lambda: len(ed.model.clips) == 1, 120, "audio")
        first = ed.model.clips[0]
        ed.add_audio_files([str(SPEECH)], 1, first.end + 15)
        wait_until(app, lambda: len(ed.model.clips) == 2, 120, "audio")
        m = ed.model
        m.set_keyframe(40, (0.0, 0.0, 0.0))
        m.set_keyframe(110, (8.0, -3.0, 0.0))
        m.set_keyframe(200, (-6.0, 2.0, 2.0))
        m.set_in_point(30)
        m.set_out_point(250)
        ed.view.fit()
        m.set_playhead(96)
        m.select(clips=[first.id])
        wait_until(app, lambda: ed.viewer.shown_kind == "dubbed" and ed.viewer.shown_frame == 96, 300, "preview")
        pause(app, 2)
        shot(app, win, "editor")
        ed.transport.zoom_btn.setChecked(True)
        shot(app, win, "editor_mouth_zoom")
        ed.transport.zoom_btn.setChecked(False)
        win.resize(1280, 800)            # the smallest laptop layout: nothing may clip or widen
        pause(app, 1)
        shot(app, win, "editor_1280x800")
        win.resize(*SIZE)
        pause(app, 0.5)

        # Export mid-run
        step("export")
        dlg = ed.export()
        dlg.path.setText(str(work / "exports" / "dub.mp4"))
        job = dlg.start()
        wait_until(app, lambda: dlg.bar.value() > 150, 600, "export progress")
        shot(app, dlg, "export")
        dlg.job.cancel()
        wait_until(app, lambda: job.state in ("done", "cancelled", "failed"), 120)
        dlg.close()

        if args.report:
            from speech2lip.app.wizard.report_dialog import ReportDialog, run_evaluation

            ev = run_evaluation(win, win.ctx, win.project)
            wait_until(app, lambda: ev.job.state in ("done", "failed", "cancelled"), 1800, "evaluation")
            pause(app, 1)
            reports = [w for w in app.topLevelWidgets() if isinstance(w, ReportDialog) and w.isVisible()]
            if reports:
                reports[-1].resize(1200, 900)
                shot(app, reports[-1], "report")
    finally:
        if win is not None:
            win.close()                  # stops the worker threads before the process ends
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
