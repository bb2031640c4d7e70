"""Shared fixtures of the engine tests: a small training config and one trained project per session.

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


def tiny_config(**overrides):
    """The quick preset, cut down so a CPU test trains in well under a minute."""
    base = {"lip.scale": 0.3, "train.batch": 6, "blend.batch": 2, "train.eval_every": 10_000,
            "train.preview_every": 50, "train.checkpoint_every": 10_000, "train.sync": False}
    base.update(overrides)
    return preset("quick", **base)


@pytest.fixture(scope="session")
def trained(obama_project, tmp_path_factory) -> dict:
    """A copy of the prepared obama project trained for TRAIN_STEPS steps: {'root', 'result', 'reports'}."""
    if "obama" not in TRAINED:
        from speech2lip.core.train import train

        root = tmp_path_factory.mktemp("trained") / "obama"
        shutil.copytree(obama_project, root)
        reports = []
        result = train(root, steps=TRAIN_STEPS, device="cpu", config=tiny_config(),
                       progress=lambda p: reports.append(p) if p.stage in ("train", "done") else None)
        TRAINED["obama"] = {"root": Path(root), "result": result, "reports": reports}
    return TRAINED["obama"]
