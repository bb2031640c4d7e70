"""`speech2lip-studio [PROJECT_DIR | VIDEO]`: the desktop app."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="speech2lip-studio",
                                description="Speech2Lip Studio: learn a speaker's lips from a clip, then dub it.")
    p.add_argument("path", nargs="?", help="a project folder to open, or a video to start a new project from")
    return p


def create_window(argv: Optional[list[str]] = None):
    """The application (created if needed), themed, with the main window shown and `path` opening."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName("Speech2Lip")
    app.setApplicationName("Speech2Lip Studio")
    app.setApplicationDisplayName("Speech2Lip Studio")
    from . import theme
    from .mainwindow import MainWindow

    theme.apply(app)
    win = MainWindow()
    win.show()
    if args.path:
        target = Path(args.path)
        if target.is_dir():
            QTimer.singleShot(0, lambda: win.open_project(target))
        else:
            QTimer.singleShot(0, lambda: win.new_from_clip(target))
    return win


def main(argv: Optional[list[str]] = None) -> int:
    win = create_window(argv)
    from PySide6.QtWidgets import QApplication

    code = QApplication.instance().exec()
    del win
    return code


if __name__ == "__main__":
    sys.exit(main())
