"""The look: dark palette, style sheet, icons, pyqtgraph colours, and numpy -> QImage."""
from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
from PySide6.QtGui import QColor, QIcon, QImage, QPalette, QPixmap
from PySide6.QtWidgets import QApplication

ACCENT = "#3a7bd5"
PLAYHEAD = "#ff5a5f"
AUDIO_CLIP = "#2f8f6f"
AUDIO_WAVE = "#9ff0cf"
VIDEO_CLIP = "#34507a"
KEYFRAME = "#f0b429"
RANGE = "#3a7bd5"
LOSS_COLOURS = ["#4a9eff", "#ff8a4a", "#4fc37a", "#e05ad0", "#f0d24a", "#5ad6e0", "#b78aff", "#ff5a5f"]


def resource_dir() -> Path:
    return Path(str(resources.files("speech2lip.resources")))


@lru_cache(maxsize=None)
def icon(name: str) -> QIcon:
    path = resource_dir() / f"icon-{name}.svg"
    return QIcon(str(path)) if path.is_file() else QIcon()


def logo() -> QIcon:
    return QIcon(str(resource_dir() / "logo.svg"))


# The sheet's minimum width for message-box labels also widened the icon's label: a wide empty gap
# between icon and text. Only the text label (Qt names it qt_msgbox_label) needs it.
MESSAGE_BOX_FIX = ("\nQMessageBox QLabel#qt_msgboxex_icon_label { min-width: 0px; }"
                   "\nQMessageBox QLabel#qt_msgbox_informativelabel { min-width: 0px; }\n")


def apply(app: QApplication) -> None:
    """Fusion style with a dark palette (for what the sheet does not cover) plus the sheet."""
    app.setStyle("Fusion")
    pal = QPalette()
    for role, colour in [
        (QPalette.Window, "#1d1e22"), (QPalette.WindowText, "#d9dadf"), (QPalette.Base, "#141518"),
        (QPalette.AlternateBase, "#1c1d21"), (QPalette.Text, "#e8e9ed"), (QPalette.Button, "#2d2f35"),
        (QPalette.ButtonText, "#e3e4e8"), (QPalette.Highlight, ACCENT), (QPalette.HighlightedText, "#ffffff"),
        (QPalette.ToolTipBase, "#2d2f35"), (QPalette.ToolTipText, "#f0f0f2"), (QPalette.Link, "#6aa8ff"),
    ]:
        pal.setColor(role, QColor(colour))
    pal.setColor(QPalette.Disabled, QPalette.Text, QColor("#5f626b"))
    pal.setColor(QPalette.Disabled, QPalette.ButtonText, QColor("#5f626b"))
    pal.setColor(QPalette.Disabled, QPalette.WindowText, QColor("#5f626b"))
    app.setPalette(pal)
    sheet = resource_dir() / "style.qss"
    if sheet.is_file():
        app.setStyleSheet(sheet.read_text(encoding="utf-8").replace("@RES@", resource_dir().as_posix())
                          + MESSAGE_BOX_FIX)
    app.setWindowIcon(logo())


def qimage(rgb: np.ndarray) -> QImage:
    """A deep copy of an (H, W, 3) uint8 RGB array as a QImage (safe after the array is gone)."""
    rgb = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format_RGB888).copy()


def qpixmap(rgb: np.ndarray) -> QPixmap:
    return QPixmap.fromImage(qimage(rgb))


def set_role(widget, role: str) -> None:
    """Tag a widget for the style sheet (QLabel[role="title"] ...)."""
    widget.setProperty("role", role)


def restyle(widget) -> None:
    """Re-apply the sheet after a dynamic property changed."""
    widget.style().unpolish(widget)
    widget.style().polish(widget)
