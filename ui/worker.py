"""Running a workflow off the GUI thread, reporting through Qt signals."""
from __future__ import annotations

import threading
from typing import Any

import numpy as np
from PySide6.QtCore import QThread, Signal
from PySide6.QtGui import QImage

from ..engine.progress import Progress


def tensor_to_qimage(preview) -> QImage:
    """First image of a preview tensor as a QImage (a copy that owns its pixels).

    ``preview``: (N, C, H, W) float in [0, 1], C = 1, 3 or 4 (torch or numpy).
    Values outside [0, 1] are clipped for display only.
    """
    arr = preview.detach().cpu().numpy() if hasattr(preview, "detach") else np.asarray(preview)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[1] not in (1, 3, 4):
        raise ValueError(f"preview must be (N, 1|3|4, H, W), got shape {tuple(arr.shape)}")
    img = arr[0]
    if img.shape[0] == 1:
        img = np.repeat(img, 3, axis=0)
    hwc = np.ascontiguousarray((np.clip(img.transpose(1, 2, 0), 0, 1) * 255 + 0.5).astype(np.uint8))
    h, w, c = hwc.shape
    fmt = QImage.Format.Format_RGBA8888 if c == 4 else QImage.Format.Format_RGB888
    return QImage(hwc.data, w, h, c * w, fmt).copy()  # copy: numpy buffer dies with this call


class RunThread(QThread):
    """Calls ``run_workflow`` once; every engine progress update becomes signals.

    Signals (delivered queued to the GUI thread):
      progressed(step, total, info)  info without the preview tensor
      preview(QImage)                when the producer sent a preview
      succeeded(RunResult)
      failed(exception)              WorkflowError, InputError, … or Cancelled
    """

    progressed = Signal(int, int, object)
    preview = Signal(QImage)
    succeeded = Signal(object)
    failed = Signal(object)

    def __init__(self, workflow: dict, registry: dict[str, type], *,
                 frames: list[int] | None = None, preview_every: int = 10, parent=None):
        super().__init__(parent)
        self.workflow, self.registry, self.frames = workflow, registry, frames
        self.preview_every = preview_every
        self._stop = threading.Event()

    def request_stop(self) -> None:
        """Ask the run to stop at its next progress update (raises ``Cancelled`` there)."""
        self._stop.set()

    def _callback(self, step: int, total: int, info: dict[str, Any]) -> None:
        info = dict(info)
        preview = info.pop("preview", None)
        if preview is not None:
            try:
                self.preview.emit(tensor_to_qimage(preview))
            except Exception as e:  # a bad preview must not end the run
                info["preview_error"] = str(e)
        self.progressed.emit(step, total, info)

    def run(self) -> None:  # runs in the worker thread
        from ..engine.executor import run_workflow
        progress = Progress(callback=self._callback, should_stop=self._stop.is_set,
                            preview_every=self.preview_every, label="panel run")
        try:
            result = run_workflow(self.workflow, self.registry, frames=self.frames,
                                  progress=progress)
        except Exception as e:  # Cancelled included: shown in the panel, never a crash
            self.failed.emit(e)
        else:
            self.succeeded.emit(result)
