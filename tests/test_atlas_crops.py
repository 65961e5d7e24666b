"""Frame crops ↔ atlas crops (engine/atlas/crops.py): boxes from the opacity,
the atlas crop the frame crops look at, and sampling the crop back exactly as
a whole-atlas render would."""
from __future__ import annotations

import torch

from livelayers.engine.atlas.crops import (AtlasCanvas, Box, atlas_crop_box, object_box,
                                           sample_atlas_crop, scaled_box, union_box)
from livelayers.engine.atlas.render import Edit, sample_edit
from livelayers.engine.atlas.products import uv_to_grid


def _disc_alpha(h, w, cx, cy, r):
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    return (((xs - cx) ** 2 + (ys - cy) ** 2) <= r * r).float()


def test_object_box_bounds_margin_and_min_size():
    a = _disc_alpha(100, 200, 50, 40, 10)            # object spans cols 40..59, rows 30..49
    box = object_box(a, threshold=0.95, margin=5, min_size=1)
    assert (box.x0, box.y0, box.x1, box.y1) == (35, 25, 65, 55)
    big = object_box(a, threshold=0.95, margin=5, min_size=64)
    assert big.width == 64 and big.height == 64
    assert big.x0 <= 35 and big.x1 >= 65 and big.y0 <= 25 and big.y1 >= 55


def test_object_box_stays_inside_the_frame():
    a = _disc_alpha(60, 80, 3, 57, 6)                # object in the bottom-left corner
    box = object_box(a, margin=30, min_size=40)
    assert box.x0 == 0 and box.y1 == 60 and box.width >= 40 and box.height >= 40
    whole = object_box(a, min_size=500)              # larger than the frame: the frame
    assert (whole.x0, whole.y0, whole.x1, whole.y1) == (0, 0, 80, 60)
    empty = object_box(torch.zeros(60, 80))
    assert (empty.width, empty.height) == (80, 60)


def test_object_box_falls_back_to_half_the_peak_opacity():
    a = 0.6 * _disc_alpha(50, 50, 25, 25, 5)          # never reaches 0.95
    box = object_box(a, margin=0, min_size=1)
    assert (box.x0, box.x1) == (20, 30)


def test_union_and_scaled_boxes():
    u = union_box([Box(2, 3, 10, 12), Box(5, 1, 20, 8)])
    assert (u.x0, u.y0, u.x1, u.y1) == (2, 1, 20, 12)
    s = scaled_box(Box(0, 0, 100, 50), 0.9, (1.0, 0.0), 50, 100)
    assert (s.x0, s.y0, s.x1, s.y1) == (10, 0, 100, 45)


def _canvas_and_uv(seed=0):
    g = torch.Generator().manual_seed(seed)
    canvas = AtlasCanvas(48, 64, (-0.8, -0.6, 0.8, 0.6))
    # Smooth UVs (a ramp per frame, shifted per frame) in a sub-part of the atlas.
    ys, xs = torch.meshgrid(torch.linspace(0, 1, 10), torch.linspace(0, 1, 12), indexing="ij")
    shift = 0.05 * torch.rand(3, 1, 1, generator=g)
    uv = torch.stack([-0.2 + 0.3 * xs + shift, 0.1 + 0.25 * ys + shift], 1)
    return canvas, uv, g


def test_atlas_crop_box_covers_the_uvs_and_rounds_to_a_multiple():
    canvas, uv, _ = _canvas_and_uv()
    box = atlas_crop_box(canvas, uv, pad=2, multiple=8, min_size=8)
    px = canvas.to_pixels(uv)
    assert box.x0 <= float(px[:, 0].min()) - 1 and box.x1 >= float(px[:, 0].max()) + 1
    assert box.y0 <= float(px[:, 1].min()) - 1 and box.y1 >= float(px[:, 1].max()) + 1
    assert box.width % 8 == 0 and box.height % 8 == 0
    assert box.width < canvas.width and box.height < canvas.height


def test_atlas_crop_box_ignores_pixels_without_weight():
    canvas, uv, _ = _canvas_and_uv()
    weight = torch.zeros(3, 1, 10, 12)
    weight[:, :, :3, :3] = 1
    small = atlas_crop_box(canvas, uv, weight, pad=0, min_size=1)
    full = atlas_crop_box(canvas, uv, None, pad=0, min_size=1)
    assert small.width * small.height < full.width * full.height


def test_sampling_the_crop_equals_sampling_the_whole_atlas_and_has_gradients():
    canvas, uv, g = _canvas_and_uv()
    rgb = torch.rand(1, 3, canvas.height, canvas.width, generator=g)
    alpha = torch.rand(1, 1, canvas.height, canvas.width, generator=g)
    whole = sample_edit(Edit(rgb, alpha), uv_to_grid(uv, canvas.uv_box))
    box = atlas_crop_box(canvas, uv, pad=2)
    crop_rgb = box.crop(rgb).clone().requires_grad_(True)
    prem, a = sample_atlas_crop(crop_rgb, box.crop(alpha), canvas, box, uv)
    torch.testing.assert_close(prem, whole[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(a, whole[1], rtol=0, atol=1e-5)
    prem.sum().backward()
    assert crop_rgb.grad is not None and float(crop_rgb.grad.abs().sum()) > 0
