"""Issue 13, item 1 in the app: "Start over" on a trained project keeps the previous run."""
from __future__ import annotations

from app_support import copy_project, make_window, trained_short, tiny_configs, wait_done


def test_start_over_keeps_the_previous_run(qtbot, tmp_path, tmp_path_factory, monkeypatch):
    root = copy_project(trained_short(tmp_path_factory), tmp_path / "proj")
    before = (root / "checkpoints" / "latest.pt").read_bytes()
    win = make_window(qtbot, tmp_path, configs=tiny_configs)
    assert win.open_project(root)
    tp = win.train_page
    win.go("train")
    tp.steps.setValue(2)
    job = tp.start()                       # what the dialog's "Start over" button runs
    wait_done(qtbot, job, 120)
    assert job.state == "done", job.error if hasattr(job, "error") else job.state
    assert (root / "checkpoints" / "run-1" / "latest.pt").read_bytes() == before
    assert (root / "checkpoints" / "latest.pt").read_bytes() != before
