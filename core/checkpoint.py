"""Checkpoints: atomic saves, safe loads, and refusal of anything that is not ours.

A checkpoint is a dict of tensors and plain values (no pickled objects), so it
loads with torch.load(weights_only=True):
  format, version, project_id, project_shape, config (dict), fingerprint,
  step, stage, elapsed_s, model, optimizer, rng, history
It is written to a temporary file and renamed, so a crash or a full disk while
saving leaves the previous checkpoint intact.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any, Optional

import torch

from .config import EngineConfig
from .errors import CheckpointError
from .project import Project, atomic_path, write_json

FORMAT = "speech2lip-checkpoint"
VERSION = 1
LATEST = "latest.pt"


def project_shape(project: Project) -> dict[str, Any]:
    """What a model depends on besides its config: re-preparing a clip changes these."""
    m = project.manifest
    return {"size": int(m.size), "mouth_box": [int(v) for v in m.mouth_box], "n_frames": project.n_frames}


def latest_path(project: Project) -> Path:
    return project.checkpoints / LATEST


def save_checkpoint(project: Project, state: dict[str, Any], path: Optional[Path] = None) -> Path:
    """Write `state` (model/optimizer dicts, step, ...) atomically; also refresh config.json."""
    path = Path(path) if path else latest_path(project)
    cfg: EngineConfig = state["config"]
    payload = dict(state)
    payload.update(format=FORMAT, version=VERSION, project_id=project.id, project_shape=project_shape(project),
                   config=cfg.to_dict(), fingerprint=cfg.fingerprint())
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    write_json(project.checkpoints / "config.json", cfg.to_dict())
    return path


def load_checkpoint(path: Path | str, project: Project, config: Optional[EngineConfig] = None,
                    map_location: Any = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint for `project`; returns the dict with config as EngineConfig.

    config: when given (resume), the checkpoint must have been trained with the same settings.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; train the project first with "
                              f"`speech2lip train --project {project.root}`.")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path} contains pickled code that weights-only loading refuses; it is not a "
                              f"Speech2Lip checkpoint. Use a checkpoint made by `speech2lip train`.") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as e:
        raise CheckpointError(f"{path} is corrupt or truncated ({e.__class__.__name__}); delete it and "
                              f"train again, or pick another checkpoint.") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a Speech2Lip checkpoint; use one made by `speech2lip train`.")
    if int(obj.get("version", 0)) > VERSION:
        raise CheckpointError(f"{path} was written by a newer Speech2Lip Studio; update the application.")
    if obj.get("project_id") != project.id:
        raise CheckpointError(f"{path} belongs to another project; train this project "
                              f"(`speech2lip train --project {project.root}`) or open the project it came from.")
    if obj.get("project_shape") != project_shape(project):
        raise CheckpointError(f"{path} was trained before this project was prepared again; train it again.")
    try:
        cfg = EngineConfig.from_dict(obj["config"])
    except (TypeError, KeyError) as e:
        raise CheckpointError(f"{path} has an unreadable config ({e}); train again.") from None
    if cfg.fingerprint() != obj.get("fingerprint"):
        raise CheckpointError(f"{path} has a config that does not match its own fingerprint; it was edited "
                              f"or damaged. Train again.")
    if config is not None and config.fingerprint() != cfg.fingerprint():
        raise CheckpointError(f"{path} was trained with different settings (preset {cfg.preset}); resume it "
                              f"with those settings, or start a new training instead of resuming.")
    obj["config"] = cfg
    return obj


def find_checkpoint(project: Project, checkpoint: Optional[Path | str] = None) -> Path:
    """The given checkpoint path, or the project's latest."""
    if checkpoint is not None:
        return Path(checkpoint)
    path = latest_path(project)
    if not path.is_file():
        raise CheckpointError(f"{project.root} has no trained model yet; run "
                              f"`speech2lip train --project {project.root}` first.")
    return path


def build_model(cfg: EngineConfig, project: Project):
    """A fresh Speech2Lip model for `project`: depth and masks come from its prepared arrays."""
    import numpy as np

    from .model import Speech2Lip

    arr = lambda name: torch.from_numpy(np.array(project.array(name), dtype=np.float32))
    model = Speech2Lip(cfg, project.manifest.mouth_box, arr("depth"), arr("head_mask"), arr("face_mask"))
    model.lip.set_prior(torch.from_numpy(mean_mouth(project)).permute(2, 0, 1))
    return model


def mean_mouth(project: Project):
    """(h, w, 3) float mean canonical mouth over the training frames with a face."""
    import numpy as np

    mouth, has_face = project.array("mouth"), np.asarray(project.array("has_face"), bool)
    idx = [i for i in range(project.n_train) if has_face[i]] or [project.manifest.canonical_index]
    acc = np.zeros(mouth.shape[1:], np.float64)
    for s in range(0, len(idx), 256):               # streamed: RAM stays flat for long clips
        acc += np.asarray(mouth[idx[s:s + 256]], np.float64).sum(0)
    return (acc / len(idx) / 255.0).astype(np.float32)


def load_model(project: Project, checkpoint: Optional[Path | str] = None, device: Any = "cpu"):
    """(model in eval mode on `device`, checkpoint dict) from a path or the project's latest."""
    ckpt = load_checkpoint(find_checkpoint(project, checkpoint), project)
    model = build_model(ckpt["config"], project)
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError) as e:
        raise CheckpointError(f"the checkpoint's weights do not fit its config ({str(e).splitlines()[0]}); "
                              f"train again.") from None
    return model.to(device).eval(), ckpt
