"""Live loss curves (pyqtgraph, log scale), redrawn at most a few times a second."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer

from . import theme

MAX_POINTS = 4000      # per curve; older points are thinned by half when reached
pg.setConfigOptions(background="#141518", foreground="#a9abb3", antialias=True)


class LossPlot(pg.PlotWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("lossPlot")
        self.setLogMode(x=False, y=True)
        self.showGrid(x=True, y=True, alpha=0.15)
        self.setLabel("bottom", "step")
        self.getPlotItem().getAxis("left").setWidth(46)
        self.legend = self.addLegend(offset=(-10, 10), labelTextColor="#c9cbd2", brush=pg.mkBrush(20, 21, 24, 200))
        self.setMinimumHeight(200)
        self.setClipToView(True)
        self.setDownsampling(auto=True, mode="peak")
        self.getPlotItem().vb.disableAutoRange()     # ranges are set from the data below: cheaper
        self.series: dict[str, tuple[list[float], list[float]]] = {}
        self.curves: dict[str, pg.PlotDataItem] = {}
        self._dirty = False
        self._timer = QTimer(self)
        self._timer.setInterval(500)
        self._timer.timeout.connect(self._redraw)
        self._timer.start()

    def clear(self) -> None:
        for c in self.curves.values():
            self.removeItem(c)
        self.legend.clear()
        self.series.clear()
        self.curves.clear()

    def add(self, step: int, losses: dict[str, float]) -> None:
        for name, value in losses.items():
            if "psnr" in name or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
                continue              # PSNR is not a loss; log scale cannot draw zero or negative terms
            xs, ys = self.series.setdefault(name, ([], []))
            xs.append(float(step))
            ys.append(float(value))
            if len(xs) > MAX_POINTS:
                del xs[::2], ys[::2]
        self._dirty = True

    def load_history(self, history: list[dict]) -> None:
        """Curves from a saved run's history (averages every few steps)."""
        skip = {"step", "stage", "t", "heldout_psnr", "static_psnr"}
        for h in history:
            if isinstance(h, dict) and "step" in h:
                self.add(int(h["step"]), {k: v for k, v in h.items() if k not in skip})
        self._redraw()

    def _redraw(self) -> None:
        if not self._dirty and len(self.curves) == len(self.series):
            return
        self._dirty = False
        created = False
        for i, (name, (xs, ys)) in enumerate(sorted(self.series.items())):
            curve = self.curves.get(name)
            if curve is None:
                if created:               # one new curve (and legend row) per tick keeps each tick short
                    self._dirty = True
                    continue
                created = True
                colour = theme.LOSS_COLOURS[i % len(theme.LOSS_COLOURS)]
                width = 2.2 if name == "loss" else 1.3
                curve = self.curves[name] = self.plot([], [], pen=pg.mkPen(colour, width=width), name=name)
            curve.setData(np.asarray(xs), np.asarray(ys))
        self._fit()

    def _fit(self) -> None:
        xs = [x for x, _ in self.series.values() if x]
        ys = [y for _, y in self.series.values() if y]
        if not xs:
            return
        x1 = max(max(x) for x in xs)
        lo = min(min(y) for y in ys)
        hi = max(max(y) for y in ys)
        # Ranges move in coarse steps, so the axes (slow to draw) repaint rarely; curves repaint each tick.
        top = next(v for v in (10 ** e * m for e in range(12) for m in (1, 2, 5)) if v >= x1)
        y0, y1 = np.floor(2 * np.log10(lo)) / 2, np.ceil(2 * np.log10(hi)) / 2
        rng = (top, y0, max(y1, y0 + 0.5))
        if rng != getattr(self, "_range", None):
            self._range = rng
            vb = self.getPlotItem().vb
            vb.setRange(xRange=(0, top), yRange=(rng[1], rng[2]), padding=0)
