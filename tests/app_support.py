"""Helpers for the GUI tests: short real clips, a faceless clip, tiny training, waiting on jobs.

GUI tests drive the real engine on a 5.5 s cut of a real clip with a tiny
training budget (2 frames a step, no sync stage), so the whole GUI suite stays
within a few minutes on two shared cores.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"
CLIP = MEDIA / "obama_address_a.mp4"
SPEECH = MEDIA / "speech" / "librivox_austen_0920.wav"
SPEECH_FLAC = MEDIA / "speech" / "jfk_inaugural.flac"
TINY_STEPS = 3

_CACHE: dict[str, Path] = {}


def short_clip(dst: Path, seconds: float = 5.5, src: Path = CLIP) -> Path:
    """The first `seconds` of a real clip, re-encoded (prepare needs at least 5 s)."""
    from speech2lip.core.media import ffmpeg_exe

    dst.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(src), "-t", f"{seconds}",
                    "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", str(dst)], check=True)
    return dst


def faceless_clip(dst: Path, seconds: float = 5.5, fps: float = 30.0, side: int = 128) -> Path:
    """Noise frames with noise audio: a valid video without any face."""
    from speech2lip.core.media import VideoWriter

    rng = np.random.default_rng(0)
    wave = (rng.standard_normal(int(seconds * 16000)) * 0.05).astype(np.float32)
    with VideoWriter(dst, (side, side), fps, audio=wave) as vw:
        for _ in range(int(seconds * fps)):
            vw.write(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
    return dst


def tiny_config():
    from speech2lip.core.config import quick

    cfg = quick()
    cfg.train = replace(cfg.train, batch=2, sync=False, eval_every=10**6, preview_every=1, checkpoint_every=1)
    return cfg


def tiny_configs(name: str):
    """The app's config factory for tests: its 'quick' preset trains a tiny model."""
    from speech2lip.core.config import preset

    return tiny_config() if name == "quick" else preset(name)


def prepared_short(tmp_path_factory) -> Path:
    """A project prepared (by core) from the short clip, once per session; copy before changing it."""
    if "prepared" not in _CACHE:
        from speech2lip.core.prepare.job import prepare

        base = tmp_path_factory.mktemp("app_prepared")
        prepare(short_clip(base / "short.mp4"), base / "short")
        _CACHE["prepared"] = base / "short"
    return _CACHE["prepared"]


def trained_short(tmp_path_factory) -> Path:
    """The short project after a tiny training run, once per session; copy before changing it."""
    if "trained" not in _CACHE:
        from speech2lip.core.engine.train import train

        base = tmp_path_factory.mktemp("app_trained")
        root = base / "short"
        shutil.copytree(prepared_short(tmp_path_factory), root)
        train(root, steps=TINY_STEPS, config=tiny_config())
        _CACHE["trained"] = root
    return _CACHE["trained"]


def copy_project(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def make_window(qtbot, tmp_path: Path, configs=None):
    """A main window with its own settings file and projects folder; configs: the app's config factory."""
    from speech2lip.app import theme
    from speech2lip.app.mainwindow import MainWindow
    from speech2lip.app.settings import AppSettings
    from PySide6.QtWidgets import QApplication

    theme.apply(QApplication.instance())
    settings = AppSettings(tmp_path / "settings.ini")
    settings.set_projects_dir(tmp_path / "projects")
    win = MainWindow(settings, configs=configs)
    if settings.state("window/geometry") is None:     # a reopened window keeps its saved size
        win.resize(1440, 900)
    qtbot.addWidget(win)
    win.show()
    return win


def wait_done(qtbot, job, timeout_s: float = 120.0) -> None:
    """Block the test (not the GUI) until a Job finished, with its signals delivered."""
    qtbot.waitUntil(lambda: job.state in ("done", "failed", "cancelled"), timeout=int(timeout_s * 1000))
    qtbot.wait(50)


def drop_urls(qtbot, widget, paths, pos=None) -> None:
    """Send a real drag-enter + drop of file URLs onto `widget` at `pos` (widget coordinates)."""
    from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
    from PySide6.QtGui import QDragEnterEvent, QDropEvent
    from PySide6.QtWidgets import QApplication

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    pos = pos or QPoint(widget.width() // 2, widget.height() // 2)
    enter = QDragEnterEvent(pos, Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(widget, enter)
    drop = QDropEvent(QPointF(pos), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(widget, drop)
