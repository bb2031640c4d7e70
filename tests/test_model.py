"""The model's parts on a real prepared clip: no training here, so these run in seconds."""
from __future__ import annotations

import errno
import json
import pickle
import shutil

import numpy as np
import pytest
import torch

from speech2lip.core.engine import warp
from speech2lip.core.engine.checkpoint import (build_model, latest_path, load_checkpoint, load_model, save_checkpoint)
from speech2lip.core.config import EngineConfig, preset
from speech2lip.core.errors import CheckpointError
from speech2lip.core.engine.model import BlendNet, LipField, continuous_sample, crop_images
from speech2lip.core.project import Project


@pytest.fixture(scope="module")
def project(obama_project):
    return Project(obama_project)


@pytest.fixture(scope="module")
def model(project):
    torch.manual_seed(0)
    return build_model(preset("quick"), project).eval()


def turned_frames(project, k=4):
    """The k frames whose pose is furthest from the canonical one (depth matters most there)."""
    poses = np.array(project.array("poses"))
    turn = np.abs(poses[:, :, :3] - np.eye(3) * np.linalg.norm(poses[:, 0, :3], axis=1)[:, None, None]).sum((1, 2))
    return np.argsort(-turn)[:k]


def test_continuous_sample_blends_four_corners_by_area():
    # A linear field: the area-weighted blend of the 4 jittered corners is exactly its value at the centre.
    a = torch.tensor([0.3, -0.7])
    field = lambda x: (x @ a)[..., None].expand(*x.shape[:-1], 3) + 0.5
    h, w = 6, 9
    out = continuous_sample(field, 2, h, w, generator=torch.Generator().manual_seed(1))
    centres = warp.pixel_centres(h, w) / torch.tensor([w, h])
    want = (centres @ a + 0.5)[None, None].expand(2, 3, h, w)
    assert torch.allclose(out, want, atol=1e-5)
    # ...while the 4 corners themselves were off-centre: a nonlinear field shows the jitter.
    wavy = lambda x: torch.sin(40 * x).sum(-1, keepdim=True).expand(*x.shape[:-1], 3)
    g = torch.Generator().manual_seed(2)
    a1, a2 = continuous_sample(wavy, 1, h, w, generator=g), continuous_sample(wavy, 1, h, w, generator=g)
    assert (a1 - a2).abs().max() > 1e-3


def test_lip_field_uses_coordinate_audio_and_time():
    cfg = preset("quick").lip
    f = LipField(cfg).eval()
    mel, t = torch.randn(3, cfg.mel_window, cfg.n_mels), torch.tensor([0.1, 0.5, 0.9])
    img = f.render(mel, t, 20, 26)
    assert img.shape == (3, 3, 20, 26) and img.min() >= 0 and img.max() <= 1
    x = torch.rand(3, 50, 2)
    base = f(x, mel, t)
    assert torch.allclose(base, f.decode(f.embed(x), f.condition(mel, t), f.base(x)))
    mel.requires_grad_(True)
    t.requires_grad_(True)
    f(x, mel, t).sum().backward()
    assert mel.grad.abs().sum() > 0 and t.grad.abs().sum() > 0     # audio and time code drive it
    assert f.render(mel, t, 40, 52).shape[-2:] == (40, 52)         # any resolution: a continuous field


def test_gamem_depth_is_learnable_and_region_c2o_matches_full_grid(project, model):
    g = model.gamem
    assert isinstance(g.depth, torch.nn.Parameter)
    assert torch.allclose(g.depth.detach(), torch.from_numpy(np.array(project.array("depth"))))
    idx = turned_frames(project)
    poses = torch.from_numpy(np.array(project.array("poses")[idx]))
    with torch.no_grad():
        origins = model.region_origin(poses)
        # Converged (12 iterations), the pointwise solver finds the full grid's fixed point.
        full = warp.c2o_grid(g.depth, g.head_mask, poses, iters=12)
        ys, xs = origins[:, 1, None] + torch.arange(model.region[0]), origins[:, 0, None] + torch.arange(model.region[1])
        want = full[torch.arange(len(idx))[:, None, None], ys[:, :, None], xs[:, None, :]]
        g.cfg.c2o_iters = 12
        exact = g.c2o_region(poses, origins, model.region, stride=1)
        g.cfg.c2o_iters = preset("quick").gamem.c2o_iters
        coarse = g.c2o_region(poses, origins, model.region)
    # Where the mouth is pasted (inside the canonical mouth box) the solutions agree; at the
    # head's outline the inverse is ill-posed (background stays, head moves) and they may differ.
    x0, y0, w, h = model.box
    q = (want - torch.tensor([x0, y0])) / torch.tensor([w, h])
    inside = ((q > 0) & (q < 1)).all(-1)
    err = (exact - want).norm(dim=-1)[inside]
    assert err.median() < 0.01 and (err < 0.1).float().mean() > 0.99
    assert (coarse - want).norm(dim=-1)[inside].median() < 0.1
    # The depth loss (Eq. 9) reaches the depth map.
    frames = torch.from_numpy(np.stack([project.frames[i] for i in idx])).permute(0, 3, 1, 2).float() / 255
    canon = torch.from_numpy(np.array(project.frames[project.manifest.canonical_index])).permute(2, 0, 1).float() / 255
    g.depth.grad = None
    g.depth_loss(frames, poses, canon).backward()
    assert g.depth.grad is not None and g.depth.grad.abs().sum() > 0


def test_perturbing_learned_depth_moves_the_pasted_mouth(project):
    torch.manual_seed(0)
    model = build_model(preset("quick"), project).eval()
    idx = turned_frames(project)
    poses = torch.from_numpy(np.array(project.array("poses")[idx]))
    frames = torch.from_numpy(np.stack([project.frames[i] for i in idx])).permute(0, 3, 1, 2).float() / 255
    mouths = torch.from_numpy(np.stack([project.array("mouth")[i] for i in (0, 100, 200, 300)]))
    mouths = mouths.permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        origins = model.region_origin(poses)
        region = crop_images(frames, origins, model.region)
        before, _ = model.paste(mouths, poses, origins, region)
        x0, y0, w, h = model.box
        model.gamem.depth[y0:y0 + h, x0:x0 + w] += 40.0
        after, _ = model.paste(mouths, poses, origins, region)
    assert (after - before).abs().mean() > 2e-3


def test_blend_net_starts_as_identity_and_is_fully_convolutional():
    net = BlendNet(preset("quick").blend)
    for hw in ((112, 152), (256, 256)):
        rgb = torch.rand(2, 3, *hw)
        out = net(rgb, torch.zeros(2, 1, *hw), torch.ones(2, 1, *hw))
        assert out.shape == rgb.shape and torch.equal(out, rgb)


# --- checkpoints ---------------------------------------------------------------------------

def _state(cfg, model):
    return {"config": cfg, "step": 3, "stage": "lip", "elapsed_s": 1.0, "model": model.state_dict(),
            "optimizer": {}, "rng": {"torch": torch.get_rng_state()}, "history": [{"step": 1, "loss": 0.5}]}


def test_checkpoint_round_trip_and_refusals(obama_project, tmp_path):
    root = tmp_path / "p"
    shutil.copytree(obama_project, root)
    project = Project(root)
    cfg = preset("quick")
    model = build_model(cfg, project)
    path = save_checkpoint(project, _state(cfg, model))
    assert path == latest_path(project) and (project.checkpoints / "config.json").is_file()
    ck = load_checkpoint(path, project, cfg)
    assert ck["step"] == 3 and isinstance(ck["config"], EngineConfig)
    loaded, _ = load_model(project)
    assert torch.equal(loaded.gamem.depth, model.gamem.depth)

    with pytest.raises(CheckpointError, match="different settings"):
        load_checkpoint(path, project, preset("standard"))

    other = tmp_path / "other"          # the same clip prepared again: a new project id
    shutil.copytree(obama_project, other)
    manifest = json.loads((other / "project.json").read_text())
    manifest["project_id"] = "0" * 32
    (other / "project.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="another project"):
        load_checkpoint(path, Project(other))

    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:       # a pickle that would run code when unpickled (protocol 2, as torch.save)
        pickle.dump({"format": "speech2lip-checkpoint", "x": print}, f, protocol=2)
    with pytest.raises(CheckpointError, match="pickled code"):
        load_checkpoint(evil, project)

    broken = tmp_path / "broken.pt"
    broken.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(broken, project)


def test_full_disk_during_checkpoint_keeps_the_previous_one(obama_project, tmp_path, monkeypatch):
    root = tmp_path / "p"
    shutil.copytree(obama_project, root)
    project = Project(root)
    cfg = preset("quick")
    model = build_model(cfg, project)
    path = save_checkpoint(project, _state(cfg, model))
    before = path.read_bytes()

    real_save = torch.save

    def full_disk(obj, f, *a, **kw):
        real_save({"half": torch.zeros(10)}, f)      # something was written, then the disk filled
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError):
        save_checkpoint(project, dict(_state(cfg, model), step=99))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in project.checkpoints.iterdir() if ".part" in p.name] == []
    assert load_checkpoint(path, project)["step"] == 3
