"""Errors the engine raises. Every message says what was wrong, where, and
what is allowed, so an artist or a farm log can act on it without a traceback."""
from __future__ import annotations


class LiveLayersError(Exception):
    """Base class of every error LiveLayers raises on purpose."""


class InputError(LiveLayersError, ValueError):
    """A node input the method cannot take.

    ``InputError("LL_Text2LIVE", "image", "is 3000x40 pixels", "both sides >= 64")``
    reads: ``LL_Text2LIVE: input 'image' is 3000x40 pixels; allowed: both sides >= 64``.
    """

    def __init__(self, node: str, input_name: str, problem: str, allowed: str | None = None):
        self.node, self.input_name, self.problem, self.allowed = node, input_name, problem, allowed
        msg = f"{node}: input '{input_name}' {problem}"
        if allowed:
            msg += f"; allowed: {allowed}"
        super().__init__(msg)


class ModelNotFoundError(LiveLayersError, FileNotFoundError):
    """A model's weights are not on this machine (and downloading is not allowed)."""


class CorruptFileError(LiveLayersError, ValueError):
    """A file exists but is not what it claims to be (truncated, wrong kind, mismatched)."""


class Cancelled(LiveLayersError):
    """The user, ComfyUI or a farm signal asked the running work to stop."""
