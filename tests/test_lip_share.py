"""train.lip_share: past its share of the budget the lip field stops learning, the rest goes on."""
from __future__ import annotations

import shutil

import pytest
import torch

from engine_fixtures import smoke_config
from speech2lip.core.engine.train import train
from speech2lip.core.errors import UserError


def _weights(root):
    ckpt = torch.load(root / "checkpoints" / "latest.pt", weights_only=True)
    return ckpt["model"], ckpt.get("ema")


def _trained(src, dst, steps, **overrides):
    shutil.copytree(src, dst)
    train(dst, steps=steps, device="cpu", config=smoke_config(**overrides))
    return _weights(dst)


def test_the_lip_field_freezes_at_its_share_and_the_rest_keeps_learning(obama_project, tmp_path):
    # Two steps of lip stage, then the lip field frozen for two: its weights are those of a 2-step run.
    short, _ = _trained(obama_project, tmp_path / "a", 2, **{"train.ema": 0.0})
    long, _ = _trained(obama_project, tmp_path / "b", 4, **{"train.ema": 0.0, "train.lip_share": 0.5})
    lip = [k for k in short if k.startswith("lip.") and short[k].is_floating_point()]
    detail = [k for k in short if k.startswith("detail.") and k.endswith("weight")]
    assert lip and detail
    assert all(torch.equal(short[k], long[k]) for k in lip)
    assert any(not torch.equal(short[k], long[k]) for k in detail)
    # With a weight average the field freezes at the average, which then stays what renders.
    model, ema = _trained(obama_project, tmp_path / "c", 4, **{"train.ema": 0.9, "train.lip_share": 0.5})
    assert all(torch.allclose(model[k], ema["weights"][k]) for k in lip if k in ema["weights"])
    with pytest.raises(UserError, match="lip_share"):
        train(tmp_path / "a", steps=1, device="cpu", new_run=True, config=smoke_config(**{"train.lip_share": 0.0}))
