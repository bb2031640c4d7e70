"""Wizard step 4, the dubbing editor: viewer and transport, pose panel, timeline, export.

The page composes the views around one EditorModel and wires keyboard
shortcuts; each view talks to the model, never to another view.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QFileDialog, QFrame, QHBoxLayout, QSlider, QSplitter, QToolButton, QVBoxLayout,
                               QWidget)

from speech2lip.core.media import read_audio
from speech2lip.core.project import Project

from .. import studio_state, theme
from .clip_panel import ClipPanel
from ..errors import show_error
from ..keys import key_sequences
from ..model.editor import EditorModel
from .playback import Playback
from .pose_panel import PosePanel
from .preview import PreviewViewer
from .render_service import PreviewService
from .timeline_view import Timeline
from .transport import TransportBar, tool
from ..widgets import elided, label
from ..worker import HIGH, Job

AUTOSAVE_MS = 1500       # a moment after the last edit: a burst of edits is written once

SHORTCUTS = [
    ("Space", "play / pause"), ("← / →", "previous / next frame"), ("Shift+← / →", "10 frames back / on"),
    ("J / K / L", "shuttle back / stop / forward (press again: faster)"), ("Home / End", "start / end"),
    ("I / O", "set in / out point"), ("Alt+X", "clear in / out"), ("Ctrl+K", "set pose keyframe"),
    ("Ctrl+B", "split clip at playhead"), ("Delete", "delete selected clip or keyframe"),
    ("Ctrl+Z / Ctrl+Shift+Z", "undo / redo"), ("Ctrl+wheel", "zoom the timeline"),
    ("\\", "A/B: original vs dubbed"), ("Z", "zoom to the mouth"), ("Ctrl+I", "add audio"),
    ("Ctrl+E", "export"), ("Ctrl+S", "save now (edits are also saved automatically)"),
]


def decode_audio(paths: list[str], progress=None, cancel=None) -> list[tuple[str, object]]:
    """Decode each file to 16 kHz mono; raise MediaError on the first that cannot be read."""
    out = []
    for p in paths:
        if cancel is not None:
            cancel.raise_if_cancelled()
        out.append((p, read_audio(p)))
    return out


class EditorPage(QWidget):
    def __init__(self, ctx, project: Project, parent=None) -> None:
        super().__init__(parent)
        self.ctx, self.project = ctx, project
        self.model = EditorModel(project.fps, project.n_frames)
        self.service = PreviewService(ctx, project, self.model, parent=self)
        self._closed = False
        self.playback = Playback(self.model, parent=self)
        self.viewer = PreviewViewer(self.service, self.model, project)
        self.transport = TransportBar(self.model, self.playback)
        self.pose = PosePanel(self.model)
        self.clip_panel = ClipPanel(self.model)
        self.timeline = Timeline(self.model)
        self.view = self.timeline.view
        frames = project.frames
        self.view.set_thumbnail_source(lambda i: frames[min(int(i), len(frames) - 1)], 1.0)
        self._export = None

        viewer_box = QFrame()
        vl = QVBoxLayout(viewer_box)
        vl.setContentsMargins(0, 0, 0, 0)
        vl.setSpacing(0)
        vl.addWidget(self.viewer, 1)
        vl.addWidget(self.transport)

        self.export_btn = QToolButton()
        self.export_btn.setObjectName("exportButton")
        self.export_btn.setText("  Export MP4…")
        self.export_btn.setIcon(theme.icon("export"))
        self.export_btn.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.export_btn.setStyleSheet("QToolButton { background: #3a7bd5; border-color: #4a8be5; color: white;"
                                      " font-weight: 600; padding: 8px 14px; }")
        self.export_btn.clicked.connect(self.export)
        side = QWidget()
        sl = QVBoxLayout(side)
        sl.setContentsMargins(0, 0, 0, 0)
        sl.setSpacing(10)
        sl.addWidget(self.pose)
        sl.addWidget(self.clip_panel)
        sl.addStretch(1)
        sl.addWidget(self.export_btn)
        side.setMinimumWidth(370)
        side.setMaximumWidth(440)

        self.top = QSplitter(Qt.Horizontal)
        self.top.addWidget(viewer_box)
        self.top.addWidget(side)
        self.top.setStretchFactor(0, 1)
        self.split = QSplitter(Qt.Vertical)
        self.split.setObjectName("editorSplit")
        self.split.addWidget(self.top)
        tl = QWidget()
        tll = QVBoxLayout(tl)
        tll.setContentsMargins(0, 0, 0, 0)
        tll.setSpacing(0)
        tll.addWidget(self._timeline_toolbar())
        tll.addWidget(self.timeline, 1)
        self.split.addWidget(tl)
        self.split.setStretchFactor(0, 3)
        self.split.setStretchFactor(1, 2)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 8, 8, 0)
        lay.addWidget(self.split)
        for key, w in (("editor/split", self.split), ("editor/top", self.top)):
            state = ctx.settings.state(key)
            if state is not None:
                w.restoreState(state)

        self._actions()
        self.view.files_dropped.connect(self.add_audio_files)
        self.playback.state_changed.connect(self._playing)
        self.playback.dropped.connect(lambda n: self._status())
        self.service.frame_ready.connect(lambda f: self._status())
        self.model.events.clips.connect(lambda e: self._status())
        self.service.failed.connect(self._render_failed)
        self.model.events.playhead.connect(self._follow)
        cache = self.service.cache        # bounded by the Preferences figure; keeps frames near the playhead
        cache.set_limit(ctx.settings.preview_cache_mb() * 2**20)
        cache.is_live = lambda key: key[0] == self.model.mix_revision
        self.model.events.playhead.connect(lambda e: cache.set_focus(e.frame))
        for name in ("clips", "sources"):       # an audio edit makes every older frame unreachable
            getattr(self.model.events, name).connect(lambda e: cache.prune())
        self.autosave = QTimer(self)
        self.autosave.setSingleShot(True)
        self.autosave.setInterval(AUTOSAVE_MS)
        self.autosave.timeout.connect(self.save_session)
        self.model.events.dirty.connect(lambda e: self._schedule_save())
        self.save_error = ""
        self._restore_session()
        self._fitted = False
        self.viewer.refresh()
        self.service.request(self.model.playhead)

    # --- layout pieces ------------------------------------------------------------------------
    def _timeline_toolbar(self) -> QFrame:
        bar = QFrame()
        theme.set_role(bar, "toolbar")
        lay = QHBoxLayout(bar)
        lay.setContentsMargins(8, 3, 8, 3)
        lay.setSpacing(4)
        self.add_btn = tool("audio-add", "Add audio to the timeline (Ctrl+I)")
        self.split_btn = tool("scissors", "Split the selected clip at the playhead (Ctrl+B)")
        self.del_btn = tool("trash", "Delete the selection (Delete)")
        self.undo_btn = tool("undo", "Undo (Ctrl+Z)")
        self.redo_btn = tool("redo", "Redo (Ctrl+Shift+Z)")
        self.magnet_btn = tool("magnet", "Snap to the playhead and clip edges", checkable=True)
        self.magnet_btn.setChecked(True)
        self.magnet_btn.toggled.connect(lambda on: setattr(self.view, "magnet", on))
        self.zoom = QSlider(Qt.Horizontal)
        self.zoom.setRange(0, 1000)
        self.zoom.setFixedWidth(160)
        self.zoom.setToolTip("Timeline zoom (Ctrl+wheel)")
        self.zoom.valueChanged.connect(self._zoom_slider)
        self.view.zoom_changed.connect(self._zoom_changed)
        fit = QToolButton()
        fit.setText("Fit")
        fit.setToolTip("Show the whole timeline")
        fit.clicked.connect(self.view.fit)
        self.range_label = elided("", "caption")
        hint = elided("Drop audio files here, or use + to add speech", "caption")
        for w in (self.add_btn, self.split_btn, self.del_btn, self.undo_btn, self.redo_btn, self.magnet_btn):
            lay.addWidget(w)
        lay.addSpacing(12)
        lay.addWidget(hint)
        lay.addStretch(1)
        lay.addWidget(self.range_label)
        lay.addSpacing(12)
        lay.addWidget(label("Zoom", "caption"))
        lay.addWidget(self.zoom)
        lay.addWidget(fit)
        self.add_btn.clicked.connect(self.choose_audio)
        self.split_btn.clicked.connect(self.split_at_playhead)
        self.del_btn.clicked.connect(self.delete_selection)
        self.undo_btn.clicked.connect(self.model.undo.undo)
        self.redo_btn.clicked.connect(self.model.undo.redo)
        self.model.undo.events.changed.connect(lambda e: self._undo_state())
        self.model.events.range.connect(lambda e: self._range_text())
        self._undo_state()
        return bar

    def _actions(self) -> None:
        m, pb = self.model, self.playback
        spec = [
            ("Play / pause", "Space", pb.toggle, "play"),
            ("Previous frame", "Left", lambda: m.step(-1), None),
            ("Next frame", "Right", lambda: m.step(1), None),
            ("10 frames back", "Shift+Left", lambda: m.step(-10), None),
            ("10 frames on", "Shift+Right", lambda: m.step(10), None),
            ("Shuttle back", "J", lambda: pb.shuttle(-1), None),
            ("Stop", "K", lambda: pb.shuttle(0), None),
            ("Shuttle forward", "L", lambda: pb.shuttle(1), None),
            ("Go to start", "Home", lambda: m.set_playhead(0), "to-start"),
            ("Go to end", "End", lambda: m.set_playhead(m.duration - 1), "to-end"),
            ("Set in point", "I", lambda: m.set_in_point(m.playhead), None),
            ("Set out point", "O", lambda: m.set_out_point(m.playhead), None),
            ("Clear in / out", "Alt+X", lambda: (m.set_in_point(None), m.set_out_point(None)), None),
            ("Undo", QKeySequence.Undo, m.undo.undo, "undo"),
            ("Redo", QKeySequence.Redo, m.undo.redo, "redo"),
            ("Set pose keyframe", "Ctrl+K", lambda: m.set_keyframe(), "keyframe-add"),
            ("Split clip at playhead", "Ctrl+B", self.split_at_playhead, "scissors"),
            ("Add audio…", "Ctrl+I", self.choose_audio, "audio-add"),
            ("Export…", "Ctrl+E", self.export, "export"),
            ("A/B compare with the original", "\\", self.transport.ab_btn.toggle, "ab"),
            ("Zoom to the mouth", "Z", self.transport.zoom_btn.toggle, "mouth-zoom"),
        ]
        self.actions_by_name: dict[str, QAction] = {}
        for text, key, slot, icon_name in spec:
            a = QAction(theme.icon(icon_name) if icon_name else theme.icon(""), text, self)
            a.setShortcuts(key_sequences(key))
            a.setShortcutContext(Qt.WidgetWithChildrenShortcut)
            a.triggered.connect(slot)
            self.addAction(a)
            self.actions_by_name[text] = a
        # Ctrl+Shift+Z is advertised everywhere; Redo's platform keys may already hold it (X11) or not.
        self.actions_by_name["Redo"].setShortcuts(key_sequences(QKeySequence.Redo, "Ctrl+Shift+Z", "Ctrl+Y"))
        self.transport.ab_btn.toggled.connect(self.viewer.set_compare)
        self.transport.zoom_btn.toggled.connect(self.viewer.set_mouth_zoom)

    def install_menus(self, edit_menu, timeline_menu) -> None:
        a = self.actions_by_name
        for name in ("Undo", "Redo"):
            edit_menu.addAction(a[name])
        edit_menu.addSeparator()
        for name in ("Set in point", "Set out point", "Clear in / out", "Set pose keyframe"):
            edit_menu.addAction(a[name])
        for name in ("Add audio…", "Split clip at playhead", None, "Play / pause", "Go to start", "Go to end",
                     None, "A/B compare with the original", "Zoom to the mouth", None, "Export…"):
            timeline_menu.addSeparator() if name is None else timeline_menu.addAction(a[name])

    def set_active(self, on: bool) -> None:
        for a in self.actions_by_name.values():
            a.setEnabled(on)
        if not on:
            self.playback.pause()
        else:
            self.view.setFocus()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._fitted:             # the view knows its width only once shown
            self._fitted = True
            QTimer.singleShot(0, self.view.fit)

    # --- audio ------------------------------------------------------------------------------
    def choose_audio(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Add speech to the timeline", str(Path.home()),
                                                "Audio (*.wav *.flac *.mp3 *.m4a *.ogg *.opus *.aac *.mp4 "
                                                "*.mov *.mkv);;All files (*)")
        if paths:
            track = self._free_track()
            self.add_audio_files(paths, track, self.model.playhead)

    def _free_track(self) -> int:
        """The first track with nothing under the playhead."""
        ph = self.model.playhead
        for t in range(self.model.n_tracks):
            if not any(c.track == t and c.start <= ph < c.end for c in self.model.clips):
                return t
        return self.model.n_tracks

    def add_audio_files(self, paths: list[str], track: int, frame: int) -> Job:
        """Decode in the background, then place the files one after another from `frame`."""
        job = Job("audio", decode_audio, list(paths))
        job.succeeded.connect(lambda res: self._place(res, track, frame))
        job.failed.connect(lambda exc, tb: show_error(self.window(), exc, tb, context="Adding audio failed."))
        return self.ctx.io.submit(job, HIGH)

    def _place(self, decoded, track: int, frame: int) -> None:
        if self._closed:
            return
        m = self.model
        with m.undo.macro("Add audio" if len(decoded) == 1 else f"Add {len(decoded)} audio clips"):
            for path, wave in decoded:
                m.add_source(path, wave)
                clip = m.add_clip(path, track, frame)
                frame = clip.end
        self.view.setFocus()

    def _restore_session(self) -> None:
        saved = studio_state.load(self.project.root).get("session")
        if not isinstance(saved, dict):
            return
        try:
            paths = self.model.load_json(saved)
        except (ValueError, KeyError, TypeError):
            return                       # an unreadable session starts empty rather than blocking the editor
        missing = [p for p in paths if not Path(p).is_file()]
        present = [p for p in paths if Path(p).is_file()]
        if present:
            job = Job("audio", decode_audio, present)
            job.succeeded.connect(lambda res: self._closed or [self.model.add_source(p, w) for p, w in res])
            self.ctx.io.submit(job, HIGH)
        if missing:
            self.transport.info.setText(f"{len(missing)} audio file(s) of this session are missing")

    def _schedule_save(self) -> None:
        if self.model.dirty and not self._closed:
            self.autosave.start()          # restarts: saves once the edits pause
        else:
            self.autosave.stop()

    def save_session(self) -> bool:
        """Write the session into the project (atomically); True when it is on disk."""
        self.autosave.stop()
        rev = self.model.edit_revision
        try:
            studio_state.update(self.project.root, session=self.model.to_json())
        except OSError as e:        # a full or read-only disk: say so, keep the edits marked unsaved
            self.save_error = f"Not saved: {e.strerror or e}"
            self.model.events.dirty(dirty=True)
            return False
        self.save_error = ""
        self.model.mark_saved(rev)
        return True

    def close_session(self) -> None:
        if self._closed:
            return
        self.playback.pause()
        self.save_session()
        self._closed = True
        self.autosave.stop()
        self.service.close()
        self.ctx.settings.save_state("editor/split", self.split.saveState())
        self.ctx.settings.save_state("editor/top", self.top.saveState())

    # --- edits --------------------------------------------------------------------------------
    def split_at_playhead(self) -> None:
        m = self.model
        ids = m.selection.clips or {c.id for c in m.clips if c.start < m.playhead < c.end}
        with m.undo.macro("Split at playhead"):
            for cid in list(ids):
                m.split_clip(cid, m.playhead)

    def delete_selection(self) -> None:
        sel = self.model.selection
        if sel.clips:
            self.model.remove_clips(sel.clips)
        elif sel.keyframe is not None:
            self.model.delete_keyframe(sel.keyframe)

    def export(self):
        from .export_dialog import ExportDialog

        self.playback.pause()
        self._export = ExportDialog(self, self.ctx, self.project, self.model, self.service.checkpoint)
        self._export.open()
        return self._export

    def set_checkpoint(self, checkpoint: Optional[str]) -> None:
        self.service.set_checkpoint(checkpoint)
        self.viewer.refresh()
        self.service.request(self.model.playhead)

    # --- status ---------------------------------------------------------------------------------
    def _playing(self, on: bool) -> None:
        self.viewer.playing = on
        self.service.playing = on
        if not on:
            self.viewer.refresh()

    def _follow(self, e) -> None:
        if self.playback.playing:
            self.view.ensure_playhead_visible()

    def _status(self) -> None:
        if self._closed:
            return
        s = self.service
        parts = [f"{len(s.cache)} frames cached ({s.cache.nbytes / 2**20:.0f} of {s.cache.max_bytes / 2**20:.0f} MB)"]
        if s.last_render_ms:
            parts.append(f"{s.last_render_ms:.0f} ms/frame")
        if self.playback.playing and self.playback.frames_dropped:
            parts.append(f"{self.playback.frames_dropped} dropped")
        if not self.playback.audio.available:
            parts.append("no audio device: silent playback")
        over = self.view.ruler.overlaps
        if over:
            parts.insert(0, f"A1 and A2 overlap at {self.model.timecode(over[0][0])}: mixed")
        self.transport.info.setText(" · ".join(parts))

    def _render_failed(self, exc: BaseException, tb: str) -> None:
        self.viewer.set_status("NO PREVIEW")
        show_error(self.window(), exc, tb, context="The preview cannot be rendered.")

    def _undo_state(self) -> None:
        u = self.model.undo
        self.undo_btn.setEnabled(u.can_undo)
        self.redo_btn.setEnabled(u.can_redo)
        self.undo_btn.setToolTip(f"Undo {u.undo_text} (Ctrl+Z)" if u.can_undo else "Nothing to undo")
        self.redo_btn.setToolTip(f"Redo {u.redo_text} (Ctrl+Shift+Z)" if u.can_redo else "Nothing to redo")

    def _range_text(self) -> None:
        m = self.model
        if m.in_point is None and m.out_point is None:
            self.range_label.setText("")
            return
        a, b = m.range()
        self.range_label.setText(f"In {m.timecode(a)} · Out {m.timecode(b - 1)} · {(b - a) / m.fps:.2f} s")

    def _zoom_slider(self, v: int) -> None:
        import math

        from .timeline_view import MAX_PPF, MIN_PPF

        ppf = math.exp(math.log(MIN_PPF) + v / 1000 * (math.log(MAX_PPF) - math.log(MIN_PPF)))
        if abs(ppf - self.view.ppf) / self.view.ppf > 1e-3:
            self.view.set_ppf(ppf)

    def _zoom_changed(self, ppf: float) -> None:
        import math

        from .timeline_view import MAX_PPF, MIN_PPF

        v = int(1000 * (math.log(ppf) - math.log(MIN_PPF)) / (math.log(MAX_PPF) - math.log(MIN_PPF)))
        self.zoom.blockSignals(True)
        self.zoom.setValue(v)
        self.zoom.blockSignals(False)
