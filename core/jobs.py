"""The contract every long job follows: a progress callback and a cancel token.

prepare, train, render, evaluate and export are plain functions taking
`progress: ProgressFn` and `cancel: CancelToken`. The CLI turns the callbacks
into tqdm bars; the GUI turns them into Qt signals. Neither lives here.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional


class Cancelled(Exception):
    """Raised inside a job when its cancel token is set; the job has saved what it can."""


class CancelToken:
    """Thread-safe flag a job polls between units of work."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled()


@dataclass
class Progress:
    """One report from a job.

    stage: short name of the current stage ("decode", "faces", "train", ...)
    done/total: units finished in this stage (total 0 when unknown)
    message: one human line, may be empty
    data: optional payload (losses, preview images as uint8 HxWx3 arrays, ...)
    """

    stage: str
    done: int = 0
    total: int = 0
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


ProgressFn = Callable[[Progress], None]


def no_progress(_: Progress) -> None:
    """Default callback for callers that do not watch."""


def ensure_token(cancel: Optional[CancelToken]) -> CancelToken:
    return cancel if cancel is not None else CancelToken()
