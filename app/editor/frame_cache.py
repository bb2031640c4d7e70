"""A thread-safe cache of rendered frames, bounded in bytes (Qt-free).

The render worker fills it; the viewer reads it. Keys carry everything a frame
depends on (the audio mix revision, the frame, its pose), so an edit makes old
entries unreachable instead of wrong. When full, it drops what is least likely
to be shown next: unreachable entries first, then the frames farthest from the
playhead (not the oldest: playback and J/K/L come back to frames near it).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Hashable, Optional

import numpy as np

DEFAULT_MB = 512


def key_frame(key: Hashable) -> Optional[int]:
    """The timeline frame of a preview key (rev, frame, pose); None for other keys."""
    if isinstance(key, tuple) and len(key) > 1 and isinstance(key[1], (int, np.integer)):
        return int(key[1])
    return None


class FrameCache:
    def __init__(self, max_bytes: int = DEFAULT_MB * 2**20) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0
        self.focus = 0                                   # the playhead: frames near it are kept
        self.is_live: Optional[Callable[[Hashable], bool]] = None   # False: the key can no longer be asked for
        self.evicted = 0

    def get(self, key: Hashable) -> Optional[np.ndarray]:
        with self._lock:
            arr = self._items.get(key)
            if arr is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return arr

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def put(self, key: Hashable, arr: np.ndarray) -> None:
        arr = np.ascontiguousarray(arr)
        arr.setflags(write=False)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._items[key] = arr
            self._bytes += arr.nbytes
            self._shrink(keep=key)

    def set_limit(self, max_bytes: int) -> None:
        with self._lock:
            self.max_bytes = int(max_bytes)
            self._shrink()

    def set_focus(self, frame: int) -> None:
        self.focus = int(frame)

    def _shrink(self, keep: Hashable = None) -> None:
        while self._bytes > self.max_bytes and len(self._items) > 1:
            victim = self._victim(keep)
            self._bytes -= self._items.pop(victim).nbytes
            self.evicted += 1

    def _victim(self, keep: Hashable) -> Hashable:
        live, focus = self.is_live, self.focus
        best, best_score = None, None
        for age, k in enumerate(self._items):          # oldest first: ties go to the least recently used
            if k == keep:
                continue
            f = key_frame(k)
            dead = live is not None and not live(k)
            score = (dead, abs(f - focus) if f is not None else 0, -age)
            if best_score is None or score > best_score:
                best, best_score = k, score
        return best

    def prune(self) -> int:
        """Drop every entry that can no longer be asked for (after an edit); returns how many."""
        if self.is_live is None:
            return 0
        with self._lock:
            dead = [k for k in self._items if not self.is_live(k)]
            for k in dead:
                self._bytes -= self._items.pop(k).nbytes
            return len(dead)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def frames(self) -> list[int]:
        """The timeline frames held (for status lines and tests)."""
        with self._lock:
            return sorted(f for f in map(key_frame, self._items) if f is not None)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)
