"""Errors from core shown as dialogs that say what to do.

A UserError (and the few system errors a user can act on: out of memory, disk
full, no permission) shows its one-line message and nothing else. Anything
else is a bug: the dialog says so and keeps the traceback in a details box.
"""
from __future__ import annotations

import errno
from typing import Optional

from speech2lip.core.errors import CheckpointError, FaceError, MediaError, ProjectError, UserError

_TITLES = [
    (FaceError, "No usable face"),
    (MediaError, "Cannot use this file"),
    (ProjectError, "Project problem"),
    (CheckpointError, "Checkpoint problem"),
    (UserError, "Cannot continue"),
]


def describe(exc: BaseException) -> tuple[str, str, bool]:
    """(title, message, is_user_error) for an exception raised by a core job."""
    for cls, title in _TITLES:
        if isinstance(exc, cls):
            return title, str(exc), True
    name = type(exc).__name__
    if name == "OutOfMemoryError" or (isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()):
        return ("Out of GPU memory",
                "The GPU ran out of memory. Close other programs that use the GPU, or choose the "
                "'quick' preset or the CPU, then try again.", True)
    if isinstance(exc, MemoryError):
        return ("Out of memory", "The computer ran out of memory. Close other programs, or work on a "
                "shorter clip, then try again.", True)
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        where = f" holding {exc.filename}" if exc.filename else ""
        return ("Disk full", f"There is no space left on the disk{where}. Free some space or choose "
                "a folder on another disk, then try again.", True)
    if isinstance(exc, PermissionError):
        where = f" {exc.filename}" if exc.filename else " there"
        return ("Permission denied", f"Speech2Lip Studio may not write{where}. Choose a folder you own.", True)
    return ("Unexpected error", f"{name}: {exc}\n\nThis is a bug in Speech2Lip Studio. "
            "Your project is safe; the details below help to report it.", False)


def show_error(parent, exc: BaseException, details: str = "", context: str = "") -> "QMessageBox":
    """Open a window-modal, non-blocking message box; returns it (tests read its text)."""
    from PySide6.QtWidgets import QMessageBox

    title, message, is_user = describe(exc)
    box = QMessageBox(QMessageBox.Warning if is_user else QMessageBox.Critical, title,
                      f"{context}\n\n{message}".strip() if context else message, QMessageBox.Ok, parent)
    box.setObjectName("errorDialog")
    if details and not is_user:
        box.setDetailedText(details)
    box.setProperty("userError", is_user)
    box.setAttribute(_delete_on_close())
    box.open()
    return box


def _delete_on_close():
    from PySide6.QtCore import Qt

    return Qt.WA_DeleteOnClose


def last_error_dialog(parent) -> Optional["QMessageBox"]:
    """The most recent error box under `parent`, for tests and screenshots."""
    from PySide6.QtWidgets import QMessageBox

    boxes = [b for b in parent.findChildren(QMessageBox) if b.objectName() == "errorDialog" and b.isVisible()]
    return boxes[-1] if boxes else None
