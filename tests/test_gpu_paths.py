"""Issue 16, parts 1-2 and the faults: the CUDA code paths, exercised on the CPU.

No GPU runs here; each test forces the branch a GPU would take (lazy loss reads, the
autocast choice, an out-of-memory error) and checks what a user would see.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from engine_fixtures import tiny_config
from speech2lip.core import device as Dv
from speech2lip.core.engine.checkpoint import load_checkpoint
from speech2lip.core.errors import UserError
from speech2lip.core.project import Project


def test_one_device_helper_and_a_clear_message_without_cuda(monkeypatch):
    import speech2lip.core.engine.train as T

    assert T.pick_device is Dv.pick_device                    # the old import path still works
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="no CUDA GPU is available"):
        Dv.pick_device("cuda")
    assert Dv.pick_device("cpu").type == "cpu"
    assert Dv.describe(torch.device("cpu"))[1] is False


def test_autocast_is_bf16_where_supported_else_fp16_and_off_on_cpus_without_bf16(monkeypatch):
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert Dv.amp_dtype(cuda) is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert Dv.amp_dtype(cuda) is torch.float16                # the loop enables its GradScaler for this one only
    assert Dv.amp_dtype(cuda, enabled=False) is None
    assert Dv.amp_dtype(torch.device("mps")) is None
    for native in (True, False):                              # emulated bf16 would be slower than fp32
        monkeypatch.setattr(Dv, "cpu_has_bf16", lambda: native)
        assert Dv.amp_dtype(cpu) is (torch.bfloat16 if native else None)
    assert Dv.amp_dtype(cpu, enabled=False) is None


def test_mixed_precision_keeps_losses_geometry_and_norms_in_fp32(obama_project):
    """Under bf16 autocast (a GPU's, or a CPU's with native bf16) SSIM's variances, pixel
    coordinates and GroupNorm statistics stay fp32: in bf16 the face loss went to -inf within
    three steps and a region origin can move by a pixel."""
    from engine_fixtures import smoke_config
    from speech2lip.core.engine.checkpoint import build_model
    from speech2lip.core.engine.data import ClipData
    from speech2lip.core.engine.losses import Reconstruction
    from speech2lip.core.engine.unet import GroupNorm32
    from speech2lip.core.engine.train import _step_loss

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    recon = Reconstruction(0.1, 0.0, use_lpips=False)
    fp32 = recon(x, y)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = recon(x, y)[0]
        norm = GroupNorm32(4, 8)
        h = torch.randn(2, 8, 6, 6, generator=g).bfloat16()
        assert norm(h).dtype is torch.bfloat16
    assert mixed.dtype is torch.float32 and torch.allclose(mixed, fp32, rtol=1e-6)
    assert torch.allclose(norm(h).float(), torch.nn.GroupNorm(4, 8)(h.float()), atol=1e-2)

    project = Project(obama_project)
    cfg = smoke_config()
    data = ClipData(project, cfg, torch.device("cpu"))
    torch.manual_seed(0)
    model = build_model(cfg, project)
    poses = data.poses[data.train_idx[:8]] + torch.linspace(0, 0.4, 8)[:, None, None]   # sub-pixel shifts
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed_origin = model.region_origin(poses)
    assert torch.equal(mixed_origin, model.region_origin(poses))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    recon = Reconstruction(cfg.train.w_struct, 0.0, use_lpips=False)
    gen = torch.Generator().manual_seed(0)
    for step in range(4):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, parts, _ = _step_loss(model, data, cfg, "blend", recon, gen, model.mouth_shape(cfg.lip.scale),
                                        None, None, step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert all(torch.isfinite(torch.as_tensor(v)) for v in parts.values()), parts
    assert torch.isfinite(model.gamem.depth).all()


def test_compile_flag_does_not_change_what_a_checkpoint_is():
    from speech2lip.core.config import preset

    assert preset("quick", **{"train.compile": True}).fingerprint() == preset("quick").fingerprint()
    assert preset("quick").train.compile is False             # off until measured on a GPU


def _history(root):
    return [h for h in json.loads((root / "checkpoints" / "history.json").read_text())["history"] if "loss" in h]


@pytest.mark.slow
def test_gpu_style_lazy_losses_log_the_same_history(project_copy, tmp_path, monkeypatch):
    """On a GPU the losses are read every LOG_EVERY steps, not every step; the record is unchanged."""
    import speech2lip.core.engine.train as T

    cfg = tiny_config(**{"train.preview_every": 1000})
    eager_root = tmp_path / "eager"
    shutil.copytree(project_copy, eager_root)
    T.train(eager_root, steps=20, device="cpu", config=cfg)

    monkeypatch.setattr(T, "_eager_losses", lambda dev: False)
    reports = []
    T.train(project_copy, steps=20, device="cpu", config=cfg, progress=reports.append)
    lazy, eager = _history(project_copy), _history(eager_root)
    assert [list(h) for h in lazy] == [list(h) for h in eager]
    for a, b in zip(lazy, eager):
        assert a["stage"] == b["stage"]
        np.testing.assert_allclose([a[k] for k in a if k not in ("stage", "t")],
                                   [b[k] for k in a if k not in ("stage", "t")], rtol=1e-6)
    train = [p for p in reports if p.stage == "train"]
    assert [p.done for p in train if "losses" in p.data] == [10, 20]       # read only on logging steps
    assert all(np.isfinite(p.data["loss"]) for p in train)                  # the bar still has a number
    assert train[-1].data["losses"]["loss"] == pytest.approx(lazy[-1]["loss"])


def _failing_steps(monkeypatch, fail_at):
    """Make the training step raise CUDA's out-of-memory error on the given calls; record batch sizes."""
    import speech2lip.core.engine.train as T

    real, calls = T._step_loss, []

    def step_loss(model, data, cfg, *a):
        calls.append(cfg.train.batch)
        if len(calls) in fail_at:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, data, cfg, *a)

    monkeypatch.setattr(T, "_step_loss", step_loss)
    return calls


def test_out_of_memory_halves_the_batch_once_and_says_so(project_copy, monkeypatch):
    import speech2lip.core.engine.train as T

    calls = _failing_steps(monkeypatch, {3})
    reports = []
    r = T.train(project_copy, steps=6, device="cpu", config=tiny_config(), progress=reports.append)
    batch = tiny_config().train.batch
    assert r["steps"] == 6 and r["batch"] == batch // 2
    assert calls == [batch] * 3 + [batch // 2] * 4               # the failed step is retried, smaller
    said = [p.message for p in reports if p.stage == "oom"]
    assert len(said) == 1 and f"halving the batch to {batch // 2}" in said[0]


def test_second_out_of_memory_stops_with_a_checkpoint_and_names_the_setting(project_copy, monkeypatch):
    import speech2lip.core.engine.train as T

    _failing_steps(monkeypatch, {3, 5})
    with pytest.raises(UserError, match=r"train\.batch") as e:
        T.train(project_copy, steps=10, device="cpu", config=tiny_config())
    assert "--resume" in str(e.value)
    project = Project(project_copy)
    assert load_checkpoint(project.checkpoints / "latest.pt", project)["step"] == 3     # steps 1-3 kept
    assert T.train(project_copy, steps=5, device="cpu", resume=True)["steps"] == 5


def test_batches_gather_only_their_rows(project_copy):
    from speech2lip.core.engine.data import ClipData

    project = Project(project_copy)
    data = ClipData(project, tiny_config(), torch.device("cpu"))
    assert not data.resident                                   # nothing is kept resident off CUDA
    idx = np.array([3, 1, 7])
    np.testing.assert_array_equal((data.image(idx) * 255).round().byte().permute(0, 2, 3, 1).numpy(),
                                  project.frames[idx])
    h, w = project.array("mouth").shape[1:3]
    np.testing.assert_array_equal((data.mouths(idx, (h, w)) * 255).round().byte().permute(0, 2, 3, 1).numpy(),
                                  project.array("mouth")[idx])
