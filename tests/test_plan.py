"""One dub plan: the preview (frame k) and the export (frames in..out) show the same frames."""
from __future__ import annotations

import numpy as np
import pytest

from engine_fixtures import smoke_trained  # noqa: F401  (fixture)
from speech2lip.app.model.editor import EditorModel
from speech2lip.core import media
from speech2lip.core.dub.plan import DubPlan, pingpong
from speech2lip.core.dub.pose import PoseKey, PoseTrack
from speech2lip.core.project import Project


def test_one_pingpong_reflects_as_the_editor_shows_it():
    # A 10-frame clip with the in point at 12 sits on a reversed pass: 6, 5, 4, 3, 2, 1.
    assert pingpong(12 + np.arange(6), 10).tolist() == [6, 5, 4, 3, 2, 1]
    assert pingpong(np.arange(20), 10).tolist() == [*range(10), *range(8, 0, -1), 0, 1]
    assert EditorModel(25.0, 10).background(range(12, 18)).tolist() == [6, 5, 4, 3, 2, 1]
    assert pingpong(np.arange(3), 1).tolist() == [0, 0, 0]


def _timeline_wave(project: Project, speech, n_frames: int) -> np.ndarray:
    """Real speech with a stretch of silence, as long as n_frames of the timeline (16 kHz)."""
    wave = media.read_audio(speech["austen"])
    n = int(round(n_frames / project.fps * 16000))
    wave = np.resize(wave, n).astype(np.float32)
    wave[: n // 8] = 0                                 # silence: the rest window must stand in
    return wave


@pytest.fixture(scope="module")
def timeline(smoke_trained, speech):  # noqa: F811
    project = Project(smoke_trained)
    n = project.n_frames
    wave = _timeline_wave(project, speech, n + 40)
    track = PoseTrack([PoseKey(0, 0, 0, 0), PoseKey(n + 40, 6.0, 0, 0)])
    return project, wave, track


def test_plan_of_a_timeline(timeline):
    project, wave, track = timeline
    n = project.n_frames
    plan = DubPlan.for_speech(project, wave, pose_track=track)
    assert len(plan) == n + 40
    assert plan.background.tolist() == pingpong(np.arange(n + 40), n).tolist()
    k = np.arange(len(plan))
    w = plan.windows(k)
    assert plan.silent[:5].all() and not plan.silent.all()
    assert np.array_equal(w[plan.silent], np.repeat(plan.rest[None], plan.silent.sum(), 0))
    assert np.array_equal(w[~plan.silent], plan.speech_windows(k)[~plan.silent])
    assert plan.pose.shape == (n + 40, 3) and plan.pose[0, 0] == 0 and plan.pose[-1, 0] > 5.9
    with pytest.raises(IndexError):
        plan.windows([len(plan)])


def test_preview_and_export_render_the_same_frames(timeline, tmp_path, monkeypatch):
    """The preview renders plan frames one at a time; the export renders in..out in one dub.
    In points on a forward pass (3) and on a reversed one (n + 5) must give the same pictures."""
    from speech2lip.app.editor.export_job import ExportSettings, export
    from speech2lip.core.dub.render import Renderer

    project, wave, track = timeline
    n = project.n_frames
    renderer = Renderer(project, device="cpu")
    preview_plan = DubPlan.for_speech(project, wave, pose_track=track)   # as app/editor/render_service.py
    exported: list[tuple[np.ndarray, np.ndarray]] = []
    real = Renderer.composite_full

    def spy(self, crops, bg):
        exported.append((np.asarray(crops).copy(), np.asarray(bg).copy()))
        return real(self, crops, bg)

    monkeypatch.setattr(Renderer, "composite_full", spy)
    for a in (3, n + 5):
        b = a + 6
        exported.clear()
        out = export(project.root, wave, ExportSettings(tmp_path / f"x{a}.mp4", a, b, size="720p", quality="Draft",
                                                        audio_bitrate=128), pose_track=track)
        crops = np.concatenate([c for c, _ in exported])
        bg = np.concatenate([g for _, g in exported])
        assert bg.tolist() == preview_plan.background[a:b].tolist()
        if a > n:
            assert bg.tolist() == [n - 7 - i for i in range(6)]       # the reversed pass, as previewed
        one_by_one = np.concatenate([renderer.plan_crops(preview_plan, [k], pose=preview_plan.pose[[k]])
                                     for k in range(a, b)])
        # Batched and single-frame float kernels may round a pixel apart; nothing more.
        assert np.abs(crops.astype(int) - one_by_one.astype(int)).max() <= 1
        info = media.probe(out)
        assert info.height == 720 and abs(info.n_frames - 6) <= 1      # n_frames: an estimate from the duration


def test_dub_takes_an_array_and_refuses_a_span_of_a_file(timeline, tmp_path, speech):
    from speech2lip.core.dub.render import dub

    project, wave, _ = timeline
    stereo = np.stack([wave, wave * 0.5], axis=1)
    out = dub(project.root, stereo, tmp_path / "st.mp4", sample_rate=16000, span=(0, 4), device="cpu")
    info = media.probe(out)
    assert abs(info.n_frames - 4) <= 1 and info.audio_rate == 16000 and info.audio_channels == 2
    with pytest.raises(ValueError):
        dub(project.root, speech["austen"], tmp_path / "y.mp4", span=(0, 4), device="cpu")
