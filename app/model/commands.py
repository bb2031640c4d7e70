"""Undoable edits of the dubbing session. Each one calls the model's private primitives."""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Optional

from .undo import Command

if TYPE_CHECKING:
    from .editor import AudioClip, EditorModel, Pose


class AddClip(Command):
    def __init__(self, model: "EditorModel", clip: "AudioClip") -> None:
        self.model, self.clip = model, clip
        self.text = f"Add {clip.name}"

    def redo(self) -> None:
        self.model._insert_clip(self.clip)

    def undo(self) -> None:
        self.model._remove_clip(self.clip.id)


class RemoveClips(Command):
    def __init__(self, model: "EditorModel", clips: list["AudioClip"]) -> None:
        self.model, self.clips = model, clips
        self.text = "Delete clip" if len(clips) == 1 else f"Delete {len(clips)} clips"

    def redo(self) -> None:
        for c in self.clips:
            self.model._remove_clip(c.id)

    def undo(self) -> None:
        for c in self.clips:
            self.model._insert_clip(c)


class EditClip(Command):
    """Replace a clip's fields (move, trim, change track or gain) in one step."""

    def __init__(self, model: "EditorModel", before: "AudioClip", text: str, **changes) -> None:
        self.model, self.before = model, before
        self.after = replace(before, **changes)
        self.text = text

    def redo(self) -> None:
        self.model._replace_clip(self.after)

    def undo(self) -> None:
        self.model._replace_clip(self.before)


class SetKeyframe(Command):
    def __init__(self, model: "EditorModel", frame: int, pose: "Pose", old: Optional["Pose"]) -> None:
        self.model, self.frame, self.pose, self.old = model, frame, pose, old
        self.text = "Set pose keyframe" if old is None else "Change pose keyframe"

    def redo(self) -> None:
        self.model._put_key(self.frame, self.pose)

    def undo(self) -> None:
        if self.old is None:
            self.model._drop_key(self.frame)
        else:
            self.model._put_key(self.frame, self.old)


class DeleteKeyframe(Command):
    def __init__(self, model: "EditorModel", frame: int, old: "Pose") -> None:
        self.model, self.frame, self.old = model, frame, old
        self.text = "Delete pose keyframe"

    def redo(self) -> None:
        self.model._drop_key(self.frame)

    def undo(self) -> None:
        self.model._put_key(self.frame, self.old)


class MoveKeyframe(Command):
    """Move a keyframe; a keyframe already at the target is replaced and comes back on undo."""

    def __init__(self, model: "EditorModel", src: int, dst: int, pose: "Pose",
                 overwritten: Optional["Pose"]) -> None:
        self.model, self.src, self.dst = model, src, dst
        self.pose, self.overwritten = pose, overwritten
        self.text = "Move pose keyframe"

    def redo(self) -> None:
        self.model._drop_key(self.src)
        self.model._put_key(self.dst, self.pose)

    def undo(self) -> None:
        self.model._drop_key(self.dst)
        if self.overwritten is not None:
            self.model._put_key(self.dst, self.overwritten)
        self.model._put_key(self.src, self.pose)
