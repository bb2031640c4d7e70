"""Lip-shape supervision of the audio feature (core.engine.model.LipShapeHead, core.engine.data.lip_shapes)."""
from __future__ import annotations

import numpy as np
import torch

from engine_fixtures import smoke_config
from speech2lip.core.config import EngineConfig, preset
from speech2lip.core.engine.data import ClipData, lip_shapes
from speech2lip.core.engine.model import LipField
from speech2lip.core.evaluation.metrics import lip_opening
from speech2lip.core.project import Project


ON = {"lip.shape_dims": 8, "train.w_shape": 0.01}


def _arrays(project: Project):
    return np.asarray(project.array("landmarks")), np.asarray(project.array("poses"))


def test_lip_shapes_carry_the_opening_and_ignore_where_the_head_is(obama_project):
    project = Project(obama_project)
    lm, poses = _arrays(project)
    train = np.arange(project.n_train)
    shapes = lip_shapes(lm, poses, train, 8)
    ok = np.isfinite(shapes).all(1)
    assert shapes.shape == (len(lm), 8) and ok[train].mean() > 0.95
    assert abs(np.nanvar(shapes[train], 0).sum() - 1) < 0.05          # most of the lips' variance, in unit total
    # The opening is a linear function of the coefficients (it is articulation, which they keep).
    o = lip_opening(lm)[ok]
    x = np.c_[shapes[ok], np.ones(ok.sum())]
    fit = x @ np.linalg.lstsq(x, o, rcond=None)[0]
    assert np.corrcoef(fit, o)[0, 1] > 0.9
    # The same faces seen rotated, scaled and moved in the frame: the same coefficients.
    c, s = np.cos(0.3), np.sin(0.3)
    m = 1.2 * np.array([[c, -s], [s, c]])
    moved_lm = lm.copy()
    moved_lm[..., :2] = lm[..., :2] @ m.T + [7.0, -5.0]
    moved_poses = poses.copy()
    moved_poses[:, :2] = np.einsum("ij,njk->nik", m, poses[:, :2])
    np.testing.assert_allclose(lip_shapes(moved_lm, moved_poses, train, 8), shapes, atol=1e-3)


def test_training_step_teaches_the_audio_encoder_the_lip_shape(obama_project):
    from speech2lip.core.engine.checkpoint import build_model
    from speech2lip.core.engine.losses import Reconstruction
    from speech2lip.core.engine.train import _step_loss

    project = Project(obama_project)
    cfg = smoke_config(**ON)
    data = ClipData(project, cfg, torch.device("cpu"))
    torch.manual_seed(0)
    model = build_model(cfg, project)
    recon = Reconstruction(0.0, 0.0, device=torch.device("cpu"))
    args = (data, cfg, "lip", recon, torch.Generator().manual_seed(0), model.mouth_shape(cfg.lip.scale), None, None, 0)
    loss, parts, _ = _step_loss(model, *args)
    assert "shape" in parts and float(parts["shape"]) > 0
    loss.backward()
    assert model.lip.shape_head.fc.weight.grad.abs().sum() > 0
    with_shape = model.lip.audio.convs[0].weight.grad.clone()
    model.zero_grad()
    off = smoke_config(**{**ON, "train.w_shape": 0.0})
    loss, parts, _ = _step_loss(model, ClipData(project, off, torch.device("cpu")), off, *args[2:])
    loss.backward()
    assert "shape" not in parts and model.lip.shape_head.fc.weight.grad is None
    # What the head asks of the audio encoder is most of what the encoder hears early on.
    assert (with_shape - model.lip.audio.convs[0].weight.grad).norm() > 0.5 * with_shape.norm()


def test_old_configs_keep_their_fingerprint_and_build_no_head():
    cfg = preset("quick", **{"lip.shape_dims": 0, "train.w_shape": 0.0})
    d = cfg.to_dict()
    d["lip"].pop("shape_dims")          # what configs saved before the head hold
    d["train"].pop("w_shape")
    old = EngineConfig.from_dict(d)
    assert old.fingerprint() == cfg.fingerprint() != preset("quick", **ON).fingerprint()
    assert LipField(old.lip).shape_head is None
    assert "shape_head.fc.weight" in LipField(preset("standard", **ON).lip).state_dict()


def test_articulation_references_share_the_predicted_lip_shape(obama_project):
    from speech2lip.core.engine.checkpoint import build_model, reference_bank

    project = Project(obama_project)
    bank = reference_bank(project, pool=10_000, shape_dims=8)
    j = len(bank.frames) // 2
    assert bank.nearest(bank.shapes[j:j + 1], 1, by_articulation=True).item() == j
    rows = bank.nearest(bank.shapes[j:j + 1], 3, bank.frames[j:j + 1], window=30, by_articulation=True)[0]
    assert ((bank.frames[rows] - bank.frames[j]).abs() >= 30).all()
    far = (bank.frames - bank.frames[j]).abs() >= 30
    d = (bank.shapes - bank.shapes[j]).norm(dim=1)
    assert torch.isclose(d[rows[0]], d[far].min())
    # Rendering with them: the predicted shape picks some of DetailNet's references.
    cfg = smoke_config(**ON, **{"detail.shape_refs": 2, "detail.refs": 4})
    model = build_model(cfg, project).eval()
    calls = []
    nearest = model.bank.nearest
    model.bank.nearest = lambda *a, **k: calls.append(k) or nearest(*a, **k)
    data = ClipData(project, cfg, torch.device("cpu"))
    idx = data.train_idx[:3]
    with torch.no_grad():
        out = model.generate(data.windows(idx), data.times(idx))
    assert out.shape == (3, 3, *model.mouth_shape(1.0))
    assert [k.get("by_articulation", False) for k in calls].count(True) == 1
    assert model.bank.shapes.shape[1] == 8
