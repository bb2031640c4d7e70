"""Shared fixtures of the engine tests: small training configs and trained projects, each made once per session.

Import the fixtures into a test module (`from engine_fixtures import trained`); the
module-level cache makes the training run once however many modules use it.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from speech2lip.core.config import preset

TRAINED: dict[str, dict] = {}
TRAIN_STEPS = 600
SMOKE_STEPS = 2


def tiny_config(**overrides):
    """The quick preset, cut down so a CPU test trains in well under a minute."""
    base = {"lip.scale": 0.3, "train.batch": 6, "blend.batch": 2, "train.eval_every": 10_000,
            "train.preview_every": 50, "train.checkpoint_every": 10_000, "train.sync": False}
    base.update(overrides)
    return preset("quick", **base)


def smoke_config(**overrides):
    """Everything shrunk together (width, depth, mouth scale, Blend-Net and detail batches, steps) for a
    2-step end-to-end run: it checks that the pieces fit, not that anything learns."""
    base = {"lip.width": 16, "lip.n_layers": 2, "lip.skip_at": 1, "lip.audio_dim": 16, "lip.scale": 0.2,
            "lip.render_scale": 0.2, "train.batch": 2, "blend.batch": 1, "detail.batch": 1, "detail.pool": 32,
            "train.steps": SMOKE_STEPS, "train.eval_every": 10_000, "train.preview_every": 10_000,
            "train.checkpoint_every": 10_000, "train.sync": False, "train.w_lpips": 0.0}
    base.update(overrides)
    return preset("quick", **base)


@pytest.fixture(scope="session")
def smoke_trained(obama_project, tmp_path_factory) -> Path:
    """A copy of the prepared obama project trained SMOKE_STEPS steps with smoke_config: a model that
    renders (badly) in seconds, for tests of plumbing."""
    if "smoke" not in TRAINED:
        from speech2lip.core.engine.train import train

        root = tmp_path_factory.mktemp("smoke") / "obama"
        shutil.copytree(obama_project, root)
        train(root, steps=SMOKE_STEPS, device="cpu", config=smoke_config())
        TRAINED["smoke"] = {"root": Path(root)}
    return TRAINED["smoke"]["root"]


@pytest.fixture(scope="session")
def trained(obama_project, tmp_path_factory) -> dict:
    """A copy of the prepared obama project trained for TRAIN_STEPS steps: {'root', 'result', 'reports'}."""
    if "obama" not in TRAINED:
        from speech2lip.core.engine.train import train

        root = tmp_path_factory.mktemp("trained") / "obama"
        shutil.copytree(obama_project, root)
        reports = []
        result = train(root, steps=TRAIN_STEPS, device="cpu", config=tiny_config(),
                       progress=lambda p: reports.append(p) if p.stage in ("train", "done") else None)
        TRAINED["obama"] = {"root": Path(root), "result": result, "reports": reports}
    return TRAINED["obama"]
