"""The default tracker (Face Mesh through onnxruntime): agreement with mediapipe, tracker choice, bad input."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from speech2lip.core.prepare import tracking as T
from speech2lip.core.prepare.faces import LIPS, FaceTracker
from speech2lip.core.media import read_frames
from speech2lip.core.project import Project
from speech2lip.core.prepare.tracking import facemesh as FM

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
    from speech2lip.core.prepare.job import prepare

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


# --- small faces (issue 13 item 8) -----------------------------------------------------------------

def _small_face_clip(media, tmp_path, face_px: int, seconds: float = 6) -> Path:
    """obama_a scaled so its face is about face_px wide, on a black 1920x1080 frame."""
    from speech2lip.core.media import ffmpeg_exe

    out = tmp_path / f"small_{face_px}.mp4"
    side = 2 * face_px                                       # the clip's face is about half its width
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(media["obama_a"]), "-t", str(seconds),
                    "-vf", f"scale={side}:{side},pad=1920:1080:700:300", "-c:v", "libx264", "-crf", "18",
                    "-c:a", "aac", str(out)], check=True)
    return out


@pytest.mark.slow
def test_a_small_face_in_a_1080p_frame_is_found_and_tracked(media, tmp_path):
    """A 128 px face in 1080p: too small for the short-range detector, found by the full-range one."""
    import cv2

    from speech2lip.core.prepare.job import prepare

    clip = _small_face_clip(media, tmp_path, 128)
    first = cv2.resize(next(read_frames(clip)), (1280, 720), interpolation=cv2.INTER_AREA)
    be = FM.FaceMeshBackend(static=True)
    assert be._detect(first, far=False) == [] and len(be._detect(first, far=True)) == 1
    p = prepare(clip, tmp_path / "p")
    assert p.array("has_face").mean() > 0.95
    width = np.ptp(p.array("landmarks")[p.manifest.canonical_index, :, 0]) * p.manifest.crop[2] / p.size
    assert 100 < width < 160                                  # the face's width in source pixels


@pytest.mark.slow
def test_a_face_too_small_to_find_is_reported_with_the_size_needed(media, tmp_path):
    out = subprocess.run([sys.executable, "-m", "speech2lip.core.cli", "--quiet", "prepare",
                          str(_small_face_clip(media, tmp_path, 40)), "--project", str(tmp_path / "p")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    err = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(err) == 1 and "no face found" in err[0] and "under about 96 px wide" in err[0], out.stderr
    assert "crop the video closer" in err[0] and not (tmp_path / "p").exists()


def test_availability_says_what_each_tracker_needs(monkeypatch):
    monkeypatch.setitem(sys.modules, "face_alignment", None)        # as if not installed
    got = T.availability()
    assert got["facemesh"] is None and set(got) == set(T.NAMES)
    assert "speech2lip-studio[fan]" in got["fan"]
    assert got["mediapipe"] is None or "speech2lip-studio[mediapipe]" in got["mediapipe"]
