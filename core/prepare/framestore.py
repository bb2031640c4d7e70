"""Full-resolution source frames kept for compositing, as a JPEG pack with random access.

Raw frames of a long HD clip would take tens of GB; JPEG at quality 95 keeps
them at a few hundred KB each and any frame loads in a few milliseconds, which
the renderer needs for ping-pong schedules.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ProjectError


class JpegPackWriter:
    def __init__(self, path: Path, quality: int = 95) -> None:
        self.path, self.quality = Path(path), quality
        self._f = open(self.path.with_suffix(".bin"), "wb")
        self._offsets = [0]

    def add(self, rgb: np.ndarray) -> None:
        import cv2

        # cvtColor, not a reversed view: the encoder would copy the view at twice the cost
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        self._f.write(buf.tobytes())
        self._offsets.append(self._offsets[-1] + len(buf))

    def close(self) -> int:
        self._f.close()
        np.save(self.path.with_suffix(".idx.npy"), np.array(self._offsets, np.int64))
        return len(self._offsets) - 1


class JpegPack:
    """Read-only access: pack[i] -> RGB uint8 frame."""

    def __init__(self, path: Path) -> None:
        path = Path(path)
        try:
            self._offsets = np.load(path.with_suffix(".idx.npy"))
            self._data = np.memmap(path.with_suffix(".bin"), np.uint8, mode="r")
        except (OSError, ValueError) as e:
            raise ProjectError(f"the project's source frames are unreadable ({e}); prepare the clip again.") from None

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        import cv2

        i = int(i)
        buf = np.asarray(self._data[self._offsets[i]:self._offsets[i + 1]])
        return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
