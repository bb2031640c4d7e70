"""Prepare on the real clips: geometry quality, motion concentration, grids, audio alignment."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from speech2lip.core import audio as A
from speech2lip.core.prepare import faces as F
from speech2lip.core.media import read_audio
from speech2lip.core.project import Project
from speech2lip.core.engine.warp import c2o_grid, o2c_grid, pixel_centres, sample

from conftest import prepared_project


@pytest.fixture(scope="module", params=["obama_a", "reagan"])
def project(request, tmp_path_factory):
    return Project(prepared_project(request.param, tmp_path_factory))


def test_project_files_and_manifest(project):
    m = project.manifest
    n = project.n_frames
    assert abs(n - m.source["duration"] * project.fps) < 1
    assert project.n_train == int(np.floor(n * 0.9))
    assert project.frames.shape == (n, 256, 256, 3)
    assert isinstance(project.frames, np.memmap), "frames must be memory-mapped, not loaded"
    x0, y0, w, h = m.mouth_box
    assert project.array("mouth").shape == (n, h, w, 3)
    assert 48 <= w <= 160 and 40 <= h <= 140
    assert project.array("has_face").all()
    assert project.array("depth").shape == (256, 256)
    lm = project.array("landmarks")
    assert lm.shape == (n, 478, 3) and np.isfinite(lm).all()
    for name in ["landmarks.png", "canonical.png", "motion_before.png", "motion_after.png"]:
        png = project.diagnostics / name
        assert png.stat().st_size > 10_000, name
    manifest = json.loads((project.root / "project.json").read_text())
    assert manifest["schema_version"] == 1


def test_rigid_fit_residual_is_small(project):
    resid = project.array("fit_residual")
    assert np.nanmean(resid) < 1.5
    assert project.manifest.stats["residual_mean_px"] < 1.5


def test_canonical_frame_has_mouth_closed_and_eyes_open(project):
    lm = project.array("landmarks")
    c = project.manifest.canonical_index
    mouth = F.mouth_opening(lm)
    assert mouth[c] <= np.percentile(mouth, 30)
    assert F.eye_opening(lm)[c] >= np.percentile(F.eye_opening(lm), 35)


def test_canonical_warp_concentrates_motion_in_mouth_box(project):
    s = project.manifest.stats
    before, after = s["mouth_motion_ratio_before"], s["mouth_motion_ratio_after"]
    # Head motion spreads variance over the whole face; once warped to canonical,
    # what is left is speech-driven and gathers in the mouth box.
    assert after > 1.5 * before, (before, after)
    assert after > 1.5


def test_o2c_then_c2o_round_trip_within_one_pixel(project):
    """Canonical pixel -> observed (O2C grid) -> canonical (C2O grid) comes back within 1 px."""
    import cv2

    depth = torch.from_numpy(np.array(project.array("depth")))
    head = torch.from_numpy(np.array(project.array("head_mask")))
    face = cv2.erode((np.asarray(project.array("face_mask")) > 0.5).astype(np.uint8), np.ones((11, 11))) > 0
    # Leave out a 5 px rim and the band where the surface turns away (depth slope
    # over 2, about 63 degrees from frontal): a turned or nodding head hides part of
    # it (the chin's underside, the cheek's side), and hidden points have no inverse.
    gy, gx = np.gradient(np.asarray(project.array("depth")))
    face &= cv2.dilate(np.hypot(gx, gy).astype(np.float32), np.ones((9, 9))) < 2.0
    assert face.sum() > 0.6 * (np.asarray(project.array("face_mask")) > 0.5).sum()
    idx = np.linspace(0, project.n_frames - 1, 12).astype(int)
    poses = torch.from_numpy(np.array(project.array("poses"))[idx])
    fwd = o2c_grid(depth, head, poses)                       # canonical -> observed
    inv = c2o_grid(depth, head, poses)                       # observed -> canonical
    back = sample(inv.permute(0, 3, 1, 2), fwd).permute(0, 2, 3, 1)
    err = (back - pixel_centres(256, 256)).norm(dim=-1).numpy()
    inside = np.broadcast_to(face, err.shape)
    assert err[inside].max() < 1.0, err[inside].max()


def test_mouth_crops_are_the_o2c_warp(project):
    """The stored ground-truth mouths equal a fresh O2C warp of the frames."""
    i = project.n_frames // 2
    x0, y0, w, h = project.manifest.mouth_box
    grid = o2c_grid(torch.from_numpy(np.array(project.array("depth"))),
                    torch.from_numpy(np.array(project.array("head_mask"))),
                    torch.from_numpy(np.array(project.array("poses"))[i:i + 1]))
    img = torch.from_numpy(np.asarray(project.frames[i:i + 1])).permute(0, 3, 1, 2).float()
    warped = sample(img, grid)[0].permute(1, 2, 0).numpy()[y0:y0 + h, x0:x0 + w]
    assert np.abs(warped - project.array("mouth")[i].astype(np.float32)).mean() < 1.0


def test_audio_windows_line_up_with_frame_timestamps(project, media):
    """At 30 fps the centre of each frame's mel window carries the energy at that frame's timestamp."""
    clip = next(p for p in media.values() if p.name == project.manifest.source["name"])
    wave = read_audio(clip)
    fps, n = project.fps, project.n_frames
    assert fps == 30
    windows = A.mel_windows(project.array("mel"), A.frame_times(n, fps))
    assert windows.shape == (n, A.WINDOW, 80)
    centre = windows[:, A.WINDOW // 2].mean(1)
    # Energy measured straight from the waveform, 25 ms around each timestamp.
    t = (np.arange(n) / fps * A.SAMPLE_RATE).astype(int)
    rms = np.array([np.log(np.mean(wave[max(0, k - 200):k + 200] ** 2) + 1e-8) for k in t])
    corr = [np.corrcoef(np.roll(centre, lag)[5:-5], rms[5:-5])[0, 1] for lag in (-1, 0, 1)]
    assert corr[1] > 0.8 and corr[1] > corr[0] and corr[1] > corr[2], corr


def test_faceless_frames_take_the_nearest_tracked_frame_in_linear_memory():
    from speech2lip.core.prepare.geometry import nearest_tracked

    has_face = np.array([0, 1, 0, 0, 0, 1, 1, 0, 0], bool)
    assert nearest_tracked(has_face).tolist() == [1, 1, 1, 1, 5, 5, 6, 6, 6]
    # A 10-hour clip at 30 fps: a frames-by-frames matrix would need terabytes.
    big = np.zeros(1_080_000, bool)
    big[::1000] = True
    near = nearest_tracked(big)
    assert near[1499] == 1000 and near[1501] == 2000 and near[-1] == 1_079_000
