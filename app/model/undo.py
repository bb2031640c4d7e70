"""A Qt-free undo stack of commands, like QUndoStack but testable without a display.

A command knows how to redo and undo itself. `push` runs it, drops whatever
could have been redone, and may merge it into the previous command (a drag of
one clip in many small moves undoes as one step). `macro` groups commands.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import contextmanager
from typing import Iterator, Optional

from .events import EmitterGroup


class Command(ABC):
    text = ""

    @abstractmethod
    def redo(self) -> None: ...

    @abstractmethod
    def undo(self) -> None: ...

    def merge(self, other: "Command") -> bool:
        """Absorb `other` (already applied) into self; True when merged."""
        return False


class Macro(Command):
    def __init__(self, text: str) -> None:
        self.text = text
        self.children: list[Command] = []

    def redo(self) -> None:
        for c in self.children:
            c.redo()

    def undo(self) -> None:
        for c in reversed(self.children):
            c.undo()


class UndoStack:
    def __init__(self, limit: int = 500) -> None:
        self.limit = limit
        self._commands: list[Command] = []
        self._index = 0            # commands[:index] are applied
        self._clean = 0
        self._macro: Optional[Macro] = None
        self.events = EmitterGroup("changed")

    # state
    @property
    def index(self) -> int:
        return self._index

    def __len__(self) -> int:
        return len(self._commands)

    @property
    def can_undo(self) -> bool:
        return self._index > 0

    @property
    def can_redo(self) -> bool:
        return self._index < len(self._commands)

    @property
    def undo_text(self) -> str:
        return self._commands[self._index - 1].text if self.can_undo else ""

    @property
    def redo_text(self) -> str:
        return self._commands[self._index].text if self.can_redo else ""

    @property
    def is_clean(self) -> bool:
        return self._index == self._clean

    def set_clean(self) -> None:
        self._clean = self._index
        self._changed()

    # editing
    def push(self, cmd: Command) -> None:
        cmd.redo()
        if self._macro is not None:
            self._macro.children.append(cmd)
            return
        self._record(cmd)

    def _record(self, cmd: Command) -> None:
        del self._commands[self._index:]
        if self._clean > self._index:
            self._clean = -1           # the clean state can no longer be reached
        prev = self._commands[-1] if self._commands else None
        if prev is not None and self._index != self._clean and prev.merge(cmd):
            self._changed()
            return
        self._commands.append(cmd)
        if len(self._commands) > self.limit:
            drop = len(self._commands) - self.limit
            del self._commands[:drop]
            self._clean -= drop
        self._index = len(self._commands)
        self._changed()

    def undo(self) -> bool:
        if not self.can_undo:
            return False
        self._index -= 1
        self._commands[self._index].undo()
        self._changed()
        return True

    def redo(self) -> bool:
        if not self.can_redo:
            return False
        self._commands[self._index].redo()
        self._index += 1
        self._changed()
        return True

    def clear(self) -> None:
        self._commands.clear()
        self._index = self._clean = 0
        self._changed()

    @contextmanager
    def macro(self, text: str) -> Iterator[None]:
        """Group every push inside the block into one undoable step."""
        if self._macro is not None:      # nested: the outer macro collects everything
            yield
            return
        self._macro = Macro(text)
        try:
            yield
        except BaseException:
            macro, self._macro = self._macro, None
            macro.undo()
            raise
        macro, self._macro = self._macro, None
        if macro.children:
            self._record(macro)

    def _changed(self) -> None:
        self.events.changed(index=self._index, can_undo=self.can_undo, can_redo=self.can_redo)
