"""Render a stylised atlas to frames: the stylised object as an RGBA layer
and its composite over the plate.

Per pixel, with the decomposition's opacity α and the stylised foreground
colour c' = rgb_fg'(uv_fg):

    layer alpha   A = α where α ≥ cut-off, else exactly 0
    layer colour  c' where A > 0, else 0 (straight)
    composite     A·c' + (1 − A)·plate, and exactly the plate where A = 0

The opacity field is a clamped sigmoid (never below 1e-4) and a fitted
decomposition leaves faint opacity in the background, so without a cut-off
every background pixel would change by a hair. Below the cut-off (default
0.02: the opacity's noise floor on our toy clips, see docs/stylise.md) the
layer is empty and those pixels are bit for bit the plate.
"""
from __future__ import annotations

import torch

from ..atlas.store import Atlas
from .. import progress


def layer_alpha(alpha: torch.Tensor, cutoff: float) -> torch.Tensor:
    """The layer's alpha: ``alpha`` (any shape) with values below ``cutoff`` set to exactly 0."""
    return torch.where(alpha >= cutoff, alpha, torch.zeros_like(alpha))


def composite_layer(colour: torch.Tensor, alpha: torch.Tensor, plate: torch.Tensor):
    """(straight layer colour, composite) from colour ``(K, 3, H, W)``, the
    layer alpha ``(K, 1, H, W)`` and the plate ``(K, 3, H, W)``; where the
    alpha is 0 the colour is 0 and the composite is the plate itself."""
    present = alpha > 0
    straight = torch.where(present, colour, torch.zeros_like(colour))
    comp = torch.where(present, alpha * colour + (1 - alpha) * plate, plate)
    return straight, comp


def is_stylised(atlas: Atlas) -> bool:
    return isinstance(atlas.info.get("stylised"), dict)


def atlas_cutoff(atlas: Atlas, override: float | None = None) -> float:
    """The cut-off to render with: ``override`` when given (≥ 0), else the
    one the atlas was stylised with, else the default."""
    if override is not None and override >= 0:
        return float(override)
    from .settings import StyliseSettings
    info = atlas.info.get("stylised") or {}
    return float(info.get("alpha_cutoff", StyliseSettings().alpha_cutoff))


@torch.no_grad()
def frame_colour(atlas: Atlas, uv: torch.Tensor, layer: str = "fg", chunk: int = 1 << 16) -> torch.Tensor:
    """An atlas colour field at per-frame UVs: ``(K, 2, H, W)`` -> ``(K, 3, H, W)``."""
    k, _, h, w = uv.shape
    pts = uv.permute(0, 2, 3, 1).reshape(-1, 2)
    field = atlas.fields.rgb_fg if layer == "fg" else atlas.fields.rgb_bg
    dev = next(atlas.fields.parameters()).device
    rgb = torch.cat([field(pts[i:i + chunk].to(dev)).cpu() for i in range(0, pts.shape[0], chunk)])
    return rgb.reshape(k, h, w, 3).permute(0, 3, 1, 2)


@torch.no_grad()
def render_stylised(atlas: Atlas, indices: list[int], plate: torch.Tensor | None = None,
                    cutoff: float | None = None, batch: int = 8, node: str = "LL_StyliseRender"):
    """The stylised object of frames ``indices`` (any subset, any order).

    Returns layer colour ``(K, 3, H, W)`` (straight), layer alpha
    ``(K, 1, H, W)`` and the composite ``(K, 3, H, W)`` over ``plate``
    (``(K, 3, H, W)``; default: the background atlas rendered at every
    pixel, the decomposition's clean plate — the stylised atlas no longer
    holds the original object, so it cannot reconstruct the source).
    """
    if plate is not None:
        atlas.check_plate(plate, len(indices), node, "plate")
    cut = atlas_cutoff(atlas, cutoff)
    outs = []
    for s in range(0, len(indices), batch):
        progress.check(node)
        chunk = indices[s:s + batch]
        uv_f, uv_b, a = atlas.frame_maps(chunk)
        p = plate[s:s + batch].float() if plate is not None else frame_colour(atlas, uv_b, "bg")
        alpha = layer_alpha(a, cut)
        straight, comp = composite_layer(frame_colour(atlas, uv_f), alpha, p)
        outs.append((straight, alpha, comp))
    return tuple(torch.cat(parts) for parts in zip(*outs))
