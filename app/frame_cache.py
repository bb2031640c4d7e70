"""A thread-safe LRU cache of rendered frames, bounded in bytes (Qt-free).

The render worker fills it; the viewer reads it. Keys carry everything a frame
depends on (the audio mix revision, the frame, its pose), so an edit makes old
entries unreachable instead of wrong, and they age out.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Hashable, Optional

import numpy as np


class FrameCache:
    def __init__(self, max_bytes: int = 768 * 2**20) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

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
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= dropped.nbytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)
