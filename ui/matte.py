"""The live matte: the relevancy map of the region text on the current frame,
computed off the GUI thread while the artist types.

``MatteWorker`` is a QObject with one long-lived daemon thread (a Python
thread, not a QThread: a QThread still busy loading a model when the
application exits would abort the process; its signals reach the GUI
thread queued all the same). ``request()`` replaces any
waiting job and bumps a generation counter; a job whose generation is no
longer the newest is abandoned between its stages (model, plate, map) and at
the relevancy call's progress update (``Cancelled``), and a stale result is
never emitted. The panel debounces keystrokes before it calls ``request``.

The model and the plate are the graph's own: the ``LL_LoadCLIP`` spec and
device, the ``LL_LoadImage`` path/colour space/layer (``ui.graph.MatteSpec``),
through the same engine loaders the nodes use; both are cached.
"""
from __future__ import annotations

import atexit
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QObject, Signal

from ..engine.errors import Cancelled
from ..engine.progress import Progress
from .graph import MatteSpec, PlateSpec, resolve_input_path


@dataclass(frozen=True)
class MatteJob:
    spec: MatteSpec
    text: str
    frame: int | None
    search_dirs: tuple[str, ...] = ()


def load_plate_frame(plate: PlateSpec, frame: int | None, search_dirs=()) -> tuple[np.ndarray, str]:
    """One frame of the graph's plate: ((H, W, 3) network-space float32, its file's colour space)."""
    from ..engine.io import load_image
    path = resolve_input_path(plate.path, list(search_dirs))
    frames = [frame] if frame is not None else None
    loaded = load_image(path, frames=frames, colourspace=plate.colourspace or "auto",
                        layer=plate.layer.strip() or None)
    return loaded.rgb[0].permute(1, 2, 0).numpy().copy(), loaded.info.colourspace


class _Cache(OrderedDict):
    """A tiny thread-safe LRU cache (shared by every panel of the process)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size
        self.lock = threading.Lock()

    def get_or(self, key, make):
        with self.lock:
            if key in self:
                self.move_to_end(key)
                return self[key]
        value = make()  # outside the lock: loading a model takes seconds
        with self.lock:
            self[key] = value
            while len(self) > self.size:
                self.popitem(last=False)
        return value


def _join_all(timeout_s: float = 60.0) -> None:
    """At exit, let running mattes finish their stage: a thread killed inside
    torch at interpreter shutdown can abort the process."""
    for worker in list(_LIVE):
        worker.shutdown(int(timeout_s * 1000))


_LIVE: weakref.WeakSet = weakref.WeakSet()
atexit.register(_join_all)
_CLIPS = _Cache(2)  # (model spec, device) -> CLIPHandle
_PLATES = _Cache(8)  # (plate spec, frame, search dirs) -> (frame, colour space)


class MatteWorker(QObject):
    """Signals: ``ready(generation, matte (H, W) float32, plate (H, W, 3) float32)``,
    ``failed(generation, message)``."""

    ready = Signal(int, object, object)
    failed = Signal(int, str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._cond = threading.Condition()
        self._job: MatteJob | None = None
        self._generation = 0
        self._quit = False
        self._clips, self._plates = _CLIPS, _PLATES
        self._thread: threading.Thread | None = None
        self.computed = 0  # finished maps (tests, bench)

    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def generation(self) -> int:
        return self._generation

    def request(self, job: MatteJob) -> int:
        """Compute ``job`` (replacing a waiting one); returns its generation."""
        with self._cond:
            self._generation += 1
            self._job = job
            self._cond.notify()
            gen = self._generation
        if not self.is_running():
            self._thread = threading.Thread(target=self.run, name="livelayers-matte", daemon=True)
            self._thread.start()
            _LIVE.add(self)
        return gen

    def cancel(self) -> None:
        """Forget the waiting job and abandon the running one."""
        with self._cond:
            self._generation += 1
            self._job = None

    def shutdown(self, timeout_ms: int = 0) -> None:
        """End the thread: it finishes the stage it is in (a model load can take
        seconds), drops the job and exits; waits up to ``timeout_ms`` for that."""
        with self._cond:
            self._quit = True
            self._generation += 1
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout_ms / 1000)

    def _stale(self, gen: int) -> bool:
        return self._quit or gen != self._generation

    def _check(self, gen: int) -> None:
        if self._stale(gen):
            raise Cancelled("live matte superseded")

    def run(self) -> None:  # the worker thread
        while True:
            with self._cond:
                while self._job is None and not self._quit:
                    self._cond.wait()
                if self._quit:
                    return
                job, gen = self._job, self._generation
                self._job = None
            try:
                self._one(job, gen)
            except RuntimeError:  # the panel (our Qt parent) was deleted: nobody listens
                return

    def _one(self, job: MatteJob, gen: int) -> None:
        try:
            matte, plate = self._compute(job, gen)
        except Cancelled:
            return
        except Exception as e:  # shown under the viewer, never a crash
            if not self._stale(gen):
                self.failed.emit(gen, f"{type(e).__name__}: {e}")
            return
        if not self._stale(gen):
            self.computed += 1
            self.ready.emit(gen, matte, plate)

    def _compute(self, job: MatteJob, gen: int) -> tuple[np.ndarray, np.ndarray]:
        import torch

        from ..engine.models.clip import load_clip
        from ..engine.relevancy import relevancy_map
        spec = job.spec
        clip = self._clips.get_or((spec.model, spec.device),
                                  lambda: load_clip(spec.model, device=spec.device))
        self._check(gen)
        key = (spec.plate, job.frame, job.search_dirs)
        plate, _space = self._plates.get_or(key, lambda: load_plate_frame(spec.plate, job.frame,
                                                                          job.search_dirs))
        self._check(gen)
        image = torch.from_numpy(plate).permute(2, 0, 1)[None]
        with torch.no_grad():  # relevancy turns autograd back on for itself
            m = relevancy_map(clip, image, job.text, blocks=spec.blocks,
                              progress=Progress(should_stop=lambda: self._stale(gen),
                                                label="live matte"),
                              node="live matte")
        return m[0, 0].cpu().numpy().astype(np.float32), plate
