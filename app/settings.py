"""Preferences and window layout that persist between runs (QSettings)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from PySide6.QtCore import QByteArray, QSettings

from speech2lip.core.project import looks_like_project, user_data_dir

SETTINGS_ENV = "SPEECH2LIP_SETTINGS"   # an .ini path; tests and screenshots keep theirs apart
MAX_RECENT = 12
CACHE_MB_RANGE = (64, 16384)


class AppSettings:
    def __init__(self, path: Optional[str | Path] = None) -> None:
        path = path or os.environ.get(SETTINGS_ENV)
        if path:
            self.q = QSettings(str(path), QSettings.IniFormat)
        else:
            self.q = QSettings("Speech2Lip", "Speech2Lip Studio")

    # plain values
    def value(self, key: str, default: Any = None, kind: type | None = None) -> Any:
        if kind is None:
            return self.q.value(key, default)
        v = self.q.value(key, default)
        if kind is bool and isinstance(v, str):
            return v.lower() in ("1", "true", "yes")
        try:
            return kind(v)
        except (TypeError, ValueError):
            return default

    def set_value(self, key: str, value: Any) -> None:
        self.q.setValue(key, value)

    # projects
    def projects_dir(self) -> Path:
        return Path(self.value("projects/dir", str(user_data_dir())))

    def set_projects_dir(self, path: str | Path) -> None:
        self.set_value("projects/dir", str(path))

    def recent_projects(self) -> list[Path]:
        """Recent project folders that still exist, newest first."""
        raw = self.q.value("projects/recent", []) or []
        if isinstance(raw, str):
            raw = [raw]
        return [Path(p) for p in raw if looks_like_project(p)]

    def add_recent(self, path: str | Path) -> None:
        path = str(Path(path).resolve())
        items = [str(p) for p in self.recent_projects() if str(p) != path]
        self.q.setValue("projects/recent", [path, *items][:MAX_RECENT])

    def remove_recent(self, path: str | Path) -> None:
        path = str(Path(path).resolve())
        self.q.setValue("projects/recent", [str(p) for p in self.recent_projects() if str(p) != path])

    # preview memory
    def preview_cache_mb(self) -> int:
        """Memory for rendered preview frames, in MB (Preferences)."""
        from .editor.frame_cache import DEFAULT_MB

        v = self.value("preview/cache_mb", DEFAULT_MB, int)
        return int(min(max(v if v is not None else DEFAULT_MB, CACHE_MB_RANGE[0]), CACHE_MB_RANGE[1]))

    def set_preview_cache_mb(self, mb: int) -> None:
        self.set_value("preview/cache_mb", int(mb))

    # layout
    def save_state(self, key: str, state: QByteArray) -> None:
        self.q.setValue(f"layout/{key}", state)

    def state(self, key: str) -> Optional[QByteArray]:
        v = self.q.value(f"layout/{key}")
        return v if isinstance(v, QByteArray) and not v.isEmpty() else None

    def sync(self) -> None:
        self.q.sync()
