"""What a node needs from whichever front end is running it.

Inside ComfyUI, long work reports to ``comfy.utils.ProgressBar`` (with a
preview image) and stops on ComfyUI's interrupt; headless or in the panel it
uses the reporter the front end installed (``engine.progress.use``). ComfyUI
modules are imported lazily: the pack must work without them.

Interrupt path inside ComfyUI: Cancel (``POST /interrupt``) sets ComfyUI's
flag; the next ``ProgressBar.update_absolute`` raises its
``InterruptProcessingException``. Our callback turns it into the engine's
``Cancelled`` (so trainers write their checkpoint), and the node method's
decorator (``@node_function``) turns ``Cancelled`` back into ComfyUI's exception, which
ComfyUI records as ``execution_interrupted`` rather than a node error.
"""
from __future__ import annotations

import os
import re
import time

from ..engine import progress as engine_progress
from ..engine.paths import headless_root
from ..engine.errors import Cancelled

PREVIEW_SECONDS = 1.0  # at most one preview image per second: rendering one costs a forward pass
PREVIEW_SIZE = 512     # ComfyUI's default --preview-size


class _ComfyProgress(engine_progress.Progress):
    """Asks for a preview at most every ``PREVIEW_SECONDS``, whatever the step
    rate (a GPU atlas step takes milliseconds, a CPU Text2LIVE step seconds)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._last_preview = float("-inf")

    def wants_preview(self, step: int) -> bool:
        now = time.monotonic()
        if now - self._last_preview >= PREVIEW_SECONDS:
            self._last_preview = now
            return True
        return False


def preview_image(preview):
    """ComfyUI's preview tuple ("JPEG", PIL image, max size) from an (N,C,H,W)
    float tensor in [0,1] (the first image, first three channels); None if unusable."""
    try:
        from PIL import Image
        arr = preview[0, :3].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255
        return ("JPEG", Image.fromarray(arr.round().astype("uint8")), PREVIEW_SIZE)
    except Exception:  # a preview must never break the run
        return None


def _comfy_progress(label: str) -> engine_progress.Progress | None:
    try:
        import comfy.model_management as mm
        import comfy.utils
    except ImportError:
        return None
    bars: dict[int, object] = {}

    def callback(step: int, total: int, info: dict) -> None:
        bar = bars.get(total)
        if bar is None:
            bar = bars[total] = comfy.utils.ProgressBar(total)
        preview = info.get("preview")
        try:
            bar.update_absolute(step, total, preview_image(preview) if preview is not None else None)
        except mm.InterruptProcessingException as e:
            raise Cancelled(f"{label} was interrupted") from e

    return _ComfyProgress(callback=callback, should_stop=mm.processing_interrupted, label=label)


def progress_for(node: str) -> engine_progress.Progress:
    """The progress/cancel reporter for a node's long engine call."""
    comfy = _comfy_progress(node)
    return comfy if comfy is not None else engine_progress.current(node)


def _folder_paths():
    """ComfyUI's ``folder_paths`` module when running inside ComfyUI, else None
    (the one place a node asks ComfyUI where its folders are)."""
    try:
        import folder_paths
    except ImportError:
        return None
    return folder_paths


def comfy_models_dir(kind: str) -> list[str]:
    """ComfyUI's model folders of ``kind`` (e.g. "clip", "diffusers"), if inside ComfyUI."""
    folders = _folder_paths()
    if folders is None:
        return []
    try:
        return list(folders.get_folder_paths(kind))
    except Exception:  # a kind ComfyUI does not know: no folders
        return []


def comfy_dir(kind: str) -> str | None:
    """ComfyUI's "input", "output" or "temp" folder when running inside ComfyUI, else None."""
    folders = _folder_paths()
    if folders is None:
        return None
    return {"input": folders.get_input_directory,
            "output": folders.get_output_directory,
            "temp": folders.get_temp_directory}[kind]()


# ComfyUI's folder annotation after a file name: "run/edit.png [output]".
_FOLDER_NOTE = re.compile(r"^(.*\S)\s+\[(input|output|temp)\]$")


def resolve_path(path: str, kind: str) -> str:
    """A node's file path: relative paths are relative to ComfyUI's ``kind``
    ("input"/"output") folder inside ComfyUI, to the project root headless
    (``run --root``, else the working directory: ``engine.paths``).

    A trailing ComfyUI folder annotation (" [output]", " [input]", " [temp]",
    as ComfyUI writes picked or uploaded names) picks that folder instead of
    ``kind`` and is removed; headless every folder is the project root, so
    the same graph reads the same file both ways.
    """
    path = os.path.expanduser(path.strip())
    note = _FOLDER_NOTE.match(path)
    if note:
        path, kind = note.group(1), note.group(2)
    base = comfy_dir(kind) or headless_root()
    if base and path and not os.path.isabs(path):
        return os.path.join(base, path)
    return path


def _comfy_interrupt():
    try:
        import comfy.model_management as mm
    except ImportError:
        return None
    return mm.InterruptProcessingException


def animated_preview(frames, fps: float = 12.0, limit: int = 240) -> dict:
    """ComfyUI ``ui`` entries showing ``frames`` (N,3,H,W) [0,1] as one animated
    WEBP in ComfyUI's temp folder (as core SaveAnimatedWEBP does); {} headless
    or for a single frame (a still preview does)."""
    temp = comfy_dir("temp")
    if temp is None or frames.shape[0] < 2:
        return {}
    from ..engine.io.preview import write_webp
    name = f"livelayers_{os.urandom(5).hex()}.webp"
    write_webp(os.path.join(temp, name), frames, fps=fps, limit=limit)
    return {"images": [{"filename": name, "subfolder": "", "type": "temp"}], "animated": (True,)}


def node_function(function):
    """Decorator for the method a node's ``FUNCTION`` names: every LiveLayers
    node applies it (``@node_function`` right above ``def run(self, ...)``).

    It does two things, and nothing else (no argument or result conversion:
    the node converts tensors itself with ``nodes/_convert.py``):

    1. Autograd on. ComfyUI executes every node under
       ``torch.inference_mode()``; our nodes train generators, atlases and
       region networks and back-propagate through CLIP, so the call leaves
       inference mode with gradients enabled, and tensor arguments created
       inside it (inputs from other nodes, weights of a loader node) are
       cloned into normal tensors, which autograd can save.
    2. Cancel as ComfyUI's interrupt. A ``Cancelled`` raised inside ComfyUI
       leaves as ComfyUI's ``InterruptProcessingException``, so the prompt is
       recorded as interrupted, not as failed (headless it stays
       ``Cancelled``: the runner exits with its own status).

    ``tests/test_comfyui_runtime.py`` checks that every registered node has it.
    """
    import functools

    import torch

    def normal(value):
        if isinstance(value, torch.Tensor) and value.is_inference():
            return value.clone()
        return value

    @functools.wraps(function)
    def wrapper(self, *args, **kwargs):
        try:
            with torch.inference_mode(False), torch.enable_grad():
                args = tuple(normal(a) for a in args)
                kwargs = {k: normal(v) for k, v in kwargs.items()}
                return function(self, *args, **kwargs)
        except Cancelled as e:
            interrupt = _comfy_interrupt()
            if interrupt is None:
                raise
            raise interrupt() from e

    wrapper.__ll_node_function__ = True
    return wrapper
