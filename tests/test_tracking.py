"""Keyframe face tracking, and prepare's torch-free numerics against the torch and scipy originals."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from speech2lip.core import audio as A
from speech2lip.core.prepare import faces as F
from speech2lip.core.prepare import geometry as G
from speech2lip.core.media import read_frames
from speech2lip.core.project import Project
from speech2lip.core.engine.warp import o2c_grid


@pytest.fixture(scope="module")
def frames(media):
    """The first 4 s of two speakers."""
    out = {}
    for name in ("obama_a", "reagan"):
        it = read_frames(media[name])
        out[name] = [next(it) for _ in range(120)]
    return out


def _track(frames, every):
    with F.FaceTracker() as tracker:
        return tracker.track_keyframes(frames, every)


def test_keyframes_interpolate_within_the_trackers_own_variation(frames):
    for name, clip in frames.items():
        full, seen_full, tracked_full = _track(clip, 1)
        key, seen, tracked = _track(clip, 2)
        assert tracked_full.all() and seen_full.all() and seen.all()
        assert 0.45 < tracked.mean() < 0.7, tracked.mean()
        ok = np.ones(len(clip), bool)
        smooth_full, smooth_key = F.smooth_tracks(full, ok), F.smooth_tracks(key, ok)
        err = np.linalg.norm((smooth_key - smooth_full)[:, F.LIPS, :2], axis=-1).mean(axis=1)
        jitter = np.linalg.norm((full - smooth_full)[:, F.LIPS, :2], axis=-1).mean()
        # Even the frames the mesh ran on differ from every-frame tracking (the mesh starts from the
        # previous result): interpolation adds little to that, and all of it is under the jitter.
        assert err[~tracked].mean() < err[tracked].mean() + 0.15, (name, err[~tracked].mean(), err[tracked].mean())
        assert err.mean() < jitter, (name, err.mean(), jitter)
        rigid = np.linalg.norm((smooth_key - smooth_full)[:, F.RIGID, :2], axis=-1)
        assert rigid.mean() < 0.5, (name, rigid.mean())          # a third of the rigid-fit tolerance


def test_cuts_and_lost_faces_are_tracked_not_interpolated(frames):
    # A cut from one speaker to the other at frame 11, and a black frame at 20.
    clip = frames["obama_a"][:11] + frames["reagan"][11:30]
    clip[20] = np.zeros_like(clip[20])
    lm, seen, tracked = _track(clip, 2)
    assert tracked[11] and tracked[19] and tracked[21], "frames beside a cut or a lost face are tracked"
    assert not seen[20] and np.isnan(lm[20]).all()
    assert seen[:20].all() and seen[21:].all()
    assert not tracked[13] and not tracked[27], "elsewhere every other frame is interpolated"
    # The frame after the cut has reagan's face, not a blend of the two.
    with F.FaceTracker() as t:
        truth, _ = t.process(clip[11])
    assert np.abs(lm[11] - truth).mean() < 2.0


def test_prepare_records_which_frames_the_mesh_ran_on(obama_project):
    p = Project(obama_project)
    tracked = np.asarray(p.array("tracked"))
    assert tracked.shape == (p.n_frames,) and 0.45 < tracked.mean() < 0.7
    assert p.manifest.stats["frames_tracked"] == int(tracked.sum())
    resid = np.asarray(p.array("fit_residual"))
    assert p.manifest.stats["residual_mean_px"] == pytest.approx(float(np.nanmean(resid[tracked])))


def test_mesh_depth_equals_scipys_linear_interpolation(obama_project):
    from scipy.interpolate import LinearNDInterpolator

    p = Project(obama_project)
    canon = np.asarray(p.array("landmarks"))[p.manifest.canonical_index, :468]
    centres = np.mgrid[0:256, 0:256][::-1].reshape(2, -1).T + 0.5
    ref = LinearNDInterpolator(canon[:, :2], canon[:, 2])(centres).reshape(256, 256)
    z = G.mesh_z(canon, 256)
    # The same triangles cover the same pixels (up to one whose centre lies on the hull's edge)...
    assert (np.isfinite(z) != np.isfinite(ref)).sum() <= 2
    # ...with the same values.
    assert np.nanmax(np.abs(z - ref)) < 1e-6


def test_numpy_o2c_map_equals_the_torch_grid(obama_project):
    p = Project(obama_project)
    depth, head = np.asarray(p.array("depth")), np.asarray(p.array("head_mask"))
    poses = np.asarray(p.array("poses"))[::50]
    box = p.manifest.mouth_box
    for b in (None, box):
        ref = o2c_grid(torch.from_numpy(depth), torch.from_numpy(head), torch.from_numpy(poses), b).numpy()
        assert np.abs(G.o2c_map(depth, head, poses, b) - ref).max() < 1e-3


def test_numpy_log_mel_equals_torch_stft(speech):
    from speech2lip.core.media import read_audio

    wave = read_audio(speech["jfk"])[: A.SAMPLE_RATE * 3]
    spec = torch.stft(torch.from_numpy(wave), A.N_FFT, A.HOP, window=torch.hann_window(A.N_FFT), center=True,
                      pad_mode="constant", return_complex=True).abs() ** 2
    ref = np.maximum(10 * np.log10(np.maximum(A._MEL_BASIS @ spec.numpy(), 1e-10)), A.SILENCE_DB).T
    got = A.log_mel(wave, chunk=64)             # several chunks
    assert got.shape == ref.shape and np.abs(got - ref).max() < 0.01          # dB; float32 rounding


def test_prepare_never_imports_torch_scipy_or_matplotlib(media, tmp_path):
    """Their imports alone are a large share of a short clip's prepare: the job must not need them."""
    code = ("import sys; from speech2lip.core.prepare.job import prepare; "
            f"prepare({str(media['obama_a'])!r}, {str(tmp_path / 'p')!r}); "
            "print([m in sys.modules for m in ('torch', 'scipy', 'matplotlib')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines()[-1] == "[False, False, False]", out.stdout


def test_the_mediapipe_backend_defers_its_drawing_helpers(tmp_path):
    """The optional backend: mediapipe's drawing helpers (matplotlib) load only when asked for."""
    pytest.importorskip("mediapipe")
    code = ("import sys; from speech2lip.core.prepare.faces import FaceTracker; FaceTracker(tracker='mediapipe'); "
            "print('matplotlib' in sys.modules); import mediapipe as mp; "
            "print(mp.solutions.drawing_utils.DrawingSpec.__name__, "
            "type(mp.solutions.drawing_styles.get_default_face_mesh_contours_style()).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines()[-2:] == ["False", "DrawingSpec dict"], out.stdout


def test_a_tracker_that_fails_to_start_stops_prepare_instead_of_hanging(media, tmp_path, monkeypatch):
    import threading

    from speech2lip.core.prepare.job import prepare

    class Broken:
        def __init__(self, *a, **k):
            raise RuntimeError("the face detector could not start")

    monkeypatch.setattr(F, "FaceCounter", Broken)
    outcome = []

    def run():
        try:
            prepare(media["obama_a"], tmp_path / "p")
        except RuntimeError as e:
            outcome.append(str(e))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(120)
    assert not t.is_alive(), "prepare hung when a tracker thread failed"
    assert outcome == ["the face detector could not start"]
    assert not (tmp_path / "p").exists() and not list(tmp_path.iterdir())


def test_landmarks_read_from_the_wire_format_equal_the_protobuf_fields():
    pytest.importorskip("mediapipe")
    from mediapipe.framework.formats import landmark_pb2

    from speech2lip.core.prepare.tracking.mediapipe_mesh import _landmarks

    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(478, 3)).astype(np.float32)
    xyz[5] = 0.0                                     # zeros are still written: proto2 fields set explicitly
    face = landmark_pb2.NormalizedLandmarkList()
    for x, y, z in xyz:
        face.landmark.add(x=x, y=y, z=z)
    assert np.array_equal(_landmarks(face), xyz)
    face.landmark[3].visibility = 0.5                # another field: the layout differs, the slow path reads it
    assert np.array_equal(_landmarks(face), xyz)
