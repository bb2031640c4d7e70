"""Preview frames for the editor: rendered on demand by the engine worker, cached, rendered ahead.

Frame k of the preview is frame k of core.dub.plan.DubPlan over the whole timeline's
mix, the same plan the export renders in..out of. The frame at the playhead is asked for first (slot "preview"); then, while
nothing else runs, batches ahead of the playhead fill the cache (slot "ahead").
Both sit on the engine queue, so while training runs they wait: the preview
yields to training and never competes with it for the device.
"""
from __future__ import annotations

import threading
import time
from typing import Optional

import numpy as np
from PySide6.QtCore import QObject, Signal

from speech2lip.core.jobs import Progress
from speech2lip.core.project import Project

from .frame_cache import FrameCache
from ..model.editor import EditorModel
from ..worker import LOW, Job

AHEAD_BATCH = 8
AHEAD_FRAMES = 150          # how far past the playhead idle time is spent rendering


class PreviewService(QObject):
    frame_ready = Signal(int)            # this timeline frame is now in the cache
    state_changed = Signal(str)          # human line for the viewer's status
    failed = Signal(object, str)         # the renderer could not start (no model, bad checkpoint)

    def __init__(self, ctx, project: Project, model: EditorModel, checkpoint: Optional[str] = None,
                 parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.ctx, self.project, self.model = ctx, project, model
        self.checkpoint = checkpoint
        self.cache = FrameCache()
        self.render_ahead = True
        self.playing = False
        self._renderer = None
        self._renderer_lock = threading.Lock()
        self._plan: tuple[int, object] = (-1, None)        # (mix revision, DubPlan of that mix)
        self._originals = None
        self._failed_once = False
        self.last_render_ms = 0.0
        self._closed = False
        self._jobs: set[Job] = set()
        ctx.engine.busy_changed.connect(self._engine_busy)

    def close(self) -> None:
        """Stop asking for frames and cancel what is queued; the editor is going away."""
        self._closed = True
        self.ctx.engine.busy_changed.disconnect(self._engine_busy)
        for job in list(self._jobs):
            job.cancel()

    def _engine_busy(self, busy: bool) -> None:
        if not busy:
            self.fill_ahead()

    # --- keys and lookups ---------------------------------------------------------------------
    def key(self, frame: int) -> tuple:
        pose = self.model.preview_pose(frame)
        return (self.model.mix_revision, int(frame), tuple(round(v, 2) for v in pose))

    def cached(self, frame: int) -> Optional[np.ndarray]:
        return self.cache.get(self.key(frame))

    def original(self, frame: int) -> np.ndarray:
        """The untouched source frame shown at timeline `frame` (full resolution)."""
        if self._originals is None:
            from speech2lip.core.prepare.framestore import JpegPack

            self._originals = JpegPack(self.project.originals)
        return self._originals[int(self.model.background([frame])[0])]

    # --- scheduling -----------------------------------------------------------------------------
    def request(self, frame: int) -> Optional[Job]:
        """Render `frame` unless cached; returns the job (None when cached or unavailable)."""
        if self._closed or self._failed_once or not 0 <= frame < self.model.duration:
            return None
        if self.key(frame) in self.cache:
            self.frame_ready.emit(frame)
            self.fill_ahead()
            return None
        return self._submit([frame], "preview", LOW)

    def fill_ahead(self) -> None:
        """While the engine is idle, render the frames just after the playhead, a batch at a time."""
        if self._closed or not self.render_ahead or self._failed_once or self.ctx.engine.busy:
            return
        start = self.model.playhead + (int(self.model.fps * self.last_render_ms / 1000) if self.playing else 1)
        stop = min(self.model.duration, start + AHEAD_FRAMES)
        missing = [f for f in range(start, stop) if self.key(f) not in self.cache][:AHEAD_BATCH]
        if missing:
            self._submit(missing, "ahead", LOW + 5)

    def _submit(self, frames: list[int], slot: str, priority: int) -> Job:
        frames_arr = np.asarray(frames, np.int64)
        keys = [self.key(f) for f in frames]
        poses = np.array([self.model.preview_pose(f) for f in frames], np.float32)   # unrounded, as exported
        rev = self.model.mix_revision
        mix = None if self._plan[0] == rev else self.model.mix()
        job = Job(f"render-{slot}", self._render, frames_arr, keys, poses, rev, mix)
        job.progress.connect(self._on_progress)
        job.failed.connect(self._on_failed)
        job.finished.connect(self.fill_ahead)
        job.finished.connect(lambda j=job: self._jobs.discard(j))
        self._jobs.add(job)
        if self.ctx.engine.has_running("train"):
            self.state_changed.emit("Preview paused while training")
        return self.ctx.engine.submit(job, priority, slot=slot)

    def _on_progress(self, p: Progress) -> None:
        if "frame" in p.data and not self._closed:
            self.frame_ready.emit(int(p.data["frame"]))

    def _on_failed(self, exc: BaseException, tb: str) -> None:
        if not self._failed_once:
            self._failed_once = True
            self.failed.emit(exc, tb)

    def set_checkpoint(self, checkpoint: Optional[str]) -> None:
        """A new model: drop the renderer and everything it drew."""
        self.checkpoint = checkpoint
        with self._renderer_lock:
            self._renderer = None
        self._failed_once = False
        self.cache.clear()

    def invalidate(self) -> None:
        self.cache.clear()

    # --- worker thread --------------------------------------------------------------------------
    def renderer(self):
        with self._renderer_lock:
            if self._renderer is None:
                from speech2lip.core.dub.render import Renderer

                self._renderer = Renderer(self.project, checkpoint=self.checkpoint, device="auto")
            return self._renderer

    def _plan_for(self, rev: int, mix: Optional[np.ndarray]):
        """The plan of the timeline's mix at revision `rev`: built once per change of what is heard."""
        from speech2lip.core.dub.plan import DubPlan

        cached_rev, plan = self._plan
        if cached_rev != rev or plan is None:
            plan = DubPlan.for_speech(self.project, mix if mix is not None else self.model.mix())
            self._plan = (rev, plan)
        return plan

    def _render(self, frames, keys, poses, rev, mix, progress, cancel) -> int:
        renderer = self.renderer()
        plan = self._plan_for(rev, mix)
        cancel.raise_if_cancelled()
        t0 = time.perf_counter()
        crops = renderer.plan_crops(plan, frames, pose=poses)
        full = renderer.composite_full(crops, plan.background[frames])
        self.last_render_ms = (time.perf_counter() - t0) * 1000 / len(frames)
        for i, (f, k) in enumerate(zip(frames.tolist(), keys)):
            self.cache.put(k, np.asarray(full[i]))
            progress(Progress("preview", i + 1, len(frames), data={"frame": f}))
        return len(frames)
