"""Issue 14, training side: an honest loss chart, Train more, closing mid-run, numbers that add up."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PySide6.QtCore import Qt

from app_support import copy_project, make_window, prepared_short, trained_short, tiny_configs, wait_done


def trainer_history(steps, first_eval=True, evals=(20,), log_every=10):
    """What core.engine.train writes to history.json for a run of per-step losses (its averaging, restated)."""
    hist = [{"step": 0, "heldout_psnr": 18.0, "heldout_corr": 0.05, "static_psnr": 20.0, "mean_psnr": 19.0}] \
        if first_eval else []
    window = []
    for step, parts in steps:
        window.append(parts)
        if step % log_every == 0:
            hist.append({"step": step, "stage": "lip", "t": step * 0.5,
                         **{k: float(np.mean([w[k] for w in window])) for k in parts}})
            window = []
        if step in evals:
            hist.append({"step": step, "heldout_psnr": 20.0 + step / 10, "heldout_corr": 0.1 + step / 100})
    return hist


def fake_steps(a, b, seed=0):
    rng = np.random.default_rng(seed)
    return [(s, {"loss": float(1 / s + rng.uniform(0, 0.01)), "mouth_mse": float(0.5 / s + rng.uniform(0, 0.01)),
                 "depth": 0.0 if s % 2 else 0.01}) for s in range(a, b + 1)]


# --- 3: the chart -------------------------------------------------------------------------------------

def test_saved_history_draws_the_points_seen_live(qtbot):
    from speech2lip.app.wizard.loss_plot import EVAL, LossPlot, series_colour

    steps = fake_steps(1, 40)
    history = trainer_history(steps)
    live, saved = LossPlot(), LossPlot()
    qtbot.addWidget(live)
    qtbot.addWidget(saved)
    live.add_eval(0, history[0])
    for s, parts in steps:
        live.add(s, parts)
        if s == 20:
            live.add_eval(20, [h for h in history if h["step"] == 20 and "heldout_psnr" in h][0])
    saved.load_history(history)

    assert set(live.series) == set(saved.series) == {"loss", "mouth_mse", "depth", "heldout_psnr", "heldout_corr"}
    for name in saved.series:
        lx, ly = live.plotted(name)
        sx, sy = saved.plotted(name)
        np.testing.assert_allclose(lx, sx)
        np.testing.assert_allclose(ly, sy, rtol=1e-6)
        assert np.all(np.diff(sx) > 0)                    # drawn left to right: no line back to the start
        assert live.curves[name].opts["pen"].color().name() == series_colour(name)
        assert saved.curves[name].opts["pen"].color().name() == series_colour(name)
    # The plotted loss points are the trainer's 10-step means, at steps 10..40.
    x, y = saved.plotted("loss")
    assert list(x) == [10, 20, 30, 40]
    assert y[0] == pytest.approx(np.mean([p["loss"] for _, p in steps[:10]]))
    # The reloaded chart still has its plots on screen (a method named `clear` once wiped them).
    for chart in (live, saved):
        assert {chart.losses, *chart.evals.values()} <= set(chart.ci.items)
        assert chart.losses.scene() is chart.scene()
    # Evaluation figures sit on their own small plots, never on the log-scale loss plot.
    for name in EVAL:
        assert saved.curves[name] in saved.evals[name].listDataItems()
        assert saved.curves[name] not in saved.losses.listDataItems()
        assert list(saved.plotted(name)[0]) == [0, 20]
    # One colour per series: no two loss curves share one.
    colours = [series_colour(n) for n in saved.series if n not in EVAL]
    assert len(colours) == len(set(colours))


def test_resumed_history_never_draws_backwards(qtbot):
    """A run paused at 33 keeps history to 30; the resumed run logs 40, 50: the chart goes 10..50."""
    from speech2lip.app.wizard.loss_plot import LossPlot

    first = trainer_history(fake_steps(1, 33))
    resumed = first + trainer_history(fake_steps(34, 50, seed=1), first_eval=False, evals=())
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.load_history(resumed)
    x, _ = plot.plotted("loss")
    assert list(x) == [10, 20, 30, 40, 50]


def test_second_project_chart_is_drawn_and_reset(qtbot, tmp_path, tmp_path_factory):
    from speech2lip.app.wizard.loss_plot import LOG_EVERY
    from speech2lip.core.jobs import Progress

    a = copy_project(prepared_short(tmp_path_factory), tmp_path / "a")
    b = copy_project(prepared_short(tmp_path_factory), tmp_path / "b")
    win = make_window(qtbot, tmp_path)
    tp = win.train_page
    assert win.open_project(a)
    tp.steps.setValue(777)
    for s, parts in fake_steps(1, 500):
        tp._progress(Progress("train", s, 777, data={"losses": parts}))
    assert tp.plot.plotted("loss")[0][-1] == 500
    assert win.open_project(b)
    assert tp.plot.series == {} and tp.steps.value() != 777         # a new project: its own budget
    for s, parts in fake_steps(1, 3 * LOG_EVERY):
        tp._progress(Progress("train", s, 100, data={"losses": parts}))
    # The chart's redraw ticks (one new curve a tick): wait for the loss curve, however busy the CPU.
    qtbot.waitUntil(lambda: "loss" in tp.plot.curves and tp.plot.curves["loss"].xData is not None
                    and len(tp.plot.curves["loss"].xData) == 3, timeout=10_000)
    x, y = tp.plot.curves["loss"].xData, tp.plot.curves["loss"].yData
    assert list(x) == [10, 20, 30] and len(y) == 3
    assert tp.plot.losses.vb.viewRange()[0][1] <= 50                  # the axis is this project's
    win.close()


# --- 5: Train more ------------------------------------------------------------------------------------

def test_train_more_continues_from_the_saved_step(qtbot, tmp_path, tmp_path_factory, monkeypatch):
    from speech2lip.app import studio_state

    root = copy_project(trained_short(tmp_path_factory), tmp_path / "proj")      # a finished 3-step run
    win = make_window(qtbot, tmp_path, configs=tiny_configs)
    assert win.open_project(root)
    win.go("train")
    tp = win.train_page
    assert tp.current_step == 3
    tp.steps.setValue(3)
    assert tp.resume_btn.text().strip() == "Train more" and not tp.resume_btn.isEnabled()
    tp.steps.setValue(6)                                 # a bigger budget enables it
    assert tp.resume_btn.isEnabled()
    qtbot.mouseClick(tp.resume_btn, Qt.LeftButton)
    job = tp.job
    seen = []
    job.progress.connect(lambda p: seen.append((p.stage, p.done)))
    wait_done(qtbot, job, 180)
    assert job.state == "done", job.error
    assert ("resume", 3) in seen                          # continued from the checkpoint's step
    assert [d for s, d in seen if s == "train"][0] == 4
    assert job.result["steps"] == 6 and studio_state.last_step(root) == 6
    assert tp.stage.text().startswith("Done: 6 steps") and tp.resume_btn.text().strip() == "Train more"
    assert not tp.resume_btn.isEnabled()                 # the new budget is spent
    win.close()


# --- 6: closing mid-run ---------------------------------------------------------------------------------

def running_fake_training(tp):
    """A stand-in training job that runs until cancelled (no model is trained)."""
    import time as _t

    from speech2lip.app.worker import HIGH, Job
    from speech2lip.core.jobs import Cancelled, Progress

    def fake(progress, cancel):
        step = 0
        while not cancel.cancelled:
            step += 1
            progress(Progress("train", step, 1000, data={"losses": {"loss": 1.0}}))
            _t.sleep(0.02)
        raise Cancelled()

    job = Job("train", fake)
    job.cancelled.connect(tp._cancelled)
    job.finished.connect(tp._update_buttons)
    tp.job = job
    tp.ctx.engine.submit(job, HIGH)
    return job


def test_closing_during_training_asks_stop_or_keep(qtbot, tmp_path, tmp_path_factory):
    from PySide6.QtWidgets import QMessageBox

    root = copy_project(prepared_short(tmp_path_factory), tmp_path / "proj")
    win = make_window(qtbot, tmp_path)
    assert win.open_project(root)
    job = running_fake_training(win.train_page)
    qtbot.waitUntil(lambda: job.state == "running", timeout=10_000)

    def box():
        found = [b for b in win.findChildren(QMessageBox) if b.objectName() == "closeDuringTraining"
                 and b.isVisible()]
        return found[0] if found else None

    assert not win.close()                         # asked, not closed
    qtbot.waitUntil(lambda: box() is not None, timeout=5000)
    assert "step" in box().text()
    keep = [b for b in box().buttons() if b.text() == "Keep training"][0]
    qtbot.mouseClick(keep, Qt.LeftButton)
    qtbot.wait(200)
    assert win.isVisible() and job.state == "running"

    win.close()
    qtbot.waitUntil(lambda: box() is not None, timeout=5000)
    stop = [b for b in box().buttons() if b.text().startswith("Stop")][0]
    qtbot.mouseClick(stop, Qt.LeftButton)
    qtbot.waitUntil(lambda: not win.isVisible(), timeout=30_000)
    assert job.state == "cancelled"


# --- 7: the numbers ---------------------------------------------------------------------------------

def test_pause_reports_the_saved_step_and_one_rate(qtbot, tmp_path, tmp_path_factory, monkeypatch):
    from speech2lip.app.wizard import train_page as tpm
    from speech2lip.app.worker import Job
    from speech2lip.core.jobs import Progress

    root = copy_project(prepared_short(tmp_path_factory), tmp_path / "proj")
    (root / "checkpoints").mkdir(exist_ok=True)
    (root / "checkpoints" / "latest.pt").write_bytes(b"x")
    (root / "checkpoints" / "history.json").write_text(json.dumps({"history": trainer_history(fake_steps(1, 33))}))
    win = make_window(qtbot, tmp_path)
    assert win.open_project(root)
    tp = win.train_page
    tp.device = ("CPU (2 threads)", False)
    tp.steps.setValue(200)
    clock = [1000.0]
    monkeypatch.setattr(tpm.time, "monotonic", lambda: clock[0])
    job = Job("train", lambda progress, cancel: None)
    job.state = "running"
    tp.job = job
    tp._first, tp._rate, tp._firmed = None, None, False
    guess = tp.estimate.text()
    for s in range(1, 34):                         # 2 s a step, measured
        clock[0] += 2.0
        p = Progress("train", s, 200, data={"losses": {"loss": 1.0 / s}})
        job.last_report = p
        if s % 3 == 0 or s == 33:                  # the GUI sees only some reports (throttled)
            tp._progress(p)
    assert "0.50 steps/s" in tp.speed.text() and "ETA 0:05:34" in tp.speed.text()
    assert "0.50 steps/s" in tp.estimate.text() and tp.estimate.text() != guess    # re-estimated after a minute
    tp._cancelled()
    assert "Paused at step 33" in tp.stage.text()
    assert tp.speed.text() == ""                   # no ETA once paused
    tp._done({"steps": 200, "seconds": 400.0})
    assert tp.stage.text() == "Done: 200 steps in 0:06:40" and tp.speed.text() == "0.50 steps/s"
    win.close()


def test_live_chart_shows_a_provisional_point_until_the_window_closes(qtbot):
    from speech2lip.app.wizard.loss_plot import LossPlot

    plot = LossPlot()
    qtbot.addWidget(plot)
    steps = fake_steps(1, 13)
    for s, parts in steps:
        plot.add(s, parts)
    x, y = plot.plotted("loss")
    assert list(x) == [10, 13]                            # the 10-step mean, then the mean of 11..13 so far
    assert y[1] == pytest.approx(np.mean([p["loss"] for _, p in steps[10:]]))
    plot.end_run()                                        # paused: the trainer keeps no record of 11..13
    assert list(plot.plotted("loss")[0]) == [10]
