"""Qt-free change events, in the spirit of napari's EmitterGroup.

A model owns `events = EmitterGroup("playhead", "clips", ...)`; views connect
callbacks with `model.events.playhead.connect(fn)` and receive an `Event` with
`.type` and keyword fields. The model never knows who listens, so it is tested
without Qt and any number of views stay in step.
"""
from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace
from typing import Callable, Iterator


class Event(SimpleNamespace):
    """One emission: `.type` is the emitter's name; other fields are what changed."""


Callback = Callable[[Event], None]


class EventEmitter:
    def __init__(self, name: str) -> None:
        self.name = name
        self._callbacks: list[Callback] = []
        self._blocked = 0

    def connect(self, callback: Callback) -> Callback:
        if callback not in self._callbacks:
            self._callbacks.append(callback)
        return callback

    def disconnect(self, callback: Callback | None = None) -> None:
        if callback is None:
            self._callbacks.clear()
        elif callback in self._callbacks:
            self._callbacks.remove(callback)

    @property
    def callbacks(self) -> tuple[Callback, ...]:
        return tuple(self._callbacks)

    def __call__(self, **fields) -> Event:
        event = Event(type=self.name, **fields)
        if not self._blocked:
            for cb in list(self._callbacks):   # a callback may disconnect itself
                cb(event)
        return event

    @contextmanager
    def blocked(self) -> Iterator[None]:
        self._blocked += 1
        try:
            yield
        finally:
            self._blocked -= 1


class EmitterGroup:
    """Named emitters as attributes, plus `any`, which fires after each of them."""

    def __init__(self, *names: str) -> None:
        self.any = EventEmitter("any")
        self._names = names
        for name in names:
            setattr(self, name, _Chained(name, self.any))

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def disconnect_all(self) -> None:
        for name in self._names:
            getattr(self, name).disconnect()
        self.any.disconnect()


class _Chained(EventEmitter):
    def __init__(self, name: str, parent: EventEmitter) -> None:
        super().__init__(name)
        self._parent = parent

    def __call__(self, **fields) -> Event:
        event = super().__call__(**fields)
        if not self._blocked:
            self._parent(source=self.name, **fields)
        return event
