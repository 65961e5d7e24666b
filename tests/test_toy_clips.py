"""The tracked toy clips (toyworld.clips.make_tracked_clip): every
piece of ground truth checked against an independent computation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from livelayers.toyworld.clips import (Occluder, background_colour, keyframe_track,
                                               linear_track, make_toy_clip, make_tracked_clip)
from livelayers.engine.errors import InputError

# A square whose edges fall on whole pixels: half-extent 8 px (vertices at
# 0.88 x size x 64) centred on a pixel corner covers exactly 16 x 16 pixels.
SQUARE_8PX = 8 / (0.88 * 64)


def _bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sample (C, H, W) at continuous pixel coordinates (centres at i + 0.5)."""
    h, w = img.shape[-2:]
    gx, gy = np.clip(x - 0.5, 0, w - 1.0001), np.clip(y - 0.5, 0, h - 1.0001)
    x0, y0 = gx.astype(int), gy.astype(int)
    fx, fy = gx - x0, gy - y0
    return ((img[:, y0, x0] * (1 - fx) + img[:, y0, x0 + 1] * fx) * (1 - fy)
            + (img[:, y0 + 1, x0] * (1 - fx) + img[:, y0 + 1, x0 + 1] * fx) * fy)


def _centroid(mask: torch.Tensor) -> tuple[float, float]:
    m = mask[0].double().numpy()
    ys, xs = np.mgrid[: m.shape[0], : m.shape[1]] + 0.5
    return float((m * xs).sum() / m.sum()), float((m * ys).sum() / m.sum())


def test_make_toy_clip_unchanged():
    """The original generator's output is pinned (other tests depend on it)."""
    c = make_toy_clip()
    assert c.frames.double().sum().item() == pytest.approx(26905.79181099683, abs=1e-6)
    assert c.masks.double().sum().item() == pytest.approx(4914.0, abs=1e-6)
    assert c.centres[:2].tolist() == [[26.75, 30.25], [28.25, 30.75]]
    assert c.bg_offsets[:2].tolist() == [[0, 0], [-1, 0]]


def test_deterministic_by_seed():
    kw = dict(n_frames=4, height=32, width=40, zoom=1.05, texture="dotted", spin=0.1,
              occluders=[Occluder((10, 0, 14, 32), frames=(1, 3))])
    a, b, c = make_tracked_clip(seed=5, **kw), make_tracked_clip(seed=5, **kw), make_tracked_clip(seed=6, **kw)
    for name in ("frames", "masks", "full_masks", "occluder_masks", "labels", "uv_object", "uv_background"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert np.array_equal(a.centres, b.centres)
    # The seed picks the background only.
    assert (a.frames - c.frames).abs().max() > 0.05
    assert torch.equal(a.masks, c.masks) and torch.equal(a.uv_background, c.uv_background)


def test_keyframe_track_smooth_through_keys():
    keys = [(0, (10.0, 30.0)), (3, (30.0, 15.0)), (7, (50.0, 35.0))]
    track = keyframe_track(keys)
    for t, p in keys:
        assert track(t) == pytest.approx(p)
    # C1 at the inner keyframe: the velocity is continuous...
    eps = 1e-4
    left = (np.array(track(3)) - np.array(track(3 - eps))) / eps
    right = (np.array(track(3 + eps)) - np.array(track(3))) / eps
    np.testing.assert_allclose(left, right, atol=1e-2)
    np.testing.assert_allclose(right, [40 / 7, 5 / 7], atol=1e-2)  # Catmull-Rom tangent
    # ... but not constant: the object accelerates along the curve.
    v0 = np.array(track(1)) - np.array(track(0))
    v1 = np.array(track(5)) - np.array(track(4))
    assert np.abs(v0 - v1).max() > 2
    # Beyond the last key it continues straight along the end tangent.
    np.testing.assert_allclose(np.array(track(9)) - np.array(track(8)), [5.0, 5.0], atol=1e-9)
    with pytest.raises(InputError):
        keyframe_track([(2, (0, 0)), (1, (1, 1))])


@pytest.mark.parametrize("shape", ["circle", "square"])
def test_mask_centroid_follows_track(shape):
    clip = make_tracked_clip(8, 64, 64, seed=1, shape=shape, texture="checkered", angle=0.4,
                             spin=0.07, track=[(0, (20.3, 40.1)), (4, (33.7, 22.9)), (7, (44.2, 36.6))])
    for t in range(8):
        # 4x4 supersampling quantises edges to 1/4 px (an axis-aligned square's
        # centroid can be off by up to 1/8 px); on rotated shapes, measured over
        # 4 seeds x 8 frames of random tracks and angles: |1 - fraction| <= 0.0019,
        # centroid error <= 0.016 px.
        assert clip.visible_fraction[t] == pytest.approx(1.0, abs=5e-3)
        cx, cy = _centroid(clip.masks[t])
        assert abs(cx - clip.centres[t, 0]) < 0.05 and abs(cy - clip.centres[t, 1]) < 0.05
    assert torch.equal(clip.masks, clip.full_masks)  # no occluder


def test_object_uv_is_fixed_on_the_object():
    clip = make_tracked_clip(6, 64, 64, seed=2, shape="square", texture="striped", size=0.3,
                             angle=0.3, spin=0.12, zoom=1.04,
                             track=[(0, (24.0, 36.0)), (5, (40.0, 28.0))])
    uv = clip.uv_object.double().numpy()
    for t in range(6):
        # A point fixed on the object lands where uv_object says it is.
        for u, v in [(0.0, 0.0), (0.4, -0.3), (-0.5, 0.6)]:
            x, y = clip.object_point(t, u, v)
            np.testing.assert_allclose(_bilinear(uv[t], np.array(x), np.array(y)), [u, v], atol=1e-4)
        # The pixels show the stripes at their object UV (scenes' striped
        # texture: dark where floor(2.2 (u + v)) is odd), so the UV map and the
        # picture agree; only pixels split by a stripe edge differ.
        inside = clip.masks[t, 0].numpy() == 1
        dark = (np.floor((uv[t, 0] + uv[t, 1]) * 2.2) % 2)[inside]
        want_red = 0.86 * (1 - 0.55 * dark)
        err = np.abs(clip.frames[t, 0].numpy()[inside] - want_red)
        assert (err < 1e-3).mean() > 0.75  # measured 0.83-0.89 over 4 seeds / angles
        assert np.median(err) < 1e-3


def test_background_uv_follows_pan_and_zoom():
    pan, zoom = (-1.5, 0.75), 1.06
    clip = make_tracked_clip(5, 48, 64, seed=4, pan=pan, zoom=zoom, background="grass")
    uvb = clip.uv_background.double().numpy()
    # Hand-worked: frame 2, pixel centre (0.5, 0.5); c = (32, 24), o = (-3, 1.5), z = 1.06^2.
    z = zoom ** 2
    assert uvb[2, :, 0, 0] == pytest.approx([32 + (0.5 - 32 + 3) / z, 24 + (0.5 - 24 - 1.5) / z], abs=1e-4)
    # The frame spans 64 / z world pixels across at frame t.
    for t in range(5):
        span = uvb[t, 0, 0, -1] - uvb[t, 0, 0, 0]
        assert span == pytest.approx(63 / zoom ** t, rel=1e-5)
    # The pictures agree with the UV: frame 4's background pixels, looked up
    # in frame 0 at the same world point, have the same colour.
    f0, f4 = clip.frames[0].double().numpy(), clip.frames[4].double().numpy()
    x0, y0 = clip.world_to_pixel(0, uvb[4, 0], uvb[4, 1])
    keep = ((clip.masks[4, 0].numpy() == 0) & (x0 > 1) & (x0 < 63) & (y0 > 1) & (y0 < 47)
            & (_bilinear(clip.masks[0].double().numpy(), x0, y0)[0] == 0))
    diff = np.abs(_bilinear(f0, x0[keep], y0[keep]) - f4[:, keep])
    assert keep.sum() > 1500
    # Bilinear lookup error; measured over 4 seeds x 4 backgrounds x zoom in/out:
    # mean <= 0.0015, p99 <= 0.012.
    assert diff.mean() < 0.004 and np.percentile(diff, 99) < 0.025
    # And they are the closed-form background at those world points (up to
    # the 4x4 supersampling).
    bg = background_colour(clip.background, uvb[4, 0], uvb[4, 1], clip.background_seed, 48)
    free = clip.masks[4, 0].numpy() == 0
    err = np.abs(bg.transpose(2, 0, 1)[:, free] - f4[:, free])
    assert err.mean() < 0.003 and err.max() < 0.04  # measured (as above) mean <= 0.0009, max <= 0.021


def test_occluder_reduces_visible_mask_exactly():
    # The square covers x in [24, 40), y in [24, 40); the post covers x < 32 for frames 2 and 3.
    post = Occluder((10, 0, 32, 64), frames=(2, 4))
    clip = make_tracked_clip(6, 64, 64, seed=0, shape="square", size=SQUARE_8PX,
                             track=linear_track((32, 32), (0, 0)), occluders=[post])
    sums = clip.masks.sum((1, 2, 3)).numpy()
    assert sums.tolist() == [256, 256, 128, 128, 256, 256]
    assert clip.full_masks.sum((1, 2, 3)).tolist() == [256] * 6
    assert torch.equal(clip.masks, clip.full_masks * (1 - clip.occluder_masks))
    np.testing.assert_allclose(clip.visible_fraction, [1, 1, .5, .5, 1, 1], atol=1e-6)
    assert (clip.labels[2, 30:34, 10:32] == 2).all() and (clip.labels[2, 30, 32:40] == 1).all()
    assert (clip.labels[1, 30, 24:40] == 1).all()
    # Occluded pixels show the post's colour; the UV ground truth is NaN there.
    assert clip.frames[2, :, 30, 20].tolist() == pytest.approx(list(post.colour), abs=1e-6)
    gt = clip.uv_ground_truth()
    assert torch.isnan(gt[2, :, 30, 20]).all() and not torch.isnan(gt[1]).any()
    # A moving occluder: 4 px right per frame, entering the square from its left.
    slide = Occluder((12, 0, 20, 64), velocity=(4, 0))
    clip = make_tracked_clip(5, 64, 64, seed=0, shape="square", size=SQUARE_8PX,
                             track=linear_track((32, 32), (0, 0)), occluders=[slide])
    # The post's 8 px overlap the square's [24, 40) by 0, 0, 4, 8, 8 columns.
    assert clip.masks.sum((1, 2, 3)).tolist() == [256, 256, 192, 128, 128]


def test_leaving_the_frame():
    # Square centre x = 48, 52, ..., 72: its 16 columns [x - 8, x + 8) run off
    # the right edge (64) from frame 3 on.
    clip = make_tracked_clip(7, 64, 64, seed=0, shape="square", size=SQUARE_8PX,
                             track=linear_track((48, 32), (4, 0)))
    assert clip.masks.sum((1, 2, 3)).tolist() == [256, 256, 256, 192, 128, 64, 0]
    np.testing.assert_allclose(clip.visible_fraction, [1, 1, 1, .75, .5, .25, 0], atol=1e-6)
    assert clip.centres[6].tolist() == [72, 32]  # the track itself is not clamped
    # A circle centred on the edge shows half its area (analytic pi r^2 / 2).
    clip = make_tracked_clip(1, 64, 64, seed=0, shape="circle", size=0.2, track=[(0, (64.0, 30.3))])
    # Measured at y = 30.3, 17.0, 40.6: visible fraction 0.4993-0.5004.
    assert clip.masks.sum().item() == pytest.approx(np.pi * (0.2 * 64) ** 2 / 2, rel=4e-3)
    assert clip.visible_fraction[0] == pytest.approx(0.5, abs=2e-3)


def test_rejects_bad_inputs():
    with pytest.raises(InputError, match="shape"):
        make_tracked_clip(shape="hexagon")
    with pytest.raises(InputError, match="background"):
        make_tracked_clip(background="snow")
    with pytest.raises(InputError, match="zoom"):
        make_tracked_clip(zoom=0.0, n_frames=2)
    with pytest.raises(InputError, match="occluders"):
        make_tracked_clip(occluders=[Occluder((5, 5, 2, 9))])


def test_toy_clip_reads_the_tracked_clips(toy_clip_dir, one_thread):
    """The closed-form backgrounds look like the toy world's: the toy CLIP
    names background and colour of tracked-clip frames (measured 1.00 of the
    frames for these pairs and for red and blue on every background, 8
    zooming frames each, with the shipped 1500-step model)."""
    import open_clip

    from livelayers.toyworld import scenes
    from livelayers.toyworld.train_clip import _to_tensor, build_model, load_weights
    model = build_model()
    load_weights(model, toy_clip_dir)
    model.eval()
    tok = open_clip.SimpleTokenizer(context_length=24)
    norm = torch.nn.functional.normalize
    with torch.no_grad():
        t_bg = norm(model.encode_text(tok([f"a shape on {b}" for b in scenes.BACKGROUNDS])), dim=-1)
        t_col = norm(model.encode_text(tok([f"a {c} shape" for c in scenes.COLOURS])), dim=-1)
        for bg, col in zip(scenes.BACKGROUNDS, ["red", "blue", "red", "yellow"]):
            clip = make_tracked_clip(4, 64, 64, seed=1, background=bg, colour=col, zoom=1.03)
            u8 = np.round(clip.frames.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
            f = norm(model.encode_image(_to_tensor(u8)), dim=-1)
            assert ((f @ t_bg.T).argmax(1) == scenes.BACKGROUNDS.index(bg)).float().mean() >= 0.75, bg
            assert ((f @ t_col.T).argmax(1) == list(scenes.COLOURS).index(col)).float().mean() >= 0.75, col
