"""Tensor layout at the node boundary.

ComfyUI: IMAGE = float32 [B,H,W,C] in [0,1] (C=3, or 4 for RGBA), MASK =
float32 [B,H,W]. Engine: float32 NCHW in [0,1] (sRGB network space), masks
N1HW. LL nodes emit MASK = alpha of the edit (1 = edit present).
"""
from __future__ import annotations

import torch

from ..engine.errors import InputError


def image_to_nchw(image: torch.Tensor, node: str, input_name: str = "image") -> torch.Tensor:
    """IMAGE [B,H,W,C] → engine [B,3,H,W] (alpha channel, if any, dropped)."""
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[-1] not in (1, 3, 4):
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise InputError(node, input_name, f"has shape {shape}",
                         "an IMAGE tensor [batch, height, width, 3 or 4]")
    x = image[..., :3] if image.shape[-1] >= 3 else image.expand(*image.shape[:3], 3)
    return x.permute(0, 3, 1, 2).contiguous().float()


def nchw_to_image(x: torch.Tensor) -> torch.Tensor:
    """engine [B,C,H,W] → IMAGE [B,H,W,C] on the CPU, float32."""
    return x.detach().permute(0, 2, 3, 1).contiguous().float().cpu()


def mask_to_n1hw(mask: torch.Tensor, node: str, input_name: str = "mask",
                 size: tuple[int, int] | None = None) -> torch.Tensor:
    """MASK [B,H,W] (or [H,W]) → engine [B,1,H,W]; ``size`` (H,W) must match if given."""
    if not isinstance(mask, torch.Tensor) or mask.ndim not in (2, 3):
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise InputError(node, input_name, f"has shape {shape}", "a MASK tensor [batch, height, width]")
    m = mask if mask.ndim == 3 else mask[None]
    if size is not None and tuple(m.shape[-2:]) != tuple(size):
        raise InputError(node, input_name, f"is {m.shape[-1]}x{m.shape[-2]} pixels",
                         f"the image's size, {size[1]}x{size[0]} (nothing is resized silently)")
    return m[:, None].contiguous().float()


def n1hw_to_mask(m: torch.Tensor) -> torch.Tensor:
    """engine [B,1,H,W] → MASK [B,H,W] on the CPU."""
    return m.detach()[:, 0].contiguous().float().cpu()
