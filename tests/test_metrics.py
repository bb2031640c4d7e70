"""Evaluation metrics on a real prepared clip: the known cases must come out right."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from speech2lip.core.evaluation import evaluate as E
from speech2lip.core.evaluation import metrics as M
from speech2lip.core.audio import frame_times
from speech2lip.core.prepare.faces import LIPS, inter_ocular
from speech2lip.core.project import Project


@pytest.fixture(scope="module")
def clip(obama_project):
    p = Project(obama_project)
    idx = np.arange(p.n_train, p.n_frames)
    wave = E.read_speech(p)
    return p, idx, wave


def test_psnr_ssim_identical_capped_and_finite_on_neighbours(clip):
    p, idx, _ = clip
    real = np.asarray(p.frames[idx])
    assert np.all(M.psnr(real, real) == M.PSNR_CAP)
    assert np.allclose(M.ssim(real[:5], real[:5]), 1.0)
    # Consecutive real frames differ a little: high but finite scores, lower than identical.
    ps, ss = M.psnr(real[1:], real[:-1]), M.ssim(real[1:6], real[:5])
    assert np.isfinite(ps).all() and 20 < ps.mean() < M.PSNR_CAP
    assert 0.5 < ss.mean() < 0.999
    # A darker copy scores lower than the frame itself.
    dark = (real[:5] * 0.7).astype(np.uint8)
    assert M.psnr(dark, real[:5]).mean() < 25 and M.ssim(dark, real[:5]).mean() < ss.mean()


def test_lmd_real_vs_real_is_zero_and_grows_with_mismatch(clip):
    p, idx, _ = clip
    real = np.asarray(p.frames[idx])
    a, b = E.track(real), E.track(real)
    assert np.isfinite(a).all()
    iod = inter_ocular(a)
    assert np.nanmean(M.lmd(a, b, LIPS, iod)) == 0.0
    # Lips of frames a quarter second away: a real lip-shape error of a few percent of the eye distance.
    off = M.lmd(a[8:], a[:-8], LIPS, iod[:-8])
    assert 0.005 < np.nanmean(off) < 0.2


def test_cpbd_scores_blur_lower(clip):
    p, idx, _ = clip
    mouth = np.asarray(p.array("mouth")[idx[0]])
    face = np.asarray(p.frames[idx[0]])
    for img in (mouth, face):
        sharp = M.cpbd(img)
        soft = M.cpbd(cv2.GaussianBlur(img, (0, 0), 0.6))
        blurred = M.cpbd(cv2.GaussianBlur(img, (0, 0), 1.5))
        assert 0.2 < sharp <= 1.0
        assert blurred < soft < sharp
    assert M.cpbd(np.full((64, 96, 3), 128, np.uint8)) == 0.0


def _delay(wave: np.ndarray, frames: int, fps: float) -> np.ndarray:
    """The same speech heard `frames` video frames later."""
    n = int(round(frames / fps * 16000))
    return np.concatenate([np.zeros(n, wave.dtype), wave[:-n]])


@pytest.fixture(scope="module", params=["obama", "reagan"])
def held_out_sync(request):
    """A clip's sync probe, its real held-out frames freshly tracked, and its speech."""
    p = Project(request.getfixturevalue(f"{request.param}_project"))
    wave = E.read_speech(p)
    lm = E.smoothed(E.track(np.asarray(p.frames[p.n_train:p.n_frames])))
    return p, E.calibrate(p, wave), lm, wave


def test_sync_real_held_out_reads_zero_and_a_4_frame_shift_reads_4(held_out_sync):
    # reagan's held-out tail is 2.6 s of small lip motion: the lip opening alone read it
    # 7 frames off; the probe's reading of the whole lip shape must get it right.
    p, probe, lm, wave = held_out_sync
    assert 0 <= probe.lead <= 6 and probe.lead_confidence > 0.2       # lips lead the sound by a few frames
    times = frame_times(p.n_frames, p.fps)

    def rel(w: np.ndarray, tracks: np.ndarray = lm) -> int:
        return probe.offset(tracks, M.speech_envelope(w, 16000, times), envelope_start=p.n_train).offset

    assert abs(rel(wave)) <= 1
    assert abs(rel(_delay(wave, 4, p.fps)) - 4) <= 1
    # Delaying the pictures instead moves it the other way.
    late = np.concatenate([np.repeat(lm[:1], 4, axis=0), lm[:-4]])
    assert abs(rel(wave, late) + 4) <= 1


def test_sync_confidence_drops_for_a_still_mouth(held_out_sync):
    p, probe, lm, wave = held_out_sync
    env = M.speech_envelope(wave, 16000, frame_times(p.n_frames, p.fps))
    live = probe.offset(lm, env, envelope_start=p.n_train)
    assert live.confidence > 0.1
    # The same lip motion at a tenth of the amplitude: the offset stays, the confidence falls tenfold.
    mean = lm.mean(axis=0, keepdims=True)
    still = probe.offset(mean + 0.1 * (lm - mean), env, envelope_start=p.n_train)
    assert still.offset == live.offset
    assert still.confidence == pytest.approx(0.1 * live.confidence, rel=0.05)


def test_nearest_audio_finds_the_frame_itself(clip):
    p, _, _ = clip
    from speech2lip.core.audio import mel_windows

    mel = np.asarray(p.array("mel"))
    w = mel_windows(mel, frame_times(p.n_train, p.fps))
    q = np.array([3, 100, 250, p.n_train - 1])
    assert (E.nearest_audio(w, w[q]) == q).all()
