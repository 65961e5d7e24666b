"""Render atlas-space edits to frames: bilinear grid-sampling of the edit
images at every pixel's UV, then the two layers are combined with the
decomposition's opacity.

With edit colours E_f, E_b and alphas a_f, a_b (sampled at each pixel's fg /
bg UV) and the opacity α:

    layer alpha      A = α·a_f + (1 − α)·a_b
    premultiplied    P = α·a_f·E_f + (1 − α)·a_b·E_b
    composite        O = P + (1 − A)·plate

so the edit layer (straight colour P/A, alpha A) over the plate gives exactly
the composite (premultiplied Over). The plate is the original frames when given,
else the decomposition's reconstruction.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import progress as progress_mod
from ..errors import InputError
from .products import edit_box, uv_to_grid
from .store import Atlas


@dataclass
class Edit:
    """An atlas-space RGBA edit: colour ``(1, 3, Ha, Wa)`` (straight), alpha ``(1, 1, Ha, Wa)``."""
    rgb: torch.Tensor
    alpha: torch.Tensor


def sample_edit(edit: Edit, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Premultiplied colour ``(K,3,H,W)`` and alpha ``(K,1,H,W)`` of ``edit`` at
    ``grid (K, H, W, 2)``. Premultiplied before sampling so that colour does
    not bleed from transparent atlas pixels."""
    rgba = torch.cat([edit.rgb * edit.alpha, edit.alpha], 1).expand(grid.shape[0], -1, -1, -1)
    out = F.grid_sample(rgba, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[:, :3], out[:, 3:]


def composite_layers(alpha: torch.Tensor, fg: tuple | None, bg: tuple | None,
                     plate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(straight colour, alpha, composite) from the sampled premultiplied edits."""
    zero = torch.zeros_like(alpha)
    prem = torch.zeros_like(plate)
    a_layer = zero
    if fg is not None:
        prem = prem + alpha * fg[0]
        a_layer = a_layer + alpha * fg[1]
    if bg is not None:
        prem = prem + (1 - alpha) * bg[0]
        a_layer = a_layer + (1 - alpha) * bg[1]
    straight = torch.where(a_layer > 1e-6, prem / a_layer.clamp_min(1e-6), torch.zeros_like(prem))
    return straight, a_layer, prem + (1 - a_layer) * plate


def render_maps(uv_fg: torch.Tensor, uv_bg: torch.Tensor, alpha: torch.Tensor, plate: torch.Tensor,
                fg: Edit | None, bg: Edit | None, fg_box, bg_box):
    """The fast part: per-frame maps ``(K,2,H,W)``, ``(K,1,H,W)`` + edits →
    (layer colour ``(K,3,H,W)``, layer alpha ``(K,1,H,W)``, composite ``(K,3,H,W)``)."""
    s_fg = sample_edit(fg, uv_to_grid(uv_fg, fg_box)) if fg is not None else None
    s_bg = sample_edit(bg, uv_to_grid(uv_bg, bg_box)) if bg is not None else None
    return composite_layers(alpha, s_fg, s_bg, plate)


def _check_edit(atlas: Atlas, layer: str, edit: Edit | None, node: str):
    if edit is None:
        return None
    name = f"{layer}_edit"
    if edit.rgb.ndim != 4 or edit.rgb.shape[:2] != (1, 3):
        raise InputError(node, name, f"has shape {tuple(edit.rgb.shape)}", "one RGB atlas image")
    if tuple(edit.alpha.shape) != (1, 1) + tuple(edit.rgb.shape[-2:]):
        raise InputError(node, f"{name}_alpha", f"has shape {tuple(edit.alpha.shape)}",
                         f"one mask the size of {name}, {edit.rgb.shape[-1]}x{edit.rgb.shape[-2]}")
    return edit_box(atlas, layer, edit.rgb, node, name)


@torch.no_grad()
def render_edit(atlas: Atlas, indices: list[int], fg: Edit | None = None, bg: Edit | None = None,
                plate: torch.Tensor | None = None, batch: int = 8, node: str = "LL_AtlasRender",
                progress: progress_mod.Progress | None = None):
    """Render edits to the frames ``indices`` (any subset, any order).

    Returns layer colour ``(K,3,H,W)``, layer alpha ``(K,1,H,W)`` and the
    composite ``(K,3,H,W)`` over ``plate`` (``(K,3,H,W)``; default: the
    decomposition's reconstruction). ``progress`` gets an update per batch of
    ``batch`` frames (the Cancel point of a long render).
    """
    progress = progress_mod.ensure(progress, node)
    if fg is None and bg is None:
        raise InputError(node, "fg_edit", "and 'bg_edit' are both missing", "at least one atlas edit")
    fg_box = _check_edit(atlas, "fg", fg, node)
    bg_box = _check_edit(atlas, "bg", bg, node)
    if plate is not None:
        atlas.check_plate(plate, len(indices), node, "plate")
    outs = []
    for s in range(0, len(indices), batch):
        chunk = indices[s:s + batch]
        uv_f, uv_b, a = atlas.frame_maps(chunk)
        p = plate[s:s + batch].float() if plate is not None else atlas.reconstruct(chunk)
        outs.append(render_maps(uv_f, uv_b, a, p, fg, bg, fg_box, bg_box))
        info = {"preview": outs[-1][2][:1]} if progress.wants_preview(s) else {}
        progress.update(min(s + batch, len(indices)), len(indices), **info)
    return tuple(torch.cat(parts) for parts in zip(*outs))
