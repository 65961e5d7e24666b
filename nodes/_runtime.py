"""What a node needs from whichever front end is running it.

Inside ComfyUI, long work reports to ``comfy.utils.ProgressBar`` (with a
preview image) and stops on ComfyUI's interrupt; headless or in the panel it
uses the reporter the front end installed (``engine.progress.use``). ComfyUI
modules are imported lazily: the pack must work without them.
"""
from __future__ import annotations

from ..engine import progress as engine_progress


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
        if preview is not None:
            try:
                from PIL import Image
                arr = (preview[0, :3].detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255)
                bar.update_absolute(step, total, ("JPEG", Image.fromarray(arr.astype("uint8")), 512))
                return
            except Exception:  # a preview must never break the run
                pass
        bar.update_absolute(step, total)

    return engine_progress.Progress(callback=callback,
                                    should_stop=lambda: mm.processing_interrupted(),
                                    preview_every=25, label=label)


def progress_for(node: str) -> engine_progress.Progress:
    """The progress/cancel reporter for a node's long engine call."""
    comfy = _comfy_progress(node)
    return comfy if comfy is not None else engine_progress.current(node)


def comfy_models_dir(kind: str) -> list[str]:
    """ComfyUI's model folders of ``kind`` (e.g. "clip", "diffusers"), if inside ComfyUI."""
    try:
        import folder_paths
    except ImportError:
        return []
    try:
        return list(folder_paths.get_folder_paths(kind))
    except Exception:
        return []


def with_autograd(function):
    """Run a node function with autograd available.

    ComfyUI executes every node under ``torch.inference_mode()``; our nodes
    train generators, atlases and region networks and back-propagate through
    CLIP, so they leave inference mode, and tensors that were created inside
    it (inputs from other nodes, weights loaded by a loader node) are cloned
    into normal tensors, which autograd can save.
    """
    import functools

    import torch

    def normal(value):
        if isinstance(value, torch.Tensor) and value.is_inference():
            return value.clone()
        return value

    @functools.wraps(function)
    def wrapper(self, *args, **kwargs):
        with torch.inference_mode(False), torch.enable_grad():
            args = tuple(normal(a) for a in args)
            kwargs = {k: normal(v) for k, v in kwargs.items()}
            return function(self, *args, **kwargs)

    wrapper.__ll_autograd__ = True
    return wrapper
