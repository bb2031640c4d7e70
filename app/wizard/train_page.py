"""Wizard step 3, Train: preset and device, start/pause/stop/resume, live losses and previews."""
from __future__ import annotations

import time
from typing import Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QGridLayout, QProgressBar, QPushButton, QSpinBox, QWidget

from speech2lip.core.jobs import Progress
from speech2lip.core.project import Project

from .. import studio_state, theme
from ..errors import show_error
from ..widgets import ImageView, elided, hbox, label, panel, vbox
from ..worker import HIGH, Job

PRESET_TEXT = {
    "quick": "Quick — small model, half-resolution mouth; minutes on any CPU",
    "standard": "Standard — the paper's full model; wants a CUDA GPU",
}
CPU_STEPS_PER_S = {"quick": 0.5, "standard": 0.05}     # rough, on a 2-core CPU; a measured rate replaces it
FIRM_AFTER_S = 60         # the rate measured over the first minute replaces the preset's guess


def clock(seconds: float) -> str:
    s = int(round(max(0.0, seconds)))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def rate_text(rate: float) -> str:
    return f"{rate:.1f} steps/s" if rate >= 1 else f"{rate:.2f} steps/s"


def detect_device(progress=None, cancel=None) -> tuple[str, bool]:
    """(name, is_gpu) of the device training will use; also loads the engine's modules.

    Loading them here, in the background while the page is read, keeps the first
    training step from importing (and compiling) modules while the UI waits on the GIL.
    """
    import torch

    import speech2lip.core.engine.train  # noqa: F401
    from speech2lip.core.device import describe, pick_device

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])     # pulls in torch's lazily loaded optimiser code
    return describe(pick_device("auto"))                       # the device core's "auto" trains on


class TrainPage(QWidget):
    trained = Signal(str)              # checkpoint path, after a run ends with a usable model
    editor_requested = Signal()
    running_changed = Signal(bool)

    def __init__(self, ctx, parent=None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.project: Optional[Project] = None
        self.job: Optional[Job] = None
        self.device: tuple[str, bool] = ("detecting…", False)
        self._stop_means_finish = False
        self._rate: Optional[float] = None               # the one rate shown: steps/s measured this run
        self._first: Optional[tuple[float, int]] = None  # (time, step) of this run's first step
        self._step = 0                                   # the last step reported
        self._firmed = False                             # the first minute's rate has replaced the guess
        self._total = 0

        # settings row
        self.preset = QComboBox()
        self.preset.setObjectName("presetCombo")
        for key, text in PRESET_TEXT.items():
            self.preset.addItem(text, key)
        self.preset.currentIndexChanged.connect(self._preset_changed)
        self.steps = QSpinBox()
        self.steps.setObjectName("stepsSpin")
        self.steps.setRange(1, 1_000_000)
        self.steps.setSingleStep(500)
        self.steps.setSuffix(" steps")
        self.minutes = QSpinBox()
        self.minutes.setRange(0, 24 * 60)
        self.minutes.setSpecialValueText("no time limit")
        self.minutes.setSuffix(" min")
        self.steps.valueChanged.connect(lambda _v: (self._update_estimate(), self._update_buttons()))
        self.device_label = label("", "value")
        self.estimate = label("", "caption", wrap=True)

        settings, s_lay = panel()
        grid = QGridLayout()
        grid.setHorizontalSpacing(12)
        grid.addWidget(label("Preset", "caption"), 0, 0)
        grid.addWidget(self.preset, 0, 1, 1, 3)
        grid.addWidget(label("Budget", "caption"), 1, 0)
        grid.addWidget(self.steps, 1, 1)
        grid.addWidget(label("or stop after", "caption"), 1, 2, Qt.AlignRight)
        grid.addWidget(self.minutes, 1, 3)
        grid.addWidget(label("Device", "caption"), 2, 0)
        grid.addWidget(self.device_label, 2, 1, 1, 3)
        grid.setColumnStretch(1, 1)
        s_lay.addWidget(label("Training", "heading"))
        s_lay.addLayout(grid)
        s_lay.addWidget(self.estimate)

        # controls
        self.start_btn = QPushButton(theme.icon("train"), " Start")
        self.start_btn.setObjectName("startTraining")
        theme.set_role(self.start_btn, "primary")
        self.pause_btn = QPushButton(theme.icon("pause"), " Pause")
        self.pause_btn.setObjectName("pauseTraining")
        self.stop_btn = QPushButton(theme.icon("stop"), " Stop")
        self.stop_btn.setObjectName("stopTraining")
        theme.set_role(self.stop_btn, "danger")
        self.resume_btn = QPushButton(theme.icon("resume"), " Resume")
        self.resume_btn.setObjectName("resumeTraining")
        self.resume_btn.setToolTip("Continue from the saved model, up to the budget")
        self.editor_btn = QPushButton("Open the editor  ▸")
        self.editor_btn.setObjectName("toEditor")
        theme.set_role(self.editor_btn, "primary")
        self.start_btn.clicked.connect(self._start_clicked)
        self.resume_btn.clicked.connect(lambda: self.start(resume=True))
        self.pause_btn.clicked.connect(lambda: self.stop(finish=False))
        self.stop_btn.clicked.connect(lambda: self.stop(finish=True))
        self.editor_btn.clicked.connect(self.editor_requested)

        self.bar = QProgressBar()
        self.bar.setObjectName("trainProgress")
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(False)
        self.stage = elided("", "value")
        self.speed = elided("", "caption")
        self.speed.setObjectName("trainSpeed")
        self.banner, b_lay = panel("banner")
        self.banner_text = label("", wrap=True)
        b_lay.addWidget(self.banner_text)
        self.banner.setVisible(False)
        controls, c_lay = panel()
        c_lay.addLayout(hbox(self.start_btn, self.resume_btn, self.pause_btn, self.stop_btn, None, self.editor_btn))
        c_lay.addWidget(self.bar)
        c_lay.addLayout(hbox(self.stage, None, self.speed))

        # live views
        self._plot = None          # pyqtgraph loads on first use: it costs a second at startup
        self.mouths = ImageView("Real and generated mouth appear as training runs", min_size=160)
        self.mouths.set_caption("real  |  generated (held-out frame)")
        self.blended = ImageView("The blended frame appears as training runs", min_size=160)
        self.blended.set_caption("blended frame")
        self.psnr = label("", "caption")
        pv, pv_lay = panel()
        pv_lay.addWidget(label("Live preview", "heading"))
        pv_lay.addWidget(self.mouths, 2)
        pv_lay.addWidget(self.blended, 3)
        pv_lay.addWidget(self.psnr)
        plot_panel, pl_lay = panel()
        pl_lay.addWidget(label("Losses (log scale)", "heading"))
        self._plot_lay = pl_lay

        live = hbox(plot_panel, pv, spacing=14)
        live.setStretch(0, 3)
        live.setStretch(1, 2)
        lay = vbox(hbox(settings, vbox(self.banner, controls, spacing=10), spacing=14), live,
                   spacing=14, margins=18)
        lay.setStretch(1, 1)
        self.setLayout(lay)
        self._preset_changed()
        self._update_buttons()
        self._device_job: Optional[Job] = None

    @property
    def plot(self):
        if self._plot is None:
            from .loss_plot import LossPlot

            self._plot = LossPlot()
            self._plot_lay.addWidget(self._plot, 1)
        return self._plot

    def showEvent(self, event) -> None:
        self.plot
        if self._device_job is None:       # torch loads in the background, once, when first needed
            self._device_job = Job("device", detect_device)
            self._device_job.succeeded.connect(self._device_found)
            self.ctx.io.submit(self._device_job, HIGH)
        super().showEvent(event)

    # --- project ----------------------------------------------------------------------------
    def set_project(self, project: Project) -> None:
        self.project = project
        self.plot.load_history(studio_state.training_history(project.root))   # also resets the axes
        run = studio_state.load(project.root).get("train", {})
        if isinstance(run, dict) and run.get("preset") in PRESET_TEXT:
            self.preset.setCurrentIndex(list(PRESET_TEXT).index(run["preset"]))
            if run.get("steps"):
                self.steps.setValue(int(run["steps"]))
            self.minutes.setValue(int(run.get("minutes") or 0))
        else:                  # a new project starts from the preset's budget, not the last project's
            self.minutes.setValue(0)
            self._preset_changed()
        step = studio_state.last_step(project.root)
        step = max(step, int(run.get("saved_step") or 0)) if isinstance(run, dict) else step
        self._step = step
        unfinished = studio_state.training_unfinished(project.root)
        self.banner.setVisible(unfinished is not None)
        if unfinished is not None:
            total = unfinished.get("steps") or "?"
            self.banner_text.setText(f"Training was interrupted at step {step} of {total}. "
                                     "Resume to continue from the last checkpoint.")
        self._total = int(self.steps.value())
        self.bar.setValue(int(1000 * min(1.0, step / max(self._total, 1))))
        self.stage.setText(f"Trained {step} steps" if studio_state.checkpoint_path(project.root) else "Not trained yet")
        self.speed.setText("")
        self._rate = None
        self._update_estimate()
        self._update_buttons()

    @property
    def current_step(self) -> int:
        return self._step

    def can_train_more(self) -> bool:
        """A saved model whose run ended, with a budget above its step: 'Train more' continues it."""
        return (self.project is not None and studio_state.checkpoint_path(self.project.root) is not None
                and studio_state.training_unfinished(self.project.root) is None
                and int(self.steps.value()) > self._step)

    @property
    def running(self) -> bool:
        return self.job is not None and self.job.is_active

    # --- run ------------------------------------------------------------------------------------
    def start(self, resume: bool = False) -> Optional[Job]:
        from speech2lip.core.engine.train import train

        if self.project is None or self.running:
            return None
        preset, steps = self.preset.currentData(), int(self.steps.value())
        minutes = float(self.minutes.value()) or None
        studio_state.update(self.project.root, train={"preset": preset, "steps": steps, "minutes": minutes,
                                                      "finished": False})
        if resume:        # continue the saved curves exactly as history.json holds them
            self.plot.load_history(studio_state.training_history(self.project.root))
        else:
            self.plot.reset()
        self._stop_means_finish = False
        self._total, self._rate, self._first, self._firmed = steps, None, None, False
        self.banner.setVisible(False)
        config = self._resume_config() if resume else self.ctx.configs(preset)
        job = Job("train", train, str(self.project.root), preset=preset, steps=steps, minutes=minutes,
                  resume=resume, new_run=not resume, config=config)
        job.progress.connect(self._progress)
        job.succeeded.connect(self._done)
        job.failed.connect(self._failed)
        job.cancelled.connect(self._cancelled)
        job.finished.connect(self._update_buttons)
        self.job = job
        self.stage.setText("Resuming…" if resume else "Starting…")
        self.speed.setText("")
        self.ctx.engine.submit(job, HIGH)
        self._update_buttons()
        self.running_changed.emit(True)
        return job

    def _start_clicked(self) -> None:
        """Start; over an existing model, ask first (the new run keeps it in checkpoints/run-N)."""
        from PySide6.QtWidgets import QMessageBox

        if self.project is None or studio_state.checkpoint_path(self.project.root) is None:
            self.start(resume=False)
            return
        more = (f" To continue it instead, raise the budget above {self._step} steps and use Train more."
                if not self.resume_btn.isEnabled() else f" {self.resume_btn.text().strip()} continues it instead.")
        box = QMessageBox(QMessageBox.Question, "Start over?",
                          "Training from scratch starts a new model; the current one is kept in the "
                          "project's checkpoints/run-N folder." + more,
                          QMessageBox.Cancel, self.window())
        box.setObjectName("startOverDialog")
        go = box.addButton("Start over", QMessageBox.DestructiveRole)
        box.setDefaultButton(QMessageBox.Cancel)
        box.finished.connect(lambda _r: box.clickedButton() is go and self.start(resume=False))
        box.setAttribute(Qt.WA_DeleteOnClose)
        box.open()

    def _resume_config(self):
        """The settings the interrupted run started with (checkpoints/config.json), so that a newer
        version of the app with other preset defaults still resumes it; None when absent."""
        from speech2lip.core.config import EngineConfig

        try:
            return EngineConfig.from_dict(self.project.run_config())
        except (OSError, ValueError, TypeError, AttributeError):
            return None

    def stop(self, finish: bool) -> None:
        """Pause (finish=False) or stop (True); both keep the last checkpoint."""
        if self.running:
            self._stop_means_finish = finish
            self.job.cancel()
            self.stage.setText("Saving a checkpoint…")
            self.pause_btn.setEnabled(False)
            self.stop_btn.setEnabled(False)

    def _progress(self, p: Progress) -> None:
        if p.stage == "sync":
            self.stage.setText(f"Training the sync expert · {p.done}/{p.total}")
            return
        if p.stage not in ("train", "done"):
            return
        now = time.monotonic()
        if p.stage == "train":
            self._step = p.done
            if self._first is None:
                self._first = (now, p.done)
            elif p.done > self._first[1] and now - self._first[0] >= 5:
                # Average over the whole run: the same figure as the trainer's steps / seconds at the end.
                self._rate = (p.done - self._first[1]) / (now - self._first[0])
                firm = now - self._first[0] >= FIRM_AFTER_S
                if firm and not self._firmed:
                    self._firmed = True
                    self.ctx.settings.set_value(f"train/rate/{self.preset.currentData()}", self._rate)
                    self._update_estimate()
        total = p.total or self._total
        self.bar.setValue(int(1000 * min(1.0, p.done / max(total, 1))))
        d = p.data
        stage = d.get("stage", "")
        self.stage.setText(f"Step {p.done} / {total}" + (f" · {stage} stage" if stage else ""))
        if self._rate and p.stage == "train":
            eta = clock((total - p.done) / self._rate)
            measuring = self._first is not None and now - self._first[0] < FIRM_AFTER_S
            self.speed.setText(f"{rate_text(self._rate)} · ETA {eta}" + (" (measuring…)" if measuring else ""))
        if "losses" in d:
            self.plot.add(p.done, d["losses"])
        if "heldout_psnr" in d or "heldout_corr" in d:
            self.plot.add_eval(p.done, d)
        if "heldout_psnr" in d:
            self.psnr.setText(f"Held-out mouth PSNR {d['heldout_psnr']:.2f} dB at step {p.done}")
        prev = d.get("preview")
        if isinstance(prev, dict):
            if "mouth" in prev:
                self.mouths.set_image(prev["mouth"])
            if "frame" in prev:
                self.blended.set_image(prev["frame"])

    def _done(self, result: dict) -> None:
        studio_state.update(self.project.root, train={**studio_state.load(self.project.root).get("train", {}),
                                                      "finished": True})
        steps, seconds = int(result.get("steps") or 0), float(result.get("seconds") or 0)
        self._step = steps
        self.stage.setText(f"Done: {steps} steps in {clock(seconds)}")
        # The trainer's own figure for the whole run, so both lines say the same thing; no ETA after the end.
        self.speed.setText(rate_text(steps / seconds) if seconds > 0 and steps else "")
        self.plot.load_history(studio_state.training_history(self.project.root))
        if "heldout_mouth_psnr" in result:
            self.psnr.setText(f"Held-out mouth PSNR {result['heldout_mouth_psnr']:.2f} dB "
                              f"(static mouth {result.get('static_mouth_psnr', float('nan')):.2f} dB)")
        self.job = None
        self._update_buttons()
        self.running_changed.emit(False)
        self.trained.emit(str(result.get("checkpoint", "")))

    def _cancelled(self) -> None:
        # The trainer saves the step it reached when it sees the cancel: the last step it reported
        # (history.json only lists every LOG_EVERY-th step).
        last = self.job.last_report if self.job is not None else None
        step = last.done if last is not None and last.stage == "train" else self._step
        step = max(step, studio_state.last_step(self.project.root))
        self._step = step
        run = studio_state.load(self.project.root).get("train", {})
        studio_state.update(self.project.root, train={**run, "finished": self._stop_means_finish,
                                                      "saved_step": step})
        self.speed.setText("")           # no ETA for a run that is not running
        self.plot.load_history(studio_state.training_history(self.project.root))
        self.stage.setText(f"Stopped at step {step}; the model is saved." if self._stop_means_finish
                           else f"Paused at step {step}; Resume continues from here.")
        self.job = None
        self._update_buttons()
        self.running_changed.emit(False)
        if studio_state.checkpoint_path(self.project.root):
            self.trained.emit(str(studio_state.checkpoint_path(self.project.root)))

    def _failed(self, exc: BaseException, tb: str) -> None:
        self.job = None
        self.speed.setText("")
        self.plot.end_run()
        self._update_buttons()
        self.stage.setText("Training stopped with an error.")
        self.running_changed.emit(False)
        show_error(self.window(), exc, tb, context="Training failed.")

    # --- display -----------------------------------------------------------------------------
    def _device_found(self, dev: tuple[str, bool]) -> None:
        self.device = dev
        self._update_estimate()

    def _preset_changed(self, *_a) -> None:
        """A preset brings its own step budget."""
        if not self.running:
            self.steps.setValue(self.ctx.configs(self.preset.currentData()).train.steps)
        self._update_estimate()

    def _update_estimate(self) -> None:
        key = self.preset.currentData()
        name, gpu = self.device
        self.device_label.setText(name)
        if gpu:
            self.estimate.setText("GPU found: training runs at full speed.")
        elif name != "detecting…":
            firm = self._rate if self._firmed else None
            measured = firm or self.ctx.settings.value(f"train/rate/{key}", None, float)
            left = self.steps.value() - (self._step if self.running or self.can_train_more() else 0)
            minutes = max(left, 0) / (measured or CPU_STEPS_PER_S[key]) / 60
            hint = "" if key == "quick" else "  The standard preset is meant for a GPU; Quick suits a CPU."
            when = "under a minute" if minutes < 1 else (f"about {minutes:.0f} min" if minutes < 120
                                                          else f"about {minutes / 60:.1f} h")
            if firm:
                self.estimate.setText(f"No GPU: {when} left at the measured {rate_text(firm)}.")
            else:
                self.estimate.setText(f"No GPU: {when} on this CPU{' (as measured before)' if measured else ''}."
                                      f"{hint}")

    def _update_buttons(self) -> None:
        running = self.running
        has_ckpt = self.project is not None and studio_state.checkpoint_path(self.project.root) is not None
        unfinished = self.project is not None and studio_state.training_unfinished(self.project.root) is not None
        self.start_btn.setEnabled(self.project is not None and not running)
        self.start_btn.setText(" Start over" if has_ckpt else " Start")
        finished = has_ckpt and not unfinished      # a finished model can only be trained more
        self.resume_btn.setText(" Train more" if finished else " Resume")
        self.resume_btn.setToolTip(f"Continue the saved model from step {self._step} up to a budget above it"
                                   if finished else "Continue from the saved model, up to the budget")
        self.resume_btn.setEnabled(not running and (unfinished or self.can_train_more()))
        self.pause_btn.setEnabled(running)
        self.stop_btn.setEnabled(running)
        self.editor_btn.setEnabled(has_ckpt and not running)
        for w in (self.preset, self.steps, self.minutes):
            w.setEnabled(not running)
