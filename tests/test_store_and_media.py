"""The project store (atomic writes, schema checks), media I/O and the core/Qt boundary."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from speech2lip.core import media as media_mod
from speech2lip.core.errors import ProjectError
from speech2lip.core.project import Project, atomic_path, user_data_dir, write_json


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "a.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_corrupt_and_newer_manifests_are_refused_clearly(project_copy):
    path = project_copy / "project.json"
    good = json.loads(path.read_text())
    path.write_text("{ not json")
    with pytest.raises(ProjectError, match="corrupt"):
        Project(project_copy)
    path.write_text(json.dumps({**good, "schema_version": 99}))
    with pytest.raises(ProjectError, match="newer Speech2Lip Studio"):
        Project(project_copy)
    path.write_text(json.dumps({k: v for k, v in good.items() if k != "mouth_box"}))
    with pytest.raises(ProjectError, match="missing mouth_box"):
        Project(project_copy)
    with pytest.raises(ProjectError, match="not a prepared project"):
        Project(project_copy / "nowhere")


def test_user_data_dir_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv("SPEECH2LIP_DATA_DIR", str(tmp_path))
    assert user_data_dir() == tmp_path


def test_probe_and_audio_of_real_media(media, speech):
    info = media_mod.probe(media["reagan"])
    assert (info.width, info.height, info.fps) == (256, 256, 30.0)
    assert info.has_audio and abs(info.duration - 26.0) < 0.1
    wave = media_mod.read_audio(speech["jfk"])      # 44.1 kHz stereo 24-bit FLAC
    assert wave.dtype == np.float32 and abs(len(wave) / 16000 - 11.0) < 0.05


def test_rotation_metadata_is_honoured(media, tmp_path):
    src, rotated = tmp_path / "wide.mp4", tmp_path / "rotated.mp4"
    ff = media_mod.ffmpeg_exe()
    subprocess.run([ff, "-y", "-loglevel", "error", "-i", str(media["obama_a"]), "-t", "1",
                    "-vf", "crop=256:128:0:64", str(src)], check=True)
    subprocess.run([ff, "-y", "-loglevel", "error", "-display_rotation", "90", "-i", str(src),
                    "-c", "copy", str(rotated)], check=True)
    info = media_mod.probe(rotated)
    assert (info.width, info.height) == (128, 256)
    assert next(media_mod.read_frames(rotated)).shape == (256, 128, 3)


def test_video_writer_streams_frames_and_audio(tmp_path):
    out = tmp_path / "out.mp4"
    wave = (0.1 * np.sin(np.linspace(0, 2000, 16000 * 2))).astype(np.float32)
    with media_mod.VideoWriter(out, (96, 64), 30, audio=wave) as vw:
        for i in range(60):
            vw.write(np.full((64, 96, 3), i * 4, np.uint8))
    info = media_mod.probe(out)
    assert (info.width, info.height, info.fps) == (96, 64, 30.0) and info.has_audio
    assert sum(1 for _ in media_mod.read_frames(out)) == 60
    assert abs(len(media_mod.read_audio(out)) / 16000 - 2.0) < 0.1


def test_video_writer_leaves_no_file_on_error(tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError):
        with media_mod.VideoWriter(out, (64, 64), 30) as vw:
            vw.write(np.zeros((64, 64, 3), np.uint8))
            raise RuntimeError("cancelled")
    assert list(tmp_path.iterdir()) == []


def test_core_never_imports_qt():
    """The import-linter contract in pyproject.toml: core/ must stay headless."""
    exe = shutil.which("lint-imports")
    assert exe, "import-linter is part of the test extra"
    proc = subprocess.run([exe], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "core never imports Qt KEPT" in proc.stdout
