"""Checkpoints: atomic saves, safe loads, and refusal of anything that is not ours.

A checkpoint is a dict of tensors and plain values (no pickled objects), so it
loads with torch.load(weights_only=True):
  format, version, project_id, project_shape, config (dict), fingerprint,
  step, stage, elapsed_s, model, optimizer, rng, history, and ema (the weight average
  that renders; `model` holds the raw weights the optimiser continues from)
It is written to a temporary file and renamed, so a crash or a full disk while
saving leaves the previous checkpoint intact.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any, Optional

import torch

from ..config import EngineConfig
from ..errors import CheckpointError, ProjectError, UserError
from ..project import RUN_FILES, Project, atomic_path, write_json

FORMAT = "speech2lip-checkpoint"
VERSION = 1


def project_shape(project: Project) -> dict[str, Any]:
    """What a model depends on besides its config: re-preparing a clip changes these."""
    m = project.manifest
    return {"size": int(m.size), "mouth_box": [int(v) for v in m.mouth_box], "n_frames": project.n_frames}


def latest_path(project: Project) -> Path:
    return project.latest_path


def save_checkpoint(project: Project, state: dict[str, Any], path: Optional[Path] = None) -> Path:
    """Write `state` (model/optimizer dicts, step, ...) atomically; also refresh config.json."""
    path = Path(path) if path else latest_path(project)
    cfg: EngineConfig = state["config"]
    payload = dict(state)
    payload.update(format=FORMAT, version=VERSION, project_id=project.id, project_shape=project_shape(project),
                   config=cfg.to_dict(), fingerprint=cfg.fingerprint())
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    write_json(project.run_config_path, cfg.to_dict())
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
    except pickle.UnpicklingError as e:
        # Only a refused GLOBAL is code; anything else the unpickler trips on is just not a checkpoint.
        if "GLOBAL" in str(e):
            raise CheckpointError(f"{path} contains pickled code that weights-only loading refuses; it is not a "
                                  f"Speech2Lip checkpoint. Use a checkpoint made by `speech2lip train`.") from None
        raise CheckpointError(f"{path} is not a checkpoint (it is damaged or another kind of file); pick "
                              f"another checkpoint, or train again.") from None
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


def keep_aside(project: Project) -> Optional[Path]:
    """Move the current run (latest.pt and its history) into checkpoints/run-N/; returns that folder,
    or None when there was no run. The sync expert stays: it belongs to the clip, not to the run."""
    import os

    names = [n for n in RUN_FILES if (project.checkpoints / n).exists()]
    if not names:
        return None
    dest = project.next_run_dir()
    dest.mkdir()
    for name in names:
        os.replace(project.checkpoints / name, dest / name)
    return dest


def check_run_choice(project: Project, resume: bool, new_run: bool) -> None:
    """Refuse to replace a trained model unasked, and to resume what is not there."""
    latest = latest_path(project)
    if resume and new_run:
        raise UserError("use either --resume (continue the run) or --new-run (start again), not both.")
    if resume and not latest.is_file():
        raise CheckpointError(f"{project.root} has no checkpoint to resume ({latest} is missing); "
                              f"start training without --resume.")
    if not resume and not new_run and latest.is_file():
        raise ProjectError(f"{project.root} already has a trained model; continue it with --resume, or start "
                           f"again with --new-run (the current run is kept in checkpoints/run-N/).")


def check_resume_budget(project: Project, step: int, elapsed: float, steps: Optional[int],
                         minutes: Optional[float], cfg: EngineConfig) -> None:
    """A budget the checkpoint has already used up would silently train nothing: say so."""
    if minutes is not None and elapsed >= minutes * 60:
        raise UserError(f"the checkpoint of {project.root} has already trained {elapsed / 60:.1f} minutes, "
                        f"and --minutes counts from the start; give more than {elapsed / 60:.1f}.")
    total = steps if steps is not None else None if minutes is not None else cfg.train.steps
    if total is not None and step >= total:
        given = f"--steps {steps}" if steps is not None else f"the preset's {total} steps"
        raise UserError(f"the checkpoint of {project.root} is already at step {step}, past {given} "
                        f"(--steps counts from the start); give more, e.g. --steps {step + max(100, total)}.")


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
    if model.detail is not None:
        model.set_bank(reference_bank(project, cfg.detail.pool, cfg.lip.shape_dims if cfg.detail.shape_refs else 0))
    return model


def reference_bank(project: Project, pool: int, shape_dims: int = 0):
    """DetailNet's references: up to `pool` training mouths with a face, spread over the split;
    with shape_dims, their tracked lip-shape coefficients for articulation look-ups."""
    import numpy as np

    from ..audio import frame_times, mel_windows
    from .detail import ReferenceBank, pool_frames

    has_face = np.asarray(project.array("has_face"), bool)
    idx = np.nonzero(has_face[:project.n_train])[0]
    idx = pool_frames(idx if len(idx) else np.array([project.manifest.canonical_index]), pool)
    mouth = project.array("mouth")
    times = frame_times(project.n_frames, project.fps)[idx]
    windows = mel_windows(np.asarray(project.array("mel"), np.float32), times)        # (N, 40, 80) their speech
    from .data import project_lip_shapes

    shapes = project_lip_shapes(project, shape_dims)
    return ReferenceBank(np.stack([mouth[i] for i in idx]), idx, windows,
                         shapes=shapes[idx] if shapes is not None else None)


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
    """(model in eval mode on `device`, checkpoint dict) from a path or the project's latest.

    The model carries the run's weight average (core.engine.ema) where it saved one."""
    from .ema import apply_saved_average

    ckpt = load_checkpoint(find_checkpoint(project, checkpoint), project)
    model = build_model(ckpt["config"], project)
    try:
        model.load_state_dict(ckpt["model"])
        apply_saved_average(model, ckpt)           # the weight average renders, when the run kept one
    except (RuntimeError, KeyError) as e:
        raise CheckpointError(f"the checkpoint's weights do not fit its config ({str(e).splitlines()[0]}); "
                              f"train again.") from None
    return model.to(device).eval(), ckpt
