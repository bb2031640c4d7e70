"""Which face of a clip to prepare, as the import page's thumbnails set it (Qt-free).

The faces carry prepare's numbers (core/prepare/face_choice.py: from 1, left to right), so the choice
goes to prepare as `face="2"`; with no face clicked prepare picks the one speaking.
"""
from __future__ import annotations

from typing import Optional, Sequence

AUTO = "speaking"                     # prepare's default
AUTO_TEXT = "Auto: the one speaking"


class FacePick:
    def __init__(self) -> None:
        self.faces: list = []            # inspect_clip.FaceThumb, numbered 1..
        self.chosen: Optional[int] = None

    def set_faces(self, faces: Sequence) -> None:
        """A new clip: its faces, and back to Auto."""
        self.faces = list(faces)
        self.chosen = None

    @property
    def offered(self) -> bool:
        """Whether there is a choice to show: more than one face."""
        return len(self.faces) > 1

    def pick(self, number: Optional[int]) -> None:
        """Choose face `number`, or None for Auto."""
        if number is not None and number not in [f.number for f in self.faces]:
            raise ValueError(f"no face {number} in this clip")
        self.chosen = number

    @property
    def face(self) -> str:
        """prepare's `face` argument."""
        return AUTO if self.chosen is None else str(self.chosen)

    def describe(self) -> str:
        if not self.offered:
            return ""
        if self.chosen is None:
            return (f"{len(self.faces)} faces. Auto prepares the one whose mouth follows the clip's speech; "
                    "click a face to choose it yourself.")
        face = next(f for f in self.faces if f.number == self.chosen)
        return f"Face {face.number} ({face.position}) will be prepared."
