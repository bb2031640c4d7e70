"""Work folders beside the user's files, and the removal of those a killed job left behind.

A job builds its output in a hidden folder beside the final one (`.NAME.preparing-*`,
`.s2l-*`) and renames it into place. A kill -9, a power cut or a crash leaves that folder,
up to hundreds of MB. Each folder holds a lock file, locked while its job lives; the
operating system drops the lock when the process dies, however it dies. The next start of
the same job removes folders of its kind that are older than the process and unlocked.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

PROCESS_START = time.time()      # anything newer may belong to a job that started beside this one
LOCK = ".s2l-lock"
UNLOCKED_GRACE_S = 3600.0        # a folder without a lock file (older versions) is left alone this long


def _try_lock(fh) -> bool:
    try:
        if os.name == "nt":
            import msvcrt

            msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _unlock(fh) -> None:
    try:
        if os.name == "nt":
            import msvcrt

            fh.seek(0)
            msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    except OSError:
        pass


class WorkDir:
    """A fresh hidden folder in `parent`, locked for as long as this object holds it."""

    def __init__(self, parent: Path | str, prefix: str) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        self._fh: Optional[object] = open(self.path / LOCK, "wb")
        _try_lock(self._fh)

    def release(self) -> None:
        """Unlock and drop the lock file: before the folder is renamed into place or removed."""
        if self._fh is not None:
            _unlock(self._fh)
            self._fh.close()
            self._fh = None
            (self.path / LOCK).unlink(missing_ok=True)

    def cleanup(self) -> None:
        self.release()
        shutil.rmtree(self.path, ignore_errors=True)


def _held(lock: Path) -> bool:
    try:
        fh = open(lock, "r+b")
    except OSError:
        return False
    with fh:
        if _try_lock(fh):
            _unlock(fh)
            return False
    return True


def remove_stale(parent: Path | str, prefix: str,
                 ours: Optional[Callable[[Path], bool]] = None) -> list[Path]:
    """Remove folders `parent/prefix*` left by dead jobs; returns them.

    ours: for a folder without a lock file, whether its contents are what this job writes.
    """
    removed = []
    try:
        found = list(Path(parent).glob(prefix + "*"))
    except OSError:
        return removed
    for d in found:
        try:
            if d.is_symlink() or not d.is_dir() or d.stat().st_mtime >= PROCESS_START:
                continue
            lock = d / LOCK
            if lock.exists():
                if _held(lock):
                    continue
            elif d.stat().st_mtime > time.time() - UNLOCKED_GRACE_S or (ours is not None and not ours(d)):
                continue
        except OSError:
            continue
        shutil.rmtree(d, ignore_errors=True)
        if not d.exists():
            removed.append(d)
    return removed
