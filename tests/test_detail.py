"""Reference-guided detail (core/engine/detail.py) and the metrics that judge it, on the real clips."""
from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
import torch

from engine_fixtures import tiny_config
from speech2lip.core.evaluation import metrics as M
from speech2lip.core.engine.checkpoint import build_model, load_checkpoint, reference_bank
from speech2lip.core.config import DetailConfig, EngineConfig, preset
from speech2lip.core.engine.detail import DetailNet, PatchCritic, ReferenceBank, adversarial_loss, critic_loss
from speech2lip.core.evaluation.evaluate import detail, inner_margin, interior
from speech2lip.core.project import Project


def test_bank_finds_the_nearest_mouth_and_skips_the_excluded_window(obama_project):
    project = Project(obama_project)
    bank = reference_bank(project, pool=10_000)
    assert len(bank.frames) == int(np.asarray(project.array("has_face"))[:project.n_train].sum())
    i = 200
    query = torch.from_numpy(np.asarray(project.array("mouth")[i])).permute(2, 0, 1)[None].float() / 255
    query = torch.nn.functional.interpolate(query, scale_factor=0.3, mode="area")   # as the lip field renders
    rows = bank.nearest(query, 3)
    assert abs(int(bank.frames[rows[0, 0]]) - i) <= 2            # itself, or a neighbour as alike
    rows = bank.nearest(query, 3, exclude=torch.tensor([i]), window=30)
    assert (np.abs(bank.frames[rows[0]].numpy() - i) >= 30).all()
    assert bank.images(rows).shape == (1, 3, 3, *project.array("mouth").shape[1:3])
    # By sound: the frame's own speech window finds the frame, even at another gain.
    from speech2lip.core.audio import frame_times, mel_windows

    mel = mel_windows(np.asarray(project.array("mel"), np.float32), frame_times(project.n_frames, project.fps)[[i]])
    rows = bank.nearest(torch.from_numpy(mel) + 0.3, 2, by_sound=True)
    assert int(bank.frames[rows[0, 0]]) == i
    rows = bank.nearest(torch.from_numpy(mel), 2, exclude=torch.tensor([i]), window=30, by_sound=True)
    assert (np.abs(bank.frames[rows[0]].numpy() - i) >= 30).all()


def test_reference_pool_is_capped_and_spread(obama_project):
    bank = reference_bank(Project(obama_project), pool=50)
    f = bank.frames.numpy()
    assert len(f) == 50 and f[0] < 20 and f[-1] > 500


def test_detail_net_starts_as_the_lip_field_and_borrows_from_references():
    torch.manual_seed(0)
    net = DetailNet(DetailConfig(refs=2, channels=[8, 16, 16]))
    coarse = torch.rand(2, 3, 30, 42)
    refs = torch.rand(2, 2, 3, 30, 42)
    out = net(coarse, refs)
    assert out.shape == coarse.shape                          # sides that are not multiples of 4 work
    assert torch.allclose(out, coarse, atol=0.05)             # ~all weight on the lip field at start
    # Trained a few steps to copy the first reference, it does.
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(60):
        loss = (net(coarse, refs) - refs[:, 0]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (net(coarse, refs) - refs[:, 0]).abs().mean() < 0.5 * (coarse - refs[:, 0]).abs().mean()


def test_critic_losses_push_in_opposite_directions():
    torch.manual_seed(0)
    critic = PatchCritic([8, 16, 16])
    real, fake = torch.rand(2, 3, 40, 52), torch.full((2, 3, 40, 52), 0.5, requires_grad=True)
    assert critic(real).shape == (2, 1, 9, 12)                # one score per patch, about h/4 x w/4
    opt = torch.optim.Adam(critic.parameters(), lr=1e-3)
    before = float(critic_loss(critic, real, fake))
    for _ in range(30):
        loss = critic_loss(critic, real, fake)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(critic_loss(critic, real, fake)) < before
    adversarial_loss(critic, fake).backward()
    assert fake.grad is not None and float(fake.grad.abs().sum()) > 0


def test_old_checkpoint_configs_keep_their_fingerprint_and_load_without_detail():
    cfg = preset("quick", **{"detail.enabled": False})
    d = cfg.to_dict()
    d.pop("detail")                                           # what configs saved before DetailNet hold
    old = EngineConfig.from_dict(d)
    assert not old.detail.enabled and old.fingerprint() == cfg.fingerprint()
    assert preset("quick").detail.enabled and preset("quick").fingerprint() != cfg.fingerprint()


def test_training_uses_detail_and_critic_and_resumes_them(project_copy):
    from speech2lip.core.engine.train import train

    cfg = tiny_config(**{"detail.w_adv": 0.05, "detail.adv_start": 0.0, "train.checkpoint_every": 3})
    seen = []
    train(project_copy, steps=6, device="cpu", config=cfg,
          progress=lambda p: seen.append(p.data.get("losses", {})) if p.stage == "train" else None)
    assert all("detail_mse" in s and "adv" in s and "critic" in s for s in seen)
    project = Project(project_copy)
    ckpt = load_checkpoint(project.checkpoints / "latest.pt", project)
    assert "critic" in ckpt and "critic_optimizer" in ckpt
    fresh = build_model(cfg, project)
    moved = [k for k, v in fresh.detail.state_dict().items()
             if not torch.equal(v, ckpt["model"][f"detail.{k}"])]
    assert moved, "DetailNet's weights did not change in training"
    r = train(project_copy, steps=8, device="cpu", config=cfg, resume=True)
    assert r["steps"] == 8


def test_inner_box_sharpness_scores_a_blurred_copy_lower(obama_project):
    project = Project(obama_project)
    idx = np.arange(project.n_train, project.n_train + 12)
    crops = np.asarray(project.frames[idx])
    blurred = np.stack([cv2.GaussianBlur(c, (0, 0), 1.2) for c in crops])
    margin = inner_margin(project, preset("quick").blend.feather)
    inner = interior(project, idx, margin)
    assert 0.02 < inner[0].mean() < 0.2                       # the mouth's inside, a few % of the crop
    from speech2lip.core.evaluation.evaluate import canonical_mouths

    sharp = detail(crops, inner, canonical_mouths(project, crops, idx), margin)
    soft = detail(blurred, inner, canonical_mouths(project, blurred, idx), margin)
    assert soft["sharpness_inner"] < 0.9 * sharp["sharpness_inner"]
    assert soft["laplacian_inner"] < 0.5 * sharp["laplacian_inner"]
    assert soft["cpbd"] <= sharp["cpbd"]
    # Sharpness looks only inside the mask: blurring outside it changes nothing.
    outside = np.where(cv2.dilate(inner.astype(np.uint8)[0], np.ones((9, 9), np.uint8))[..., None] > 0,
                       crops[0], blurred[0])
    assert M.gradient_energy(outside[None], inner[:1])[0] == pytest.approx(
        M.gradient_energy(crops[:1], inner[:1])[0])


def test_teeth_share_sees_bright_teeth_inside_the_lips():
    img = np.zeros((40, 40, 3), np.uint8)
    img[:] = (150, 80, 70)                                    # lips and skin: saturated
    img[15:25, 10:30] = (235, 235, 225)                       # teeth: bright, unsaturated
    poly = np.array([[10, 12], [30, 12], [30, 28], [10, 28]], np.float32)
    share = M.teeth_share(img, poly)
    assert 0.5 < share < 0.8
    assert M.teeth_share(np.full_like(img, 40), poly) == 0.0
    assert np.isnan(M.teeth_share(img, np.full((4, 2), np.nan)))


@pytest.mark.slow
def test_detail_makes_held_out_mouths_sharper_than_the_lip_field_alone(obama_project, tmp_path):
    """The CI-sized version of bench/quality.py: the same short budget with and without DetailNet."""
    from speech2lip.core.evaluation.evaluate import canonical_mouths
    from speech2lip.core.dub.render import Renderer
    from speech2lip.core.audio import frame_times, mel_windows
    from speech2lip.core.engine.train import train

    scores = {}
    for enabled in (False, True):
        root = tmp_path / f"detail_{enabled}"
        shutil.copytree(obama_project, root)
        train(root, steps=300, device="cpu", config=tiny_config(**{"detail.enabled": enabled}))
        project = Project(root)
        r = Renderer(project, device="cpu")
        idx = np.arange(project.n_train, project.n_frames)
        mel = np.asarray(project.array("mel"), np.float32)
        crops = np.concatenate([r.render_crops(mel_windows(mel, frame_times(project.n_frames, project.fps)[idx[s:s + 16]]),
                                               idx[s:s + 16]) for s in range(0, len(idx), 16)])
        margin = inner_margin(project, r.config.blend.feather)
        inner = interior(project, idx, margin)
        real = np.asarray(project.frames[idx])
        scores[enabled] = (detail(crops, inner, canonical_mouths(project, crops, idx), margin),
                           detail(real, inner, canonical_mouths(project, real, idx), margin))
    ratio = {k: v[0]["laplacian_inner"] / v[1]["laplacian_inner"] for k, v in scores.items()}
    assert ratio[True] > 1.5 * ratio[False], ratio
