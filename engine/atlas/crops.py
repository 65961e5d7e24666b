"""Frame crops ↔ atlas crops through the UV maps: the machinery shared by the
video methods that work in an atlas (Text2LIVE video, stylisation of video
objects).

A video method edits an *atlas image* (or the atlas colour field) but judges
the result on *frames*. Per step it

1. picks frames and a box in each around the object, from the opacity
   (:func:`object_box`);
2. finds the part of the atlas image those frame crops look at
   (:func:`atlas_crop_box`) — the generator then only runs on that atlas crop;
3. samples the atlas crop back into each frame crop through the UVs
   (:func:`sample_atlas_crop`), differentiably, and composites it with the
   opacity (``render.composite_layers``).

Boxes are half-open integer pixel boxes ``Box(x0, y0, x1, y1)``. Atlas images
follow ``products.atlas_grid`` (square pixels, rows down like frames).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .products import atlas_grid, uv_to_grid
from .render import Edit, sample_edit


@dataclass(frozen=True)
class Box:
    """A half-open pixel box: columns ``x0 ≤ x < x1``, rows ``y0 ≤ y < y1``."""
    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., H, W)`` → ``(..., height, width)`` (a view)."""
        return x[..., self.y0:self.y1, self.x0:self.x1]


def _fit_span(lo: int, hi: int, want: int, limit: int) -> tuple[int, int]:
    """Grow ``[lo, hi)`` about its centre to ``want`` pixels and shift it inside
    ``[0, limit)`` (the whole range when ``want ≥ limit``)."""
    if want >= limit:
        return 0, limit
    extra = want - (hi - lo)
    if extra > 0:
        lo, hi = lo - extra // 2, hi + extra - extra // 2
    if lo < 0:
        lo, hi = 0, hi - lo
    if hi > limit:
        lo, hi = lo - (hi - limit), limit
    return max(lo, 0), min(hi, limit)


def object_box(alpha: torch.Tensor, threshold: float = 0.95, margin: int = 30,
               min_size: int = 129) -> Box:
    """The box around the object in one frame.

    ``alpha`` ``(H, W)`` or ``(1, H, W)`` opacity. The box bounds the pixels
    with ``alpha ≥ threshold`` (Text2LIVE video: 0.95), grown by ``margin``
    pixels on every side, then to at least ``min_size`` pixels a side, and
    kept inside the frame. When no pixel reaches the threshold the largest
    opacity's half is used instead; with no opacity at all, the whole frame.
    """
    a = alpha.reshape(alpha.shape[-2:])
    h, w = a.shape
    seen = a >= threshold
    if not seen.any():
        peak = float(a.max())
        if peak <= 1e-3:
            return Box(0, 0, w, h)
        seen = a >= 0.5 * peak
    rows = torch.nonzero(seen.any(1)).flatten()
    cols = torch.nonzero(seen.any(0)).flatten()
    y0, y1 = int(rows[0]) - margin, int(rows[-1]) + 1 + margin
    x0, x1 = int(cols[0]) - margin, int(cols[-1]) + 1 + margin
    y0, y1 = _fit_span(max(y0, 0), min(y1, h), max(min_size, 1), h)
    x0, x1 = _fit_span(max(x0, 0), min(x1, w), max(min_size, 1), w)
    return Box(x0, y0, x1, y1)


def union_box(boxes: list[Box]) -> Box:
    """The smallest box holding all ``boxes``."""
    return Box(min(b.x0 for b in boxes), min(b.y0 for b in boxes),
               max(b.x1 for b in boxes), max(b.y1 for b in boxes))


def scaled_box(box: Box, scale: float, offset: tuple[float, float], height: int, width: int) -> Box:
    """A sub-box of ``box``: sides × ``scale`` (≤ 1), placed at ``offset`` ∈ [0, 1]²
    of the free room (0 = left/top, 1 = right/bottom); clipped to the frame.
    Text2LIVE video's background crops: one random 95–100 % crop, the same in
    every frame of a step."""
    bw, bh = max(1, round(box.width * scale)), max(1, round(box.height * scale))
    x0 = box.x0 + round((box.width - bw) * offset[0])
    y0 = box.y0 + round((box.height - bh) * offset[1])
    return Box(max(x0, 0), max(y0, 0), min(x0 + bw, width), min(y0 + bh, height))


def square_box(box: Box, height: int, width: int) -> Box:
    """``box`` with its shorter side grown about its centre to the longer one,
    kept inside the ``height × width`` frame (as square as the frame allows).
    CLIP views are square: a square crop needs no stretching."""
    side = max(box.width, box.height)
    x0, x1 = _fit_span(box.x0, box.x1, side, width)
    y0, y1 = _fit_span(box.y0, box.y1, side, height)
    return Box(x0, y0, x1, y1)


@dataclass(frozen=True)
class AtlasCanvas:
    """The discretised atlas image of one layer: ``height × width`` pixels
    covering the UV box ``uv_box = (u0, v0, u1, v1)`` (``products.atlas_grid``)."""
    height: int
    width: int
    uv_box: tuple[float, float, float, float]

    @classmethod
    def of(cls, atlas, layer: str, resolution: int) -> "AtlasCanvas":
        ha, wa, box = atlas_grid(atlas, layer, resolution)
        return cls(ha, wa, box)

    def pixel_uv_box(self, box: Box) -> tuple[float, float, float, float]:
        """The UV box (outer pixel edges) that the atlas pixels of ``box`` cover."""
        u0, v0, u1, v1 = self.uv_box
        pu, pv = (u1 - u0) / self.width, (v1 - v0) / self.height
        return (u0 + box.x0 * pu, v0 + box.y0 * pv, u0 + box.x1 * pu, v0 + box.y1 * pv)

    def to_pixels(self, uv: torch.Tensor) -> torch.Tensor:
        """UV ``(K, 2, H, W)`` → continuous atlas pixel coordinates (col, row)
        ``(K, 2, H, W)``; pixel i spans [i, i+1)."""
        u0, v0, u1, v1 = self.uv_box
        col = (uv[:, 0] - u0) / (u1 - u0) * self.width
        row = (uv[:, 1] - v0) / (v1 - v0) * self.height
        return torch.stack([col, row], 1)


def atlas_crop_box(canvas: AtlasCanvas, uv: torch.Tensor, weight: torch.Tensor | None = None,
                   pad: int = 2, multiple: int = 1, min_size: int = 8) -> Box:
    """The part of the atlas image that frame crops look at.

    ``uv`` ``(K, 2, h, w)``: the crops' UVs of the edited layer; ``weight``
    ``(K, 1, h, w)``: only pixels where it is > 0 count (e.g. the opacity
    for the foreground; ``None`` = every pixel). The bounding box of the atlas
    pixels they land on, grown by ``pad`` pixels (bilinear sampling reads the
    neighbour), to at least ``min_size`` and to a multiple of ``multiple``
    (a generator with k stride-2 scales wants multiples of 2^k), inside the
    atlas image where it fits.
    """
    px = canvas.to_pixels(uv)
    keep = torch.ones_like(px[:, :1], dtype=torch.bool) if weight is None else weight > 0
    if not keep.any():
        return Box(0, 0, canvas.width, canvas.height)
    cols, rows = px[:, 0:1][keep], px[:, 1:2][keep]
    x0, x1 = int(cols.min().floor()) - pad, int(cols.max().floor()) + 1 + pad
    y0, y1 = int(rows.min().floor()) - pad, int(rows.max().floor()) + 1 + pad
    x0, x1 = max(x0, 0), min(x1, canvas.width)
    y0, y1 = max(y0, 0), min(y1, canvas.height)
    want_w = _round_up(max(x1 - x0, min_size), multiple)
    want_h = _round_up(max(y1 - y0, min_size), multiple)
    x0, x1 = _fit_span(x0, max(x1, x0 + 1), want_w, canvas.width)
    y0, y1 = _fit_span(y0, max(y1, y0 + 1), want_h, canvas.height)
    return Box(x0, y0, x1, y1)


def _round_up(n: int, multiple: int) -> int:
    return -(-n // max(multiple, 1)) * max(multiple, 1)


def sample_atlas_crop(rgb: torch.Tensor, alpha: torch.Tensor, canvas: AtlasCanvas, box: Box,
                      uv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample an atlas-crop RGBA at frame UVs, differentiably.

    ``rgb`` ``(1, 3, hc, wc)`` straight colour and ``alpha`` ``(1, 1, hc, wc)``
    on the atlas pixels ``box`` of ``canvas``; ``uv`` ``(K, 2, h, w)``.
    Returns premultiplied colour ``(K, 3, h, w)`` and alpha ``(K, 1, h, w)``
    (bilinear; beyond the crop the edge pixels repeat, as a whole-atlas render).
    With the whole atlas as ``box`` this is exactly ``render.sample_edit``.
    """
    grid = uv_to_grid(uv, canvas.pixel_uv_box(box)).to(rgb)
    return sample_edit(Edit(rgb, alpha), grid)


__all__ = ["Box", "AtlasCanvas", "object_box", "union_box", "scaled_box", "square_box",
           "atlas_crop_box", "sample_atlas_crop"]
