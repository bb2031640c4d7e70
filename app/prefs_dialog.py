"""Preferences: the few figures a user may want to change (today: memory for preview frames)."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFormLayout, QSpinBox

from .settings import CACHE_MB_RANGE, AppSettings
from .widgets import label


class PreferencesDialog(QDialog):
    def __init__(self, settings: AppSettings, apply, parent=None) -> None:
        """`apply(mb)` puts a new cache size into effect at once (the open editor's cache)."""
        super().__init__(parent)
        self.setObjectName("preferencesDialog")
        self.setWindowTitle("Preferences")
        self.settings, self._apply = settings, apply
        self.cache_mb = QSpinBox()
        self.cache_mb.setObjectName("cacheMb")
        self.cache_mb.setRange(*CACHE_MB_RANGE)
        self.cache_mb.setSingleStep(128)
        self.cache_mb.setSuffix(" MB")
        self.cache_mb.setValue(settings.preview_cache_mb())
        form = QFormLayout(self)
        form.addRow("Preview frame memory", self.cache_mb)
        form.addRow("", label("Rendered frames kept for scrubbing and playback. When full, the frames "
                              "farthest from the playhead are dropped first.", "caption", wrap=True))
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel, Qt.Horizontal)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.setMinimumWidth(420)

    def accept(self) -> None:
        self.settings.set_preview_cache_mb(self.cache_mb.value())
        self._apply(self.cache_mb.value())
        super().accept()
