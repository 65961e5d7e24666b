"""Quick-look pictures: 8-bit, display only, never a deliverable.

A PNG of one image, an animated WEBP of a sequence, and which frames a set
of saved layers is best shown by. The nodes' ComfyUI previews and the
wedge's contact-sheet PNG use them; the EXR is the real output. Frames are
network space (sRGB-encoded, [0, 1]), tensors ``(N, 3, H, W)``. Writes are
atomic (``engine/atomic.py``).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_path
from .layer import over

#: Image layers a preview falls back to, in this order, when there is no
#: composite and no edit (``preview_frames``).
PREVIEW_LAYERS = ("source", "composite", "greenscreen", "uv_fg", "uv_bg", "atlas")


def write_png8(path: str | os.PathLike, rgb: np.ndarray | torch.Tensor) -> Path:
    """An 8-bit PNG of ``rgb``: an array ``(H, W, 3)`` or a tensor ``(3, H, W)``
    in [0, 1] (values outside are clipped); atomically. Returns the path."""
    import OpenImageIO as oiio
    if isinstance(rgb, torch.Tensor):
        rgb = rgb.detach().float().cpu().permute(1, 2, 0).numpy()
    pixels = np.ascontiguousarray(np.clip(rgb, 0.0, 1.0), np.float32)
    buf = oiio.ImageBuf(pixels)
    path = Path(path)
    with atomic_path(path) as tmp:
        if not buf.write(str(tmp), "uint8"):
            raise OSError(f"cannot write {path}: {buf.geterror()}")
    return path


def write_webp(path: str | os.PathLike, frames: torch.Tensor, fps: float = 12.0,
               limit: int = 240) -> Path:
    """An animated, looping WEBP of ``frames`` ``(N, C, H, W)`` in [0, 1] (the
    first three channels, at most ``limit`` frames, lossy quality 85, as
    ComfyUI's SaveAnimatedWEBP makes them); atomically. Returns the path."""
    from PIL import Image
    arr = frames[:limit, :3].detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255
    images = [Image.fromarray(a.round().astype("uint8")) for a in arr]
    path = Path(path)
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="WEBP", save_all=True, append_images=images[1:],
                       duration=round(1000 / fps), loop=0, lossless=False, quality=85)
    return path


def preview_frames(layers: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """The frames ``(N, 3, H, W)`` that show a set of saved layers (keyed as
    ``LL_SaveEXR``'s inputs): the composite, else the edit (``edit_image`` +
    ``edit_alpha``) over its source (or mid grey), else the first of
    :data:`PREVIEW_LAYERS` present; None when there is no image layer."""
    if "composite" in layers:
        return layers["composite"]
    if "edit_image" in layers:
        bg = layers.get("source", torch.full_like(layers["edit_image"], 0.5))
        return over(layers["edit_image"], layers["edit_alpha"], bg)
    return next((layers[k] for k in PREVIEW_LAYERS if k in layers), None)
