"""Shortcuts without duplicates: a sequence given twice to Qt is ambiguous and fires nothing.

`QKeySequence.Redo` already means Ctrl+Shift+Z on X11 and Ctrl+Y on Windows, so
adding both by hand repeats one of them on every platform. Standard keys are
expanded with the platform's own bindings, then each sequence is kept once.
"""
from __future__ import annotations

from PySide6.QtGui import QKeySequence


def key_sequences(*keys) -> list[QKeySequence]:
    """Each key (a StandardKey, text or QKeySequence) expanded and de-duplicated, in order."""
    out: list[QKeySequence] = []
    seen: set[str] = set()
    for key in keys:
        if isinstance(key, QKeySequence.StandardKey):
            seqs = QKeySequence.keyBindings(key)
        else:
            seqs = [QKeySequence(key)]
        for s in seqs:
            text = s.toString(QKeySequence.PortableText)
            if text and text not in seen:
                seen.add(text)
                out.append(s)
    return out
