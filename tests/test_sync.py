"""The sync expert: trained on a real clip it finds the true audio offset on held-out frames,
its contrastive loss trains mouths, and its files load safely."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine_fixtures import trained  # noqa: F401  (fixture: a project trained by the engine)
from speech2lip.core.engine import sync_expert as S
from speech2lip.core.errors import CheckpointError

STEPS = 300          # about a minute of an unloaded 2-core CPU


def _linked_project(tmp: Path, src: Path):
    """A writable view of a prepared project: its files linked, checkpoints/ fresh."""
    from speech2lip.core.project import Project

    tmp.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file():
            (tmp / f.name).symlink_to(f)
    return Project(tmp)


@pytest.fixture(scope="module")
def expert_run(tmp_path_factory, reagan_project):
    p = _linked_project(tmp_path_factory.mktemp("reagan") / "view", reagan_project)
    expert, stats = S.train_sync_expert(p, S.SyncConfig(steps=STEPS))
    return p, expert, stats


def test_encoders_give_unit_vectors_and_loss_trains_only_the_mouths():
    cfg = S.SyncConfig()
    e = S.SyncExpert(cfg).freeze()
    mouths = torch.rand(3, 5, 3, 80, 104, requires_grad=True)             # any box size
    v, a = e.embed_video(mouths), e.embed_audio(torch.randn(3, 40, 80))
    assert v.shape == a.shape == (3, cfg.dim)
    assert torch.allclose(v.norm(dim=1), torch.ones(3)) and torch.allclose(a.norm(dim=1), torch.ones(3))
    e.train()                                                             # the loss freezes it again
    loss = S.contrastive_sync_loss(e, mouths, torch.randn(3, 40, 80), torch.randn(3, 4, 40, 80))
    loss.backward()
    assert loss.ndim == 0 and mouths.grad is not None and mouths.grad.abs().sum() > 0
    assert not e.training and all(p.grad is None for p in e.parameters())


def test_negative_frames_are_off_by_the_right_amounts():
    rng = np.random.default_rng(1)
    frames = np.array([0, 3, 250, 496, 499])
    neg = S.sample_negative_frames(frames, 500, 8, max_offset=15, min_offset=5, rng=rng)
    assert neg.shape == (5, 8) and neg.min() >= 0 and neg.max() < 500
    d = np.abs(neg - frames[:, None])
    assert ((d[:, :4] >= 5) & (d[:, :4] <= 15)).all()                     # near: 5..15 frames off
    assert (d[:, 4:] > 15).all()                                          # far: anywhere else


def test_expert_finds_the_true_offset_on_held_out_frames(expert_run):
    p, expert, st = expert_run
    assert st["n_eval"] >= 30
    # Chance is 1/31 (3.2 %) exactly and 3/31 (9.7 %) within one frame.
    assert st["offset_accuracy"] >= 3 * st["chance"], st
    assert st["offset_accuracy_pm1"] >= 3 * st["chance_pm1"], st
    # Over all held-out frames together, the best offset is the true one (to a frame).
    assert abs(st["clip_offset"]) <= 1, st
    assert p.sync_expert_path.is_file()


def test_sync_loss_prefers_matching_audio(expert_run):
    """On real held-out mouths, matching audio scores a lower loss than audio 5 frames late,
    and gradient steps on a frozen-still mouth sequence lower the loss."""
    from speech2lip.core.audio import frame_times, mel_windows

    p, expert, _ = expert_run
    mel = np.array(p.array("mel"), np.float32)
    t = frame_times(p.n_frames, p.fps)
    ks = np.arange(p.n_train + 2, p.n_frames - 20)
    mouths = torch.from_numpy(np.stack([p.array("mouth")[k - 2:k + 3] for k in ks])).permute(0, 1, 4, 2, 3) / 255.0
    neg_idx = S.sample_negative_frames(ks, p.n_frames, 8, rng=np.random.default_rng(0))
    neg = torch.from_numpy(mel_windows(mel, t[neg_idx.reshape(-1)])).view(len(ks), 8, 40, 80)
    loss = lambda shift: float(S.contrastive_sync_loss(expert, mouths, torch.from_numpy(mel_windows(mel, t[ks + shift])), neg))
    assert loss(0) < loss(5) - 0.1 and loss(0) < loss(-5) - 0.1
    # Gradients move a still mouth towards the speech.
    still = mouths[:, 2:3].expand(-1, 5, -1, -1, -1).clone().requires_grad_(True)
    pos = torch.from_numpy(mel_windows(mel, t[ks]))
    opt = torch.optim.Adam([still], lr=0.01)
    first = float(S.contrastive_sync_loss(expert, still, pos, neg).detach())
    for _ in range(20):
        opt.zero_grad()
        S.contrastive_sync_loss(expert, still, pos, neg).backward()
        opt.step()
    assert float(S.contrastive_sync_loss(expert, still.clamp(0, 1), pos, neg)) < first - 0.2


def test_saved_expert_loads_identically(expert_run):
    p, expert, _ = expert_run
    again = S.load_sync_expert(p)
    assert not again.training and not any(q.requires_grad for q in again.parameters())
    mel = torch.randn(2, 40, 80)
    assert torch.allclose(again.embed_audio(mel), expert.embed_audio(mel))
    assert again.cfg == expert.cfg
    assert S.load_sync_expert(p.root).cfg == expert.cfg                     # a project folder works too


def test_bad_expert_files_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="No sync expert"):
        S.load_sync_expert(tmp_path / "none.pt")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": Evil()}, evil)
    with pytest.raises(CheckpointError, match="not a safe"):
        S.load_sync_expert(evil)
    trunc = tmp_path / "trunc.pt"
    S.save_sync_expert(S.SyncExpert(), trunc)
    trunc.write_bytes(trunc.read_bytes()[:500])
    with pytest.raises(CheckpointError):
        S.load_sync_expert(trunc)
    # A Wav2Lip lip-sync expert (its layout: face_encoder / audio_encoder conv blocks).
    w2l = tmp_path / "lipsync_expert.pth"
    torch.save({"state_dict": {"face_encoder.0.conv_block.0.weight": torch.zeros(32, 15, 7, 7),
                               "audio_encoder.0.conv_block.0.weight": torch.zeros(32, 1, 3, 3)},
                "global_step": 1}, w2l)
    with pytest.raises(CheckpointError, match="Wav2Lip"):
        S.load_sync_expert(w2l)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match="not a Speech2Lip sync expert"):
        S.load_sync_expert(other)


def test_audio_delay_moves_the_generated_mouth_curve(trained):  # noqa: F811
    """Delaying the audio by 5 frames delays the tracked mouth-opening curve of the output
    by about 5 frames: the lips follow the audio's timing, not the background frame's."""
    from speech2lip.core import audio as A
    from speech2lip.core.evaluation.evaluate import opening, track
    from speech2lip.core.dub.render import Renderer

    r = Renderer(trained["root"], device="cpu")
    p = r.project
    mel = np.array(p.array("mel"), np.float32)
    t = A.frame_times(p.n_frames, p.fps)
    idx = np.arange(0, p.n_frames)
    curves = []
    for shift in (0, 5):
        win = A.mel_windows(mel, t - shift / p.fps)
        crops = np.concatenate([r.render_crops(win[i:i + 16], idx[i:i + 16]) for i in range(0, len(idx), 16)])
        o = np.nan_to_num(opening(track(crops)))
        curves.append((o - o.mean()) / (o.std() + 1e-9))
    a, b = curves
    lags = np.arange(-15, 16)
    corr = [np.mean(a[max(0, -k):len(a) - max(0, k)] * b[max(0, k):len(b) - max(0, -k)]) for k in lags]
    best = int(lags[int(np.argmax(corr))])
    assert abs(best - 5) <= 1, (best, np.round(corr, 2))


def test_the_sync_stage_adds_eq6_and_keeps_training_blend_net(expert_run):
    """With a saved expert the last stage adds the sync loss to the blend stage's step:
    Blend-Net goes on learning (with a short budget it has not converged by then)."""
    from engine_fixtures import tiny_config
    from speech2lip.core.engine.checkpoint import load_model
    from speech2lip.core.jobs import Cancelled, CancelToken
    from speech2lip.core.engine.train import train

    p, _, _ = expert_run
    cfg = tiny_config(**{"train.stage_split": [0.3, 0.3, 0.4]})
    seen, token = [], CancelToken()

    def report(r):
        if r.stage == "train":
            seen.append(r.data)
            if r.data["step"] == 7:                  # one step into the sync stage
                token.cancel()
    with pytest.raises(Cancelled):
        train(p.root, steps=10, device="cpu", config=cfg, progress=report, cancel=token)
    before = load_model(p)[0].blend.state_dict()
    result = train(p.root, steps=10, device="cpu", resume=True, progress=report)
    assert result["sync_stage"] and result["steps"] == 10
    assert [d["stage"] for d in seen] == ["lip"] * 3 + ["blend"] * 3 + ["sync"] * 4
    for d in seen[-4:]:
        assert np.isfinite(d["losses"]["sync"]) and d["losses"]["sync"] > 0
        assert any(k.startswith("face_") for k in d["losses"]), d["losses"]
    after = load_model(p)[0].blend.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in after if after[k].is_floating_point())
