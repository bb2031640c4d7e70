"""Training curves: losses on a log scale, the held-out evaluation figures on their own small plots.

Live points are averaged every LOG_EVERY steps exactly as the trainer averages
what it writes to checkpoints/history.json, so a reopened project draws the
chart that was seen during training. Between two such points the live chart
shows the mean so far as a provisional last point (the trainer keeps no record
of it, so it goes when the run ends). Each series has one colour everywhere.
"""
from __future__ import annotations

import math
import zlib
from typing import Any, Iterable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer

LOG_EVERY = 10         # core.engine.train.LOG_EVERY (not imported: core.engine.train loads torch)
MAX_POINTS = 4000      # per series; older points are thinned by half when reached
EVAL = {"heldout_psnr": "held-out mouth PSNR (dB)", "heldout_corr": "held-out motion correlation"}
SKIP = {"step", "stage", "t", "static_psnr", "mean_psnr"}       # bookkeeping and fixed baselines
COLOURS = {
    "loss": "#e8e9ed", "mouth_mse": "#4a9eff", "mouth_lpips": "#ff8a4a", "mouth_struct": "#ff8a4a",
    "detail_mse": "#4fc37a", "detail_lpips": "#b78aff", "detail_struct": "#b78aff", "face_mse": "#5ad6e0",
    "face_lpips": "#e05ad0", "face_struct": "#e05ad0", "depth": "#f0d24a", "sync": "#ff5a5f",
    "adv": "#c9a27a", "critic": "#7a8fc9", "heldout_psnr": "#4fc37a", "heldout_corr": "#f0d24a",
}
EXTRA = ["#9ad14a", "#d14a9a", "#4ad1b0", "#d1a04a", "#a0a0a8", "#6a6aff"]
pg.setConfigOptions(background="#141518", foreground="#a9abb3", antialias=True)


def series_colour(name: str) -> str:
    """The colour of a series, the same in every view and every run."""
    return COLOURS.get(name) or EXTRA[zlib.crc32(name.encode()) % len(EXTRA)]


class CurveData:
    """The points of every series (Qt-free): from live steps or from a saved history, the same way."""

    def __init__(self) -> None:
        self.series: dict[str, tuple[list[float], list[float]]] = {}
        self.tail: dict[str, tuple[float, float]] = {}    # provisional: the open window's mean so far
        self._window: list[dict[str, float]] = []

    def clear(self) -> None:
        self.series.clear()
        self.tail.clear()
        self._window = []

    def end_run(self) -> None:
        """The run stopped: its open window is never written to history, so drop what it showed."""
        self.tail.clear()
        self._window = []

    def points(self, name: str) -> tuple[list[float], list[float]]:
        """What a series draws: its points, then the provisional one."""
        xs, ys = self.series.get(name, ([], []))
        t = self.tail.get(name)
        if t is not None and (not xs or t[0] > xs[-1]):
            return xs + [t[0]], ys + [t[1]]
        return xs, ys

    def names(self) -> list[str]:
        return sorted(set(self.series) | set(self.tail))

    def step(self, step: int, losses: dict[str, Any]) -> None:
        """One training step's losses; every LOG_EVERY steps their mean becomes a point, as in history.json."""
        self._window.append(losses)
        means = {k: float(np.mean([w[k] for w in self._window if k in w])) for k in losses}
        if step % LOG_EVERY == 0:
            self.tail.clear()
            self.entry({"step": step, **means})
            self._window = []
        else:
            self.tail = {k: (float(step), v) for k, v in means.items()
                         if math.isfinite(v) and (v > 0 or k in EVAL)}

    def entry(self, h: dict[str, Any]) -> None:
        """One history record: losses and/or evaluation figures at h['step']."""
        if not isinstance(h, dict) or "step" not in h:
            return
        x = float(h["step"])
        for name, value in h.items():
            if name in SKIP or not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            if name not in EVAL and value <= 0:
                continue              # a log scale cannot draw zero or negative terms
            xs, ys = self.series.setdefault(name, ([], []))
            while xs and xs[-1] >= x:  # a resumed run rewinds to its checkpoint: never draw backwards
                xs.pop()
                ys.pop()
            xs.append(x)
            ys.append(float(value))
            if len(xs) > MAX_POINTS:
                del xs[::2], ys[::2]

    def load(self, history: Iterable[dict]) -> None:
        self.clear()
        for h in history:
            self.entry(h)


class LossPlot(pg.GraphicsLayoutWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("lossPlot")
        self.data = CurveData()
        self.legend = pg.LegendItem(colCount=4, labelTextColor="#c9cbd2", labelTextSize="8pt")
        self.addItem(self.legend, row=0, col=0, colspan=2)          # above the plot: never over the data
        self.losses = self.addPlot(row=1, col=0, colspan=2)
        self.losses.setLogMode(x=False, y=True)
        self.losses.setLabel("left", "loss")
        self.evals = {}
        for col, (name, title) in enumerate(EVAL.items()):
            p = self.addPlot(row=2, col=col, title=f"<span style='font-size:8pt'>{title}</span>")
            p.setMaximumHeight(120)
            p.getAxis("left").setWidth(38)
            self.evals[name] = p
        for p in (self.losses, *self.evals.values()):
            p.showGrid(x=True, y=True, alpha=0.15)
            p.setClipToView(True)
        self.losses.getAxis("left").setWidth(46)
        self.losses.setLabel("bottom", "step")
        self.losses.vb.disableAutoRange()     # ranges are set from the data below: cheaper
        self.ci.layout.setRowStretchFactor(1, 3)
        self.setMinimumHeight(260)
        self.curves: dict[str, pg.PlotDataItem] = {}
        self._dirty = False
        self._range = None
        self._timer = QTimer(self)
        self._timer.setInterval(500)
        self._timer.timeout.connect(self._redraw)
        self._timer.start()

    @property
    def series(self) -> dict[str, tuple[list[float], list[float]]]:
        return self.data.series

    # Not `clear`: GraphicsLayoutWidget binds the layout's own clear() on each instance, which would
    # shadow a method of that name and wipe the plots themselves (a blank chart after a reload).
    def reset(self) -> None:
        for name, c in self.curves.items():
            self._plot_for(name).removeItem(c)
        self.legend.clear()
        self.curves.clear()
        self.data.clear()
        self._range = None
        self._dirty = True

    def add(self, step: int, losses: dict[str, float]) -> None:
        """A live step's losses."""
        self.data.step(step, losses)
        self._dirty = True

    def add_eval(self, step: int, figures: dict[str, float]) -> None:
        self.data.entry({"step": step, **{k: v for k, v in figures.items() if k in EVAL}})
        self._dirty = True

    def load_history(self, history: list[dict]) -> None:
        """Rebuild the chart from a saved run's history: the same points the live chart drew."""
        self.reset()
        self.data.load(history)
        self._redraw(all_at_once=True)

    def _plot_for(self, name: str):
        return self.evals.get(name, self.losses)

    def end_run(self) -> None:
        self.data.end_run()
        self._dirty = True

    def _redraw(self, all_at_once: bool = False) -> None:
        names = self.data.names()
        if not self._dirty and len(self.curves) == len(names):
            return
        self._dirty = False
        created = False
        for name in names:
            xs, ys = self.data.points(name)
            curve = self.curves.get(name)
            if curve is None:
                if created and not all_at_once:   # one new curve (and legend row) per tick keeps ticks short
                    self._dirty = True
                    continue
                created = True
                pen = pg.mkPen(series_colour(name), width=2.2 if name in ("loss", *EVAL) else 1.3)
                extra = dict(symbol="o", symbolSize=4, symbolBrush=series_colour(name)) if name in EVAL else {}
                curve = self.curves[name] = self._plot_for(name).plot([], [], pen=pen, **extra)
                if name not in EVAL:
                    self.legend.addItem(curve, name)
            curve.setData(np.asarray(xs), np.asarray(ys))
        for name, curve in self.curves.items():
            if name not in names:
                curve.setData([], [])       # a provisional point whose run ended
        self._fit()

    def _fit(self) -> None:
        loss = [self.data.points(n) for n in self.data.names() if n not in EVAL]
        loss = [(x, y) for x, y in loss if x]
        if not loss:
            return
        x1 = max(max(x) for x, _ in loss)
        lo = min(min(y) for _, y in loss)
        hi = max(max(y) for _, y in loss)
        # Ranges move in coarse steps, so the axes (slow to draw) repaint rarely; curves repaint each tick.
        top = next(v for v in (10 ** e * m for e in range(12) for m in (1, 2, 5)) if v >= x1)
        y0, y1 = np.floor(2 * np.log10(lo)) / 2, np.ceil(2 * np.log10(hi) + 0.1) / 2
        rng = (top, y0, max(y1, y0 + 0.5))
        if rng != self._range:
            self._range = rng
            self.losses.vb.setRange(xRange=(0, top), yRange=(rng[1], rng[2]), padding=0)
            for p in self.evals.values():
                p.setXRange(0, top, padding=0)

    def plotted(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The (steps, values) a series' curve draws now (for tests and checks)."""
        self._redraw(all_at_once=True)
        c = self.curves[name]
        return np.asarray(c.xData), np.asarray(c.yData)
