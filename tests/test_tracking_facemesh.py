"""The default tracker (Face Mesh through onnxruntime): agreement with mediapipe, tracker choice, bad input."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from speech2lip.core import tracking as T
from speech2lip.core.faces import LIPS, FaceTracker
from speech2lip.core.media import read_frames
from speech2lip.core.project import Project
from speech2lip.core.tracking import facemesh as FM

REFERENCE = Path(__file__).parent / "data" / "mediapipe_0.10.21_landmarks.npz"


@pytest.fixture(scope="module")
def first_frames(media):
    return {k: [f for _, f in zip(range(12), read_frames(media[k]))] for k in ("obama_a", "reagan")}


def test_landmarks_agree_with_mediapipe_within_a_fraction_of_a_pixel(first_frames):
    """Reference: mediapipe 0.10.21's legacy FaceMesh (refine_landmarks, video mode) on the same
    frames, saved once. Distances in pixels of a 256 px face box; the pipeline or a model file
    going wrong moves them by pixels, not tenths (OpenCV 4 and 5 resample a little differently)."""
    ref = np.load(REFERENCE)
    for name, frames in first_frames.items():
        be = FM.FaceMeshBackend()
        got = np.stack([be.faces(f)[0].landmarks for f in frames])
        want = ref[name]
        box = np.ptp(want[:, :, :2], axis=1).max(-1)[:, None]
        d = np.linalg.norm(got[:, :, :2] - want[:, :, :2], axis=-1) * 256 / box
        assert d.mean() < 0.15 and d[:, LIPS].mean() < 0.3, (name, d.mean(), d[:, LIPS].mean())
        assert d[:, 468:].mean() < 0.15           # irises come from the refinement heads
        z = np.abs(got[:, :, 2] - want[:, :, 2]) * 256 / box
        assert z.mean() < 0.2


def test_detector_finds_both_faces_side_by_side_and_none_on_a_blank(first_frames):
    pair = np.hstack([first_frames["obama_a"][0], first_frames["reagan"][0]])
    be = FM.FaceMeshBackend(max_faces=2, static=True)
    assert len(be.detect(pair)) == 2
    faces = be.faces(pair)
    assert len(faces) == 2 and all(f.score > 0.5 and f.landmarks.shape == (478, 3) for f in faces)
    assert sorted(int(f.landmarks[:, 0].mean() > 256) for f in faces) == [0, 1]     # one on each side
    assert be.faces(np.zeros((240, 320, 3), np.uint8)) == []


def test_the_follower_keeps_tracking_without_the_detector(first_frames, monkeypatch):
    """After the first frame the region comes from the landmarks: the detector runs once."""
    be = FM.FaceMeshBackend()
    calls = []
    real = be.detect
    monkeypatch.setattr(be, "detect", lambda rgb: calls.append(1) or real(rgb))
    for f in first_frames["obama_a"]:
        assert len(be.faces(f)) == 1
    assert len(calls) == 1


def test_prepare_records_the_tracker(obama_project):
    assert Project(obama_project).manifest.tracker == "facemesh"


def test_an_unknown_tracker_is_one_line_and_exit_2_before_any_work(media, tmp_path):
    out = subprocess.run([sys.executable, "-m", "speech2lip.core.cli", "prepare", str(media["obama_a"]),
                          "--project", str(tmp_path / "p"), "--tracker", "dlib"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    err = [line for line in out.stderr.splitlines() if "error" in line]
    assert len(err) == 1 and "unknown tracker 'dlib'" in err[0] and "facemesh" in err[0], out.stderr
    assert not list(tmp_path.iterdir())


def test_a_missing_or_broken_model_file_stops_prepare_cleanly(media, tmp_path, monkeypatch):
    from speech2lip.core.prepare import prepare

    models = tmp_path / "models"
    models.mkdir()
    for f in FM.models_dir().iterdir():
        (models / f.name).write_bytes(f.read_bytes())
    monkeypatch.setattr(FM, "models_dir", lambda: models)
    (models / "facemesh_refine.onnx").unlink()
    with pytest.raises(T.TrackerError, match=r"facemesh_refine\.onnx is missing; reinstall"):
        prepare(media["obama_a"], tmp_path / "p")
    (models / "facemesh_refine.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(T.TrackerError, match=r"cannot load the face model facemesh_refine\.onnx"):
        prepare(media["obama_a"], tmp_path / "p")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]


def test_the_mediapipe_backend_without_mediapipe_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mediapipe", None)            # import fails as if not installed
    with pytest.raises(T.TrackerError, match=r'speech2lip-studio\[mediapipe\]'):
        FaceTracker(tracker="mediapipe")


def test_the_shipped_models_match_their_recorded_checksums():
    import hashlib
    import json

    meta = json.loads((FM.models_dir() / "facemesh.json").read_text())
    for name in ("facemesh_detector.onnx", "facemesh_landmarks.onnx", "facemesh_refine.onnx"):
        assert hashlib.sha256((FM.models_dir() / name).read_bytes()).hexdigest() == meta["sha256"][name]
