"""Which training frames a step draws (core/engine/data.py ClipData.draw), on a real clip."""
from __future__ import annotations

import numpy as np
import torch

from speech2lip.core.config import preset
from speech2lip.core.engine.data import ClipData
from speech2lip.core.evaluation.metrics import lip_opening
from speech2lip.core.project import Project


def _drawn_openings(project: Project, power: float, steps: int = 300) -> tuple[np.ndarray, np.ndarray]:
    data = ClipData(project, preset("quick", **{"train.balance_opening": power}), torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    idx = np.concatenate([data.draw(8, gen) for _ in range(steps)])
    lm = np.asarray(project.array("landmarks"))
    return lip_opening(lm[idx]), lip_opening(lm[data.train_idx])


def test_uniform_drawing_is_the_old_stream(obama_project):
    project = Project(obama_project)
    data = ClipData(project, preset("quick"), torch.device("cpu"))
    assert data.draw_weights is None
    a, b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    expected = data.train_idx[torch.randint(len(data.train_idx), (8,), generator=b).numpy()]
    np.testing.assert_array_equal(data.draw(8, a), expected)


def test_balanced_drawing_shows_wide_openings_more_often(obama_project):
    project = Project(obama_project)
    natural, every = _drawn_openings(project, 0.0)
    balanced, _ = _drawn_openings(project, 1.0)
    wide = np.nanpercentile(every, 90)
    assert np.mean(balanced > wide) > 1.4 * np.mean(natural > wide)
    assert np.nanstd(balanced) > 1.15 * np.nanstd(natural)
    data = ClipData(project, preset("quick", **{"train.balance_opening": 1.0}), torch.device("cpu"))
    assert data.draw_weights.shape == (len(data.train_idx),) and abs(float(data.draw_weights.sum()) - 1) < 1e-9
