"""A small loss-over-steps plot for the run the panel is watching."""
from __future__ import annotations

import math

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QPainter, QPen, QPolygonF
from PySide6.QtWidgets import QSizePolicy, QWidget

MAX_POINTS = 2000  # older points are thinned (every other one dropped) past this


class LossPlot(QWidget):
    """Plots ``add(step, loss)`` values of the current node on a log scale
    (losses of a trainer span decades); ``reset()`` at each run."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.points: list[tuple[float, float]] = []
        self.label = ""
        self.setMinimumSize(120, 40)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setFixedHeight(44)
        self.setToolTip("Loss of the running node (log scale)")

    def reset(self, label: str = "") -> None:
        self.points, self.label = [], label
        self.update()

    def add(self, step: float, loss: float, label: str = "") -> None:
        if not math.isfinite(loss):
            return
        if label and label != self.label:  # another trainer: another curve
            self.points, self.label = [], label
        self.points.append((float(step), float(loss)))
        if len(self.points) > MAX_POINTS:
            self.points = self.points[::2]
        self.update()

    def _y(self, loss: float) -> float:
        return math.log10(max(loss, 1e-8))

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt name)
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(30, 30, 30))
        p.setPen(QColor(140, 140, 140))
        if len(self.points) < 2:
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "loss")
            return
        xs = [s for s, _ in self.points]
        ys = [self._y(v) for _, v in self.points]
        x0, x1 = min(xs), max(xs)
        y0, y1 = min(ys), max(ys)
        w, h, m = self.width(), self.height(), 4
        sx = (w - 2 * m) / ((x1 - x0) or 1)
        sy = (h - 2 * m) / ((y1 - y0) or 1)
        poly = QPolygonF([QPointF(m + (x - x0) * sx, h - m - (y - y0) * sy) for x, y in zip(xs, ys)])
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(QPen(QColor(90, 170, 255), 1.5))
        p.drawPolyline(poly)
        p.setPen(QColor(200, 200, 200))
        p.drawText(self.rect().adjusted(m, m, -m, -m),
                   Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop,
                   f"{self.label} loss {self.points[-1][1]:.4g}".strip())
