"""Finished runs as a strip of thumbnails; clicking one restores its values.

A ``HistoryEntry`` keeps what an artist needs to get back to a result: the
value of every panel field (by ``"node_id.input"``), the frames, the files
written, when it ran and how long it took, and a thumbnail. ``HistoryStrip``
shows entries newest first and emits ``activated(entry)`` on a click.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import QListView, QListWidget, QListWidgetItem

THUMB_PX = 80  # longest side of a thumbnail


@dataclass
class HistoryEntry:
    """One finished run.

    values: field key ("3.prompt") -> the value it ran with. prompt/seed/steps:
    the primary fields' values (None when the graph has no such field).
    """

    values: dict[str, Any]
    prompt: str | None = None
    seed: int | None = None
    steps: int | None = None
    frames: str = ""
    written: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    duration: float = 0.0
    backend: str = "in-process"
    thumbnail: QImage | None = None

    @property
    def exr_paths(self) -> list[str]:
        return [p for p in self.written if p.lower().endswith(".exr")]

    def caption(self) -> str:
        bits = []
        if self.seed is not None:
            bits.append(f"seed {self.seed}")
        if self.steps is not None:
            bits.append(f"{self.steps} st")
        return " · ".join(bits) + f"\n{self.duration:.1f} s"

    def describe(self) -> str:
        """Multi-line tooltip: prompt, seed, steps, time, EXR paths."""
        when = time.strftime("%H:%M:%S", time.localtime(self.started))
        lines = [f"prompt: {self.prompt!r}" if self.prompt is not None else "(no prompt)"]
        if self.seed is not None:
            lines.append(f"seed: {self.seed}")
        if self.steps is not None:
            lines.append(f"steps: {self.steps}")
        if self.frames:
            lines.append(f"frames: {self.frames}")
        lines.append(f"ran {when} for {self.duration:.1f} s ({self.backend})")
        lines += [f"EXR: {p}" for p in self.exr_paths] or ["no EXR written"]
        return "\n".join(lines)


class HistoryStrip(QListWidget):
    """Thumbnails of finished runs, newest first; ``activated(entry)`` on click."""

    activated = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.entries: list[HistoryEntry] = []
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(False)
        self.setMovement(QListView.Movement.Static)
        self.setIconSize(QSize(THUMB_PX, THUMB_PX))
        self.setGridSize(QSize(THUMB_PX + 24, THUMB_PX + 2 * self.fontMetrics().lineSpacing() + 10))
        self.setWordWrap(True)
        self.setMinimumHeight(self.gridSize().height() + self.horizontalScrollBar().sizeHint().height())
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setToolTip("Finished runs; click one to restore its prompt, seed and steps")
        self.itemClicked.connect(self._on_click)

    def add(self, entry: HistoryEntry) -> QListWidgetItem:
        self.entries.insert(0, entry)
        item = QListWidgetItem(entry.caption())
        if entry.thumbnail is not None and not entry.thumbnail.isNull():
            pix = QPixmap.fromImage(entry.thumbnail).scaled(
                THUMB_PX, THUMB_PX, Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation)
            item.setIcon(QIcon(pix))
        item.setToolTip(entry.describe())
        item.setData(Qt.ItemDataRole.UserRole, len(self.entries))  # stable id
        self.insertItem(0, item)
        return item

    def entry_at(self, row: int) -> HistoryEntry:
        return self.entries[row]

    def _on_click(self, item: QListWidgetItem) -> None:
        self.activated.emit(self.entries[self.row(item)])
