"""The project folder: a schema-versioned manifest plus arrays, written atomically.

project/
  project.json        manifest (see Manifest)
  frames.npy          (N, S, S, 3) uint8 RGB working crops, memory-mapped
  originals.bin/.idx  full-resolution source frames as JPEG, random access
  landmarks.npy       (N, 478, 3) float32 working-crop pixels, NaN where no face
  has_face.npy        (N,) bool
  tracked.npy         (N,) bool: the face mesh ran on this frame (others are interpolated)
  poses.npy           (N, 3, 4) float32 canonical -> observed similarity (core.engine.warp)
  fit_residual.npy    (N,) float32 mean rigid-fit residual in px
  depth.npy           (S, S) float32 canonical depth, head_mask.npy / face_mask.npy (S, S)
  mouth.npy           (N, h, w, 3) uint8 O2C-warped mouth box per frame
  audio.wav           16 kHz mono speech of the clip (absent when it had none)
  mel.npy             (T, 80) float32 log-mel, 100 frames/s
  diagnostics/*.png   pictures for the user; diagnostics/faces.jpg, when the clip shows several faces,
                      numbers them and marks the one chosen
  checkpoints/        written by training: latest.pt, history.json, config.json, sync_expert.pt,
                      run-N/ (earlier runs kept aside)
  eval/, eval_cross/  evaluation reports (report.json, report.html, figures)
  studio.json         the studio's own state (app.studio_state)

Every file name above is spelled here and nowhere else: code asks a ProjectFolder
(any folder, prepared or not) or a Project (docs/architecture.md, "Project folder").
"""
from __future__ import annotations

import json
import os
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from .errors import ProjectError

SCHEMA_VERSION = 1
MANIFEST = "project.json"
CHECKPOINTS = "checkpoints"
LATEST = "latest.pt"              # the current run's checkpoint
HISTORY = "history.json"          # the current run's loss history
RUN_CONFIG = "config.json"        # the current run's settings
SYNC_EXPERT = "sync_expert.pt"    # belongs to the clip, not to a run: keep_aside leaves it
RUN_PREFIX = "run-"               # checkpoints/run-N/: an earlier run kept aside
RUN_FILES = (LATEST, HISTORY, RUN_CONFIG)
EVAL, EVAL_CROSS = "eval", "eval_cross"
REPORT_JSON, REPORT_HTML = "report.json", "report.html"
ORIGINALS = "originals"           # originals.bin/.idx (core.prepare.framestore.JpegPack)
DIAGNOSTICS = "diagnostics"
FACES_PICTURE = "faces.jpg"       # in diagnostics/: the faces found and the one chosen
SPEECH = "audio.wav"
STUDIO = "studio.json"
EXPORTS = "exports"               # where the studio exports when the user has no Videos folder
DATA_DIR_ENV = "SPEECH2LIP_DATA_DIR"


def user_data_dir() -> Path:
    """Default home of projects; the only user of platformdirs. Tests set SPEECH2LIP_DATA_DIR."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir("Speech2Lip Studio", "Speech2Lip"))


# --- atomic writes ---------------------------------------------------------------

@contextmanager
def atomic_path(final: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it over `final` only on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + final.name + ".", suffix=".part" + final.suffix,
                               dir=final.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def can_write_under(path: Path | str) -> tuple[Path, bool]:
    """(the nearest folder of `path` that exists, whether a file can be created there): output
    checks run before a job's work, so a read-only target fails in seconds, not after minutes."""
    parent = Path(path)
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    try:
        tempfile.TemporaryFile(dir=parent).close()
    except OSError:
        return parent, False
    return parent, True


def write_json(path: Path | str, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False), encoding="utf-8")


def save_array(path: Path | str, arr: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, arr)


def redo_advice(root: Path) -> str:
    """What to do about a damaged project. --force replaces the whole folder, so where a trained
    model lives there, say to move it out first: the advice must not throw hours of training away."""
    ckpt = ProjectFolder(root).checkpoints
    try:
        trained = ckpt.is_dir() and any(ckpt.rglob("*.pt"))
    except OSError:
        trained = False
    if trained:
        return (f"move {ckpt} out of the project first (it holds the trained model; --force would delete it), "
                f"then prepare the clip again with --force")
    return "prepare the clip again with --force"


def _first_upper(text: str) -> str:
    return text[:1].upper() + text[1:]


# --- manifest ----------------------------------------------------------------------

@dataclass
class Manifest:
    """What project.json holds. Boxes are [x0, y0, w, h] in pixels."""

    source: dict[str, Any]            # path, width, height, fps, n_frames, duration, has_audio
    size: int                         # working crop side S
    crop: list[int]                   # square crop in source pixels [x0, y0, side, side]
    canonical_index: int
    mouth_box: list[int]              # in canonical working pixels
    split: dict[str, int]             # {"n_train": ..., "n_frames": ...}
    audio: dict[str, Any]             # sample_rate, hop, n_mels, window (mel frames)
    stats: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    tracker: str = "facemesh"         # core/prepare/tracking backend; projects from before it was recorded used
                                      # the same Face Mesh models through mediapipe
    project_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: Any, where: Path) -> "Manifest":
        if not isinstance(obj, dict):
            raise ProjectError(f"{where} is not a Speech2Lip project manifest; prepare the clip again into a new folder.")
        version = obj.get("schema_version")
        if not isinstance(version, int):
            raise ProjectError(f"{where} has no schema version; it is corrupt. {_first_upper(redo_advice(where.parent))}.")
        if version > SCHEMA_VERSION:
            raise ProjectError(f"{where} was made by a newer Speech2Lip Studio (schema {version}, this one reads "
                               f"{SCHEMA_VERSION}); update the application to open it.")
        required = {"source", "size", "crop", "canonical_index", "mouth_box", "split", "audio"}
        missing = sorted(required - obj.keys())
        if missing:
            raise ProjectError(f"{where} is corrupt (missing {', '.join(missing)}); {redo_advice(where.parent)}.")
        known = {k: obj[k] for k in cls.__dataclass_fields__ if k in obj}
        try:
            m = cls(**known)
            _check_manifest(m)
        except (TypeError, ValueError) as e:
            raise ProjectError(f"{where} is corrupt ({e}); {redo_advice(where.parent)}.") from None
        return m


def _check_manifest(m: Manifest) -> None:
    if m.size not in (128, 256, 512):
        raise ValueError(f"size {m.size}")
    n = int(m.split["n_frames"])
    if not 0 < int(m.split["n_train"]) <= n:
        raise ValueError("split")
    if not 0 <= m.canonical_index < n:
        raise ValueError("canonical index")
    if len(m.mouth_box) != 4 or len(m.crop) != 4:
        raise ValueError("box")


# --- the project -------------------------------------------------------------------

class ProjectFolder:
    """The file names of a project folder, prepared or not (prepare writes into one being made)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def path(self, name: str) -> Path:
        return self.root / name

    def array_path(self, name: str) -> Path:
        return self.root / f"{name}.npy"

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    @property
    def originals(self) -> Path:
        return self.root / ORIGINALS

    @property
    def speech_path(self) -> Path:
        return self.root / SPEECH

    @property
    def diagnostics(self) -> Path:
        return self.root / DIAGNOSTICS

    @property
    def faces_picture(self) -> Path:
        return self.diagnostics / FACES_PICTURE

    @property
    def studio_path(self) -> Path:
        return self.root / STUDIO

    @property
    def exports(self) -> Path:
        return self.root / EXPORTS

    # training
    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @property
    def latest_path(self) -> Path:
        return self.checkpoints / LATEST

    @property
    def history_path(self) -> Path:
        return self.checkpoints / HISTORY

    @property
    def run_config_path(self) -> Path:
        return self.checkpoints / RUN_CONFIG

    @property
    def sync_expert_path(self) -> Path:
        return self.checkpoints / SYNC_EXPERT

    @property
    def is_trained(self) -> bool:
        return self.latest_path.is_file()

    def run_dir(self, n: int) -> Path:
        return self.checkpoints / f"{RUN_PREFIX}{int(n)}"

    def next_run_dir(self) -> Path:
        """The first free checkpoints/run-N/ folder (not created)."""
        n = 1
        while self.run_dir(n).exists():
            n += 1
        return self.run_dir(n)

    def history(self) -> Optional[list[dict[str, Any]]]:
        """The current run's loss history, None when there is none or it is unreadable."""
        try:
            obj = json.loads(self.history_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        hist = obj.get("history") if isinstance(obj, dict) else obj
        return hist if isinstance(hist, list) else None

    def run_config(self) -> Optional[dict[str, Any]]:
        """The current run's saved settings as a dict, None when absent or unreadable."""
        try:
            obj = json.loads(self.run_config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return obj if isinstance(obj, dict) else None

    # evaluation
    def eval_dir(self, cross: bool = False) -> Path:
        return self.root / (EVAL_CROSS if cross else EVAL)

    @property
    def report_path(self) -> Path:
        """The held-out evaluation's report.html."""
        return report_html(self.eval_dir())


def report_html(folder: Path | str) -> Path:
    """report.html of a report folder (a project's eval/ or any --output folder)."""
    return Path(folder) / REPORT_HTML


def report_json(folder: Path | str) -> Path:
    return Path(folder) / REPORT_JSON


class Project(ProjectFolder):
    """A prepared project folder. Arrays open memory-mapped and lazily."""

    def __init__(self, root: Path | str) -> None:
        super().__init__(root)
        path = self.root / MANIFEST
        if not path.is_file():
            raise ProjectError(f"{self.root} is not a prepared project (no {MANIFEST}); "
                               f"run `speech2lip prepare VIDEO --project {self.root}` first.")
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ProjectError(f"{path} is corrupt ({e.__class__.__name__}); {redo_advice(self.root)}.") from None
        self.manifest = Manifest.from_json(obj, path)
        self._cache: dict[str, np.ndarray] = {}

    # arrays
    def array(self, name: str, mmap: bool = True) -> np.ndarray:
        if name not in self._cache:
            p = self.array_path(name)
            if not p.is_file():
                raise ProjectError(f"{self.root} is missing {p.name}; {redo_advice(self.root)}.")
            try:
                self._cache[name] = np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)
            except (ValueError, OSError) as e:
                raise ProjectError(f"{p} is unreadable ({e}); {redo_advice(self.root)}.") from None
        return self._cache[name]

    @property
    def frames(self) -> np.ndarray:
        return self.array("frames")

    @property
    def n_frames(self) -> int:
        return int(self.manifest.split["n_frames"])

    @property
    def n_train(self) -> int:
        return int(self.manifest.split["n_train"])

    @property
    def fps(self) -> float:
        return float(self.manifest.source["fps"])

    @property
    def size(self) -> int:
        return int(self.manifest.size)

    @property
    def has_audio(self) -> bool:
        return bool(self.manifest.source.get("has_audio"))

    @property
    def id(self) -> str:
        return self.manifest.project_id

    def save_manifest(self) -> None:
        write_json(self.root / MANIFEST, self.manifest.to_json())


def open_project(root: Path | str) -> Project:
    return Project(root)


def looks_like_project(root: Path | str) -> bool:
    return (Path(root) / MANIFEST).is_file()


def find_projects(base: Optional[Path] = None) -> list[Path]:
    """Project folders directly under `base` (default: the user data dir), newest first."""
    base = Path(base) if base else user_data_dir()
    if not base.is_dir():
        return []
    found = [p for p in base.iterdir() if looks_like_project(p)]
    return sorted(found, key=lambda p: (p / MANIFEST).stat().st_mtime, reverse=True)
