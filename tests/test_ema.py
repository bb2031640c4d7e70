"""The weight average (core/engine/ema.py): what renders is the run's EMA, saved and resumed with it."""
from __future__ import annotations

import torch
import torch.nn as nn

from engine_fixtures import smoke_config
from speech2lip.core.config import EngineConfig, preset
from speech2lip.core.engine.checkpoint import load_checkpoint, load_model
from speech2lip.core.engine.ema import WeightAverage
from speech2lip.core.project import Project


def test_average_warms_up_follows_the_weights_and_restores_them():
    net = nn.Linear(3, 2)
    ema = WeightAverage(net, decay=0.99)
    start = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)                      # warm-up: the first update takes 0.9 of the new weights
    torch.testing.assert_close(ema.shadow[0], start + 0.9)
    for _ in range(200):
        ema.update(net)
    torch.testing.assert_close(ema.shadow[0], start + 1.0, atol=1e-3, rtol=0)
    with torch.no_grad():
        net.weight.add_(5.0)
    raw = net.weight.detach().clone()
    with ema.applied(net):
        torch.testing.assert_close(net.weight, ema.shadow[0])
    assert torch.equal(net.weight, raw)  # the optimiser's weights come back after the block


def test_configs_saved_before_the_average_keep_their_fingerprint():
    cfg = preset("quick", **{"train.ema": 0.0})
    d = cfg.to_dict()
    d["train"].pop("ema")                # what configs saved before the weight average hold
    d["train"].pop("balance_opening")
    old = EngineConfig.from_dict(d)
    assert old.train.ema == 0.0 and old.fingerprint() == cfg.fingerprint()
    assert preset("quick").train.ema > 0 and preset("standard").train.ema > preset("quick").train.ema
    assert preset("quick").fingerprint() != cfg.fingerprint()


def test_checkpoint_renders_with_the_average_and_keeps_the_raw_weights_to_resume(project_copy):
    from speech2lip.core.engine.train import train

    cfg = smoke_config(**{"train.ema": 0.9})
    train(project_copy, steps=4, device="cpu", config=cfg)
    project = Project(project_copy)
    ckpt = load_checkpoint(project.latest_path, project)
    assert ckpt["ema"]["updates"] == 4
    avg = ckpt["ema"]["weights"]
    name = "lip.out.weight"
    assert not torch.equal(avg[name], ckpt["model"][name])     # the average lags the last step
    model, _ = load_model(project)
    assert torch.equal(dict(model.named_parameters())[name].detach(), avg[name])
    train(project_copy, steps=6, device="cpu", config=cfg, resume=True)
    assert load_checkpoint(project.latest_path, project)["ema"]["updates"] == 6
