"""Rendering and dubbing with a model trained on a real clip."""
from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from engine_fixtures import trained  # noqa: F401  (fixture)
from speech2lip.core import audio as A
from speech2lip.core import media
from speech2lip.core.cli import main as cli_main
from speech2lip.core.errors import CheckpointError, MediaError, UserError
from speech2lip.core.project import Project
from speech2lip.core.dub.plan import pingpong
from speech2lip.core.dub.render import Renderer, dub


@pytest.fixture(scope="module")
def renderer(trained):  # noqa: F811
    return Renderer(trained["root"], device="cpu")


def clip_windows(project: Project, idx: np.ndarray) -> np.ndarray:
    return A.mel_windows(np.array(project.array("mel")), A.frame_times(project.n_frames, project.fps)[idx])


def turned_frames(project: Project, k: int = 4) -> np.ndarray:
    poses = np.array(project.array("poses"))
    s = np.linalg.norm(poses[:, 0, :3], axis=1)[:, None, None]
    return np.argsort(-np.abs(poses[:, :, :3] - np.eye(3) * s).sum((1, 2)))[:k]


def test_pingpong_schedule_never_leaves_the_clip():
    bg = pingpong(7 + np.arange(100), 10)
    assert bg.min() == 0 and bg.max() == 9 and bg[0] == 7
    assert list(bg[:6]) == [7, 8, 9, 8, 7, 6]
    assert np.all(np.abs(np.diff(bg)) == 1)
    assert list(pingpong(np.arange(3), 1)) == [0, 0, 0]


def test_renderer_api_shapes(renderer):
    p = renderer.project
    idx = np.array([3, 250, 560])
    mouths = renderer.mouths(clip_windows(p, idx), idx)
    x0, y0, w, h = p.manifest.mouth_box
    assert mouths.shape == (3, h, w, 3) and mouths.dtype == np.uint8
    crops = renderer.paste(mouths, idx)
    assert crops.shape == (3, p.size, p.size, 3) and crops.dtype == np.uint8
    full = renderer.composite_full(renderer.render_crops(clip_windows(p, idx), idx), idx)
    src = p.manifest.source
    assert [f.shape for f in full] == [(src["height"], src["width"], 3)] * 3


def test_blend_changes_the_frame_only_near_the_mouth(renderer):
    p = renderer.project
    idx = np.arange(0, p.n_frames, 60)
    crops = renderer.render_crops(clip_windows(p, idx), idx).astype(int)
    frames = np.stack([p.frames[i] for i in idx]).astype(int)
    lips = np.array(p.array("landmarks"))[idx][:, [0, 17, 61, 291, 13, 14]]      # lip landmarks
    w = p.manifest.mouth_box[2]
    for crop, frame, lm in zip(crops, frames, lips):
        ys, xs = np.nonzero(np.abs(crop - frame).max(-1) > 2)
        assert len(ys) > 100                                   # the mouth was re-rendered
        centre = lm[:, :2].mean(0)
        dist = np.hypot(xs + 0.5 - centre[0], ys + 0.5 - centre[1])
        assert dist.max() < 1.3 * w                            # ...and nothing far from it changed


def test_perturbing_the_learned_depth_changes_the_composite(trained):  # noqa: F811
    r = Renderer(trained["root"], device="cpu")
    p = r.project
    idx = turned_frames(p)
    wins = clip_windows(p, idx)
    before = r.render_crops(wins, idx).astype(int)
    x0, y0, w, h = p.manifest.mouth_box
    with torch.no_grad():
        r.model.gamem.depth[y0:y0 + h, x0:x0 + w] += 40.0
    after = r.render_crops(wins, idx).astype(int)
    assert np.abs(after - before).mean() > 0.2
    assert (np.abs(after - before).max(-1) > 8).sum() > 200


def test_faceless_frames_pass_through_unchanged(trained, tmp_path):  # noqa: F811
    root = tmp_path / "faceless"
    shutil.copytree(trained["root"], root)
    has_face = np.load(root / "has_face.npy")
    has_face[[10, 11]] = False
    np.save(root / "has_face.npy", has_face)
    r = Renderer(root, device="cpu")
    idx = np.array([10, 11, 12])
    crops = r.render_crops(clip_windows(r.project, idx), idx)
    assert np.array_equal(crops[0], r.project.frames[10]) and np.array_equal(crops[1], r.project.frames[11])
    assert not np.array_equal(crops[2], r.project.frames[12])
    full = r.composite_full(crops, idx)
    assert np.array_equal(full[0], r.original(10))


def test_device_compositing_matches_the_cpu_recipe(renderer):
    """The torch compositing a GPU dub uses (run here on the CPU) against OpenCV's, on real renders,
    with a head turn so that pixels far from the mouth change too."""
    import torch

    from speech2lip.core.dub.composite import composite_cpu, composite_device

    r = renderer
    idx = np.array([3, 40, 41, 90])
    crops = r.render_crops(clip_windows(r.project, idx), idx, pose_offsets=[[8.0, 0, 0]] * 4)
    refs = [r.project.frames[i] for i in idx]
    originals = [r.original(i) for i in idx]
    box = r.project.manifest.crop
    want = composite_cpu(crops, refs, originals, box)
    t = lambda xs: torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2)
    got = composite_device(t(list(crops)), t(refs), t(originals), box).permute(0, 2, 3, 1).numpy()
    for g, w, o in zip(got, want, originals):
        d = np.abs(g.astype(int) - w.astype(int))
        assert d.max() <= 1 and d.mean() < 0.01, (d.max(), d.mean())
        assert (w != o).any()                                  # the frame did change


def test_plan_frames_are_what_dub_writes(renderer):
    from speech2lip.core.dub.plan import DubPlan

    r = renderer
    wave = np.random.default_rng(0).standard_normal(A.SAMPLE_RATE * 2).astype(np.float32) * 0.1
    plan = DubPlan.for_speech(r.project, wave)
    frames = [0, 1, 2]
    expect = r.composite_full(r.plan_crops(plan, frames), plan.inputs(np.array(frames))[1])
    assert all(np.array_equal(a, b) for a, b in zip(r.plan_frames(plan, frames), expect))


def test_the_encoder_is_the_gpus_only_where_it_works(monkeypatch):
    from speech2lip.core.errors import MediaError

    assert isinstance(media.nvenc_works(), bool)             # a real probe of this ffmpeg: never raises
    monkeypatch.setattr(media, "nvenc_works", lambda: True)
    assert media.choose_encoder("auto", gpu=True) == "h264_nvenc"
    assert media.choose_encoder("auto", gpu=False) == "libx264"      # a CPU render keeps x264
    assert media.choose_encoder("x264", gpu=True) == "libx264"
    monkeypatch.setattr(media, "nvenc_works", lambda: False)
    assert media.choose_encoder("auto", gpu=True) == "libx264"       # no driver: x264, silently
    with pytest.raises(MediaError, match="use --encoder x264"):
        media.choose_encoder("nvenc")
    with pytest.raises(MediaError, match="unknown encoder"):
        media.choose_encoder("hevc")


def _write_wav(path, wave):
    media.write_wav(path, wave.astype(np.float32), A.SAMPLE_RATE)
    return path


def test_dub_longer_than_the_clip_has_right_frames_fps_size_and_audio(trained, speech, tmp_path):  # noqa: F811
    project = Project(trained["root"])
    waves = [media.read_audio(speech[k]) for k in ("jfk", "austen", "austen2")]
    wave = np.concatenate(waves)
    duration = len(wave) / A.SAMPLE_RATE
    assert duration > project.n_frames / project.fps           # longer than the clip: ping-pong
    out = dub(trained["root"], _write_wav(tmp_path / "long.wav", wave), tmp_path / "long.mp4", batch=16,
              device="cpu")
    info = media.probe(out)
    src = project.manifest.source
    assert (info.width, info.height) == (src["width"], src["height"])
    assert info.fps == pytest.approx(project.fps, abs=0.01)
    n = sum(1 for _ in media.read_frames(out))
    assert n == round(duration * project.fps)
    assert abs(info.duration - duration) <= 1 / project.fps
    assert info.has_audio
    back = media.read_audio(out)
    assert abs(len(back) / A.SAMPLE_RATE - duration) < 1 / project.fps
    assert not list(tmp_path.glob(".s2l-*"))                   # no temporary left behind


def test_silent_audio_rests_the_mouth(renderer, trained, tmp_path):  # noqa: F811
    p = renderer.project
    bg = np.arange(100, 130)
    rest = renderer.mouths(np.repeat(renderer.rest_window[None], len(bg), 0), bg).astype(float)
    talk = renderer.mouths(clip_windows(p, bg), bg).astype(float)
    assert rest.std(0).mean() < 0.5 * talk.std(0).mean()      # at rest the mouth hardly moves

    wav = _write_wav(tmp_path / "silence.wav", np.zeros(int(1.5 * A.SAMPLE_RATE)))
    out = tmp_path / "silent.mp4"
    assert cli_main(["--quiet", "dub", "--project", str(trained["root"]), str(wav), "--output", str(out),
                     "--device", "cpu"]) == 0
    assert sum(1 for _ in media.read_frames(out)) == 45


def test_dub_refuses_bad_input(trained, obama_project, speech, tmp_path):  # noqa: F811
    with pytest.raises(CheckpointError, match="no trained model"):
        dub(obama_project, speech["austen"], tmp_path / "x.mp4", device="cpu")
    with pytest.raises(UserError, match="start-frame"):
        dub(trained["root"], speech["austen"], tmp_path / "x.mp4", start_frame=10_000, device="cpu")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF not really audio")
    with pytest.raises(MediaError):
        dub(trained["root"], junk, tmp_path / "x.mp4", device="cpu")
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"run": print}, f)
    with pytest.raises(CheckpointError):
        dub(trained["root"], speech["austen"], tmp_path / "x.mp4", checkpoint=evil, device="cpu")
    assert not (tmp_path / "x.mp4").exists()
    assert cli_main(["--quiet", "dub", "--project", str(obama_project), str(speech["austen"]),
                     "--output", str(tmp_path / "y.mp4")]) == 2


@pytest.mark.slow          # trains the demo for real
def test_demo_prepares_trains_and_dubs_the_bundled_clip(tmp_path, capsys):
    """`speech2lip demo` end to end on the bundled clip and speech (a short training budget)."""
    out = tmp_path / "demo.mp4"
    assert cli_main(["--quiet", "demo", "--minutes", "0.2", "--device", "cpu", "--output", str(out)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(out)
    speech = media.read_audio(Path(__file__).parents[1] / "resources" / "demo_speech.wav")
    info = media.probe(out)
    assert info.has_audio and (info.width, info.height) == (256, 256)
    assert abs(info.duration - len(speech) / A.SAMPLE_RATE) <= 1 / 30
