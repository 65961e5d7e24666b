"""Quality measures of a decomposition against a clip with known ground truth
(the toy clips of ``toyworld/clips.py``): opacity IoU and how well a mark painted
on the foreground atlas follows the object. Used by the tests and the bench."""
from __future__ import annotations

import torch

from .products import atlas_grid, frame_point_to_atlas
from .render import Edit, render_edit
from .store import Atlas


def opacity_iou(atlas: Atlas, masks: torch.Tensor, indices: list[int] | None = None) -> float:
    """IoU of ``α > 0.5`` with ``masks > 0.5`` (``(K, 1, H, W)`` for ``indices``, default all)."""
    indices = list(range(atlas.n_frames)) if indices is None else indices
    _, _, alpha = atlas.frame_maps(indices)
    pred, true = alpha > 0.5, masks > 0.5
    return float((pred & true).sum() / (pred | true).sum().clamp_min(1))


def disc_edit(atlas: Atlas, index: int, x: float, y: float, radius_px: float, resolution: int) -> Edit:
    """A soft disc on the fg atlas image (longer side ``resolution``) where the
    frame point (x, y) of frame ``index`` lands, ``radius_px`` frame pixels
    across; coloured by atlas position so a misplaced sample shows."""
    ha, wa, _ = atlas_grid(atlas, "fg", resolution)
    col, row, scale = frame_point_to_atlas(atlas, index, x, y, resolution)
    r = radius_px * scale                                       # frame pixels → atlas pixels
    rows, cols = torch.meshgrid(torch.arange(ha), torch.arange(wa), indexing="ij")
    d = torch.sqrt((rows - row) ** 2 + (cols - col) ** 2)
    alpha = (r + 0.5 - d).clamp(0, 1)[None, None]
    rgb = torch.stack([cols / wa, rows / ha, torch.full_like(d, 0.5)])[None]
    return Edit(rgb.float(), alpha.float())


def mark_centroids(atlas: Atlas, edit: Edit, indices: list[int]) -> torch.Tensor:
    """Centre of mass ``(K, 2)`` (x, y; pixel centres at +0.5) of the rendered
    edit's alpha in each frame of ``indices``."""
    _, a, _ = render_edit(atlas, indices, fg=edit)
    g = atlas.geometry
    ys, xs = torch.meshgrid(torch.arange(g.height) + 0.5, torch.arange(g.width) + 0.5, indexing="ij")
    w = a[:, 0]
    total = w.sum((1, 2)).clamp_min(1e-12)
    return torch.stack([(w * xs).sum((1, 2)) / total, (w * ys).sum((1, 2)) / total], 1)


def track_errors(atlas: Atlas, centres, radius_px: float = 3.0,
                 resolution: int = 128) -> tuple[float, torch.Tensor]:
    """Paint a disc where the object's centre is in frame 0 and follow it.

    centres: ``(N, 2)`` true object centres per frame (x, y). Returns the
    start error (px, frame 0) and per frame the error of the mark's motion
    against the object's true motion since frame 0, ``(N,)`` px.
    """
    truth = torch.as_tensor(centres, dtype=torch.float32)
    edit = disc_edit(atlas, 0, float(truth[0, 0]), float(truth[0, 1]), radius_px, resolution)
    cent = mark_centroids(atlas, edit, list(range(atlas.n_frames)))
    start = float((cent[0] - truth[0]).norm())
    return start, (cent - cent[0] - (truth - truth[0])).norm(dim=1)
