"""What the app remembers inside a project folder (studio.json): the training run and the dub session.

Core never reads this file. It lets a reopened project offer to resume an
interrupted training run and bring back the timeline as it was left.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from speech2lip.core.project import ProjectFolder, write_json


def load(root: Path | str) -> dict[str, Any]:
    path = ProjectFolder(root).studio_path
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def update(root: Path | str, **sections: Any) -> None:
    """Replace the given top-level sections, keeping the others."""
    obj = load(root)
    obj.update(sections)
    write_json(ProjectFolder(root).studio_path, obj)


def training_history(root: Path | str) -> list[dict[str, Any]]:
    """The trainer's loss history (checkpoints/history.json), empty when there is none."""
    return ProjectFolder(root).history() or []


def checkpoint_path(root: Path | str) -> Optional[Path]:
    folder = ProjectFolder(root)
    return folder.latest_path if folder.is_trained else None


def last_step(root: Path | str) -> int:
    steps = [int(h["step"]) for h in training_history(root) if isinstance(h, dict) and "step" in h]
    return max(steps) if steps else 0


def training_unfinished(root: Path | str) -> Optional[dict[str, Any]]:
    """The saved run settings when a run was paused or interrupted (and a checkpoint exists)."""
    run = load(root).get("train")
    if isinstance(run, dict) and not run.get("finished", True) and checkpoint_path(root) is not None:
        return run
    return None
