"""Progress and cancellation for long engine calls.

Every long engine function takes ``progress: Progress | None``. It calls
``progress.update(step, total, **info)`` as it goes; ``info`` may carry numbers
(``loss=…``, ``psnr=…``) and a ``preview`` (a float tensor N3HW or NCHW in
[0,1]). Each update is also the interruption point: it raises ``Cancelled``
when a stop was requested (Ctrl-C, SIGTERM, ComfyUI's interrupt, the panel's
Stop button). Code that owns state (a trainer) catches ``Cancelled``, writes
its checkpoint, and re-raises.

The front ends subclass nothing: they pass callbacks. ComfyUI's adapter lives
in nodes/, the terminal one (tqdm or ``openjd_progress:`` lines) in the CLI,
the Qt one in ui/.
"""
from __future__ import annotations

import contextvars
import threading
from typing import Any, Callable

from .errors import Cancelled

# Set by signal handlers or a UI thread; checked at every update.
_stop_requested = threading.Event()


def request_stop() -> None:
    """Ask all running work to stop at its next progress update."""
    _stop_requested.set()


def clear_stop() -> None:
    _stop_requested.clear()


def stop_requested() -> bool:
    return _stop_requested.is_set()


class Progress:
    """A progress/cancel reporter.

    ``callback(step, total, info)`` receives every update; ``should_stop()``
    is asked at every update (besides the global stop flag) and a True answer
    raises ``Cancelled``. ``preview_every`` tells producers of previews how
    often to bother rendering one (0 = never).
    """

    def __init__(self, callback: Callable[[int, int, dict], Any] | None = None,
                 should_stop: Callable[[], bool] | None = None, preview_every: int = 0,
                 label: str = ""):
        self.callback = callback
        self.should_stop = should_stop
        self.preview_every = preview_every
        self.label = label

    def check(self) -> None:
        """Raise ``Cancelled`` if a stop was requested."""
        if _stop_requested.is_set() or (self.should_stop is not None and self.should_stop()):
            raise Cancelled(f"{self.label or 'work'} was stopped")

    def update(self, step: int, total: int, **info: Any) -> None:
        if self.callback is not None:
            self.callback(step, total, info)
        self.check()

    def wants_preview(self, step: int) -> bool:
        return self.preview_every > 0 and (step % self.preview_every == 0)


class _Silent(Progress):
    pass


_current: contextvars.ContextVar[Progress | None] = contextvars.ContextVar("ll_progress", default=None)


def current(label: str = "") -> Progress:
    """The reporter the running front end installed (silent if none).

    Nodes call this: the headless runner and the panel install one with
    ``use(...)``; ComfyUI's adapter is chosen in nodes/ instead.
    """
    p = _current.get()
    if p is None:
        return _Silent(label=label)
    return p


class use:
    """Context manager: make ``progress`` the current reporter."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self._token = None

    def __enter__(self) -> Progress:
        self._token = _current.set(self.progress)
        return self.progress

    def __exit__(self, *exc) -> None:
        _current.reset(self._token)


def check(label: str = "") -> None:
    """The interruption point of a loop that reports no progress of its own
    (per frame, tile or chunk of points): raise ``Cancelled`` if a stop was
    requested globally or by the current front end. A farm's SIGTERM thus
    ends a render, an extract or a sequence write within one frame."""
    current(label).check()


def ensure(progress: Progress | None, label: str = "") -> Progress:
    """``progress`` or the current reporter: engine functions start with this."""
    return progress if progress is not None else current(label)
