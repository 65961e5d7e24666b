"""Atlas products: atlas images, per-frame UV maps / STMaps, opacity.

Atlas image grid: an atlas image of ``(Ha, Wa)`` square pixels covers the
layer's UV box, enlarged about its centre so that it is exactly
``Wa·p × Ha·p`` (``p`` = UV size of one atlas pixel). Pixel (row, col) has its
centre at ``u = u0 + (col + 0.5)·p``, ``v = v0 + (row + 0.5)·p``; rows go down
like frame rows (v grows with the frame's y), so the atlas looks upright.

STMap (docs/exr.md): ``s = (col + 0.5)/Wa``, ``t = 1 − (row + 0.5)/Ha`` in that
grid, continuous; a compositor's STMap node reading the atlas image at
``(s·Wa, t·Ha)`` (y up) gives our bilinear render.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import InputError
from .. import progress
from .store import LAYERS, Atlas


def box_for_size(atlas: Atlas, layer: str, ha: int, wa: int) -> tuple[float, float, float, float]:
    """The UV box that an ``(ha, wa)`` atlas image with square pixels covers:
    the layer's UV box, enlarged about its centre to ``wa·p × ha·p`` with
    ``p = max(du/wa, dv/ha)``."""
    u0, v0, u1, v1 = atlas.boxes[layer]
    p = max((u1 - u0) / wa, (v1 - v0) / ha)
    cu, cv = (u0 + u1) / 2, (v0 + v1) / 2
    return (cu - wa * p / 2, cv - ha * p / 2, cu + wa * p / 2, cv + ha * p / 2)


def atlas_grid(atlas: Atlas, layer: str, resolution: int) -> tuple[int, int, tuple[float, float, float, float]]:
    """Size ``(Ha, Wa)`` of the atlas image whose longer side is ``resolution``,
    and the exact UV box ``(u0, v0, u1, v1)`` its pixels cover."""
    u0, v0, u1, v1 = atlas.boxes[layer]
    du, dv = u1 - u0, v1 - v0
    p = max(du, dv) / resolution
    wa, ha = max(1, math.ceil(du / p - 1e-6)), max(1, math.ceil(dv / p - 1e-6))
    return ha, wa, box_for_size(atlas, layer, ha, wa)


def check_resolution(resolution: int, node: str, input_name: str = "resolution") -> None:
    if not isinstance(resolution, int) or not 16 <= resolution <= 8192:
        raise InputError(node, input_name, f"is {resolution!r}", "an integer from 16 to 8192")


# How far an edit's aspect may be from the atlas image's. The layer's UV box is
# measured from the trained mapping, so the same graph gives a slightly different
# box on another CPU or thread count (the example atlas's fg image: 256x200 on the
# machine its paint was made on, 256x206 and 256x209 on another); a paint made on
# one extraction must still load on the others. The edit keeps square pixels
# about the box centre (box_for_size), so 5 % shifts its border by at most 2.5 %.
ASPECT_TOLERANCE = 0.05


def edit_box(atlas: Atlas, layer: str, edit: torch.Tensor, node: str, input_name: str):
    """The UV box an atlas-space edit ``(1, C, Ha, Wa)`` covers. Any resolution
    is fine (the edit is sampled in UV space, not resized), but its aspect must
    be the atlas's (within one pixel or ``ASPECT_TOLERANCE``): another aspect
    means a paint made on another canvas."""
    ha, wa = edit.shape[-2:]
    want_h, want_w, _ = atlas_grid(atlas, layer, max(ha, wa))
    tol = ASPECT_TOLERANCE
    if abs(ha - want_h) > 1 + tol * ha or abs(wa - want_w) > 1 + tol * wa:
        raise InputError(node, input_name, f"is {wa}x{ha} pixels, not the {layer} atlas's aspect",
                         f"{want_w}x{want_h} at that resolution (use LL_AtlasExtract's {layer} "
                         "atlas as the canvas; nothing is resized)")
    return box_for_size(atlas, layer, ha, wa)


def uv_to_grid(uv: torch.Tensor, box: tuple[float, float, float, float]) -> torch.Tensor:
    """UV ``(K, 2, H, W)`` → grid_sample coordinates ``(K, H, W, 2)`` in the
    atlas image (align_corners=False convention: −1/1 = outer pixel edges)."""
    u0, v0, u1, v1 = box
    gx = (uv[:, 0] - u0) / (u1 - u0) * 2 - 1
    gy = (uv[:, 1] - v0) / (v1 - v0) * 2 - 1
    return torch.stack([gx, gy], -1)


def stmap(uv: torch.Tensor, box: tuple[float, float, float, float]) -> torch.Tensor:
    """UV ``(K, 2, H, W)`` → STMap ``(K, 3, H, W)``: R = s, G = t, B = 0 (float32)."""
    g = uv_to_grid(uv, box)
    s = (g[..., 0] + 1) / 2
    t = 1 - (g[..., 1] + 1) / 2
    return torch.stack([s, t, torch.zeros_like(s)], 1).float()


@torch.no_grad()
def atlas_image(atlas: Atlas, layer: str, resolution: int, chunk: int = 1 << 16) -> torch.Tensor:
    """The ``layer`` atlas colour field sampled at the pixel centres of its
    atlas image: ``(1, 3, Ha, Wa)``."""
    ha, wa, (u0, v0, u1, v1) = atlas_grid(atlas, layer, resolution)
    p = (u1 - u0) / wa
    vs, us = torch.meshgrid(v0 + (torch.arange(ha) + 0.5) * p, u0 + (torch.arange(wa) + 0.5) * p,
                            indexing="ij")
    uv = torch.stack([us.reshape(-1), vs.reshape(-1)], 1).float()
    field = atlas.fields.rgb_fg if layer == "fg" else atlas.fields.rgb_bg
    dev = next(atlas.fields.parameters()).device
    rgb = torch.cat([field(uv[s:s + chunk].to(dev)).cpu() for s in range(0, uv.shape[0], chunk)])
    return rgb.T.reshape(1, 3, ha, wa)


@torch.no_grad()
def atlas_coverage(atlas: Atlas, resolution: int) -> torch.Tensor:
    """Where the foreground atlas is seen: the largest opacity that any frame
    pixel lands with on each fg atlas pixel, ``(1, 1, Ha, Wa)`` (dilated by the
    size of a frame pixel in the atlas so that the coverage has no pin holes)."""
    ha, wa, box = atlas_grid(atlas, "fg", resolution)
    cover = torch.zeros(ha * wa)
    for t in range(atlas.n_frames):
        progress.check("atlas coverage")
        uv_f, _, a = atlas.frame_maps([t])
        g = uv_to_grid(uv_f, box)[0]
        col = ((g[..., 0] + 1) / 2 * wa).floor().long().clamp(0, wa - 1)
        row = ((g[..., 1] + 1) / 2 * ha).floor().long().clamp(0, ha - 1)
        cover.scatter_reduce_(0, (row * wa + col).reshape(-1), a[0, 0].reshape(-1), "amax")
    cover = cover.reshape(1, 1, ha, wa)
    atlas_px_per_frame_px = atlas.geometry.unit_per_pixel * 0.8 / ((box[2] - box[0]) / wa)
    k = 2 * math.ceil(atlas_px_per_frame_px / 2) + 1
    return F.max_pool2d(cover, k, stride=1, padding=k // 2)


def extract(atlas: Atlas, resolution: int, indices: list[int]) -> dict[str, torch.Tensor]:
    """Everything LL_AtlasExtract outputs: ``fg_atlas (1,3,Ha,Wa)``,
    ``fg_alpha (1,1,Ha,Wa)``, ``bg_atlas (1,3,Hb,Wb)``, and for the frames
    ``uv_fg``/``uv_bg`` STMaps ``(K,3,H,W)`` and ``alpha (K,1,H,W)``."""
    uv_f, uv_b, a = atlas.frame_maps(indices)
    return {"fg_atlas": atlas_image(atlas, "fg", resolution),
            "fg_alpha": atlas_coverage(atlas, resolution),
            "bg_atlas": atlas_image(atlas, "bg", resolution),
            "uv_fg": stmap(uv_f, atlas_grid(atlas, "fg", resolution)[2]),
            "uv_bg": stmap(uv_b, atlas_grid(atlas, "bg", resolution)[2]),
            "alpha": a}


__all__ = ["LAYERS", "atlas_grid", "atlas_image", "atlas_coverage", "extract", "stmap", "uv_to_grid",
           "edit_box", "box_for_size", "check_resolution"]


@torch.no_grad()
def frame_point_to_atlas(atlas: Atlas, index: int, x: float, y: float, resolution: int,
                         layer: str = "fg") -> tuple[float, float, float]:
    """Where the frame point (x, y) of frame ``index`` lands in the discretised atlas.

    (x, y) are continuous pixel coordinates: pixel i spans [i, i+1), its centre
    is i + 0.5 (the convention of ``toyworld.clips.ToyClip.centres``).

    Returns ``(col, row, scale)``: atlas pixel coordinates (pixel centres at
    integers, like the frame's) and atlas pixels per frame pixel, so a paint of
    radius r frame pixels is r·scale atlas pixels. This is how a mark painted
    on the atlas is placed over an object seen in a frame.
    """
    _, wa, (u0, v0, u1, _) = atlas_grid(atlas, layer, resolution)
    per_pixel = (u1 - u0) / wa                       # atlas units per atlas pixel
    uv_f, uv_b, _ = atlas.frame_maps([index])
    g = atlas.geometry
    grid = torch.tensor([[[[x / g.width * 2 - 1, y / g.height * 2 - 1]]]],
                        dtype=uv_f.dtype)
    uv = torch.nn.functional.grid_sample(uv_f if layer == "fg" else uv_b, grid,
                                         align_corners=False)[0, :, 0, 0]
    col, row = float((uv[0] - u0) / per_pixel - 0.5), float((uv[1] - v0) / per_pixel - 0.5)
    return col, row, float(g.unit_per_pixel * 0.8 / per_pixel)
