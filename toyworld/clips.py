"""Toy clips with exactly known motion, for tests, the bench and the demo.

``make_toy_clip``: a textured toy-world object translates (constant
velocity) over a textured background that pans by whole pixels per frame.
Ground truth comes with the frames: the object's coverage mask per frame, its
centre track and the background offset per frame.

``make_tracked_clip``: smooth (keyframed or any) tracks, a panning and
zooming camera, occluders, objects leaving the frame, and per-pixel UV ground
truth (object-local and background-world coordinates).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ..engine.errors import InputError
from . import scenes


@dataclass
class ToyClip:
    frames: torch.Tensor      # (N, 3, H, W) sRGB [0, 1]
    masks: torch.Tensor       # (N, 1, H, W) object coverage [0, 1]
    centres: np.ndarray       # (N, 2) object centre (x, y) in pixels (pixel centres at +0.5)
    bg_offsets: np.ndarray    # (N, 2) background pan (x, y) in whole pixels


def _object_layer(obj: scenes.ToyObject, height: int, width: int, ss: int = 4):
    """Premultiplied colour (H, W, 3) and coverage (H, W) of one object, supersampled."""
    ys = (np.arange(height * ss) + 0.5) / ss
    xs = (np.arange(width * ss) + 0.5) / ss
    short = min(height, width)
    x, y = np.meshgrid(xs / short, ys / short, indexing="xy")
    ax, ay = width / short, height / short
    inside = scenes._coverage(obj, x, y, ax, ay).astype(np.float64)
    dark = scenes._texture(obj, x, y, ax, ay)
    fill = np.array(scenes.COLOURS[obj.colour]) * (1 - 0.55 * dark[..., None])
    premult = (fill * inside[..., None]).reshape(height, ss, width, ss, 3).mean((1, 3))
    cover = inside.reshape(height, ss, width, ss).mean((1, 3))
    return premult, cover


def make_toy_clip(n_frames: int = 8, height: int = 64, width: int = 64, seed: int = 0,
                  velocity: tuple[float, float] = (1.5, 0.5), pan: tuple[int, int] = (-1, 0),
                  shape: str = "square", colour: str = "red", texture: str = "striped",
                  background: str = "grass", size: float = 0.22) -> ToyClip:
    """A clip of ``n_frames`` (N, 3, H, W) with an object moving ``velocity``
    pixels per frame and the background panning ``pan`` whole pixels per frame."""
    rng = np.random.default_rng(seed)
    pad = int(np.ceil(max(abs(pan[0]), abs(pan[1])) * n_frames)) + 2
    bg_big = scenes.render_background(background, height + 2 * pad, width + 2 * pad,
                                      int(rng.integers(2 ** 31)))
    # Start so the object stays inside the frame for the whole clip.
    travel = np.array(velocity) * (n_frames - 1)
    start = np.array([width, height]) / 2 - travel / 2
    frames, masks, centres, offsets = [], [], [], []
    for t in range(n_frames):
        cx, cy = start + np.array(velocity) * t
        ox, oy = pan[0] * t, pan[1] * t
        bg = bg_big[pad - oy: pad - oy + height, pad - ox: pad - ox + width]
        # ToyObject centres are fractions of the width / height.
        obj = scenes.ToyObject(shape, colour, texture, cx / width, cy / height, size, angle=0.2)
        premult, cover = _object_layer(obj, height, width)
        frames.append(premult + (1 - cover[..., None]) * bg)
        masks.append(cover)
        centres.append((cx, cy))
        offsets.append((ox, oy))
    f = torch.from_numpy(np.stack(frames).astype(np.float32)).permute(0, 3, 1, 2).contiguous()
    m = torch.from_numpy(np.stack(masks).astype(np.float32))[:, None]
    return ToyClip(f, m, np.array(centres), np.array(offsets))


# --------------------------------------------------------------------------- tracked clips
#
# ``make_tracked_clip`` is the richer generator for the video work: a smooth
# (not only straight) object track, a camera that pans *and* zooms over an
# unbounded procedural background, occluders, objects leaving the frame, and
# per-pixel UV ground truth. Every picture is a closed-form function of its
# coordinates (no resampled rasters), so the ground truth is exact.
#
# Conventions: pixel i spans [i, i+1), its centre is i + 0.5 (as ToyClip).
# Background world coordinates are in "world pixels": at frame 0 with zoom 1
# and no offset, world = pixel. A camera (ox, oy, z) at frame t shows the
# world point w at pixel  p = c + z (w - c) + o,  c = (W/2, H/2): content moves
# by o and is magnified by z about the frame centre.

Track = Callable[[float], tuple[float, float]]
Camera = Callable[[float], tuple[float, float, float]]
_NODE = "make_tracked_clip"


def linear_track(start: tuple[float, float], velocity: tuple[float, float]) -> Track:
    """Constant velocity: centre(t) = start + velocity * t (pixels, frames)."""
    sx, sy = map(float, start)
    vx, vy = map(float, velocity)
    return lambda t: (sx + vx * t, sy + vy * t)


def keyframe_track(keyframes: Sequence[tuple[float, tuple[float, float]]]) -> Track:
    """A C1-smooth curve through ``[(frame, (x, y)), ...]`` (frames increasing).

    Cubic Hermite segments with Catmull-Rom tangents (central differences,
    one-sided at the ends); before the first and after the last keyframe the
    curve continues in a straight line along the end tangent, so an object
    can glide out of the frame. One keyframe gives a still object."""
    ts = np.array([float(k[0]) for k in keyframes])
    ps = np.array([tuple(map(float, k[1])) for k in keyframes]).reshape(-1, 2)
    if len(ts) == 0 or np.any(np.diff(ts) <= 0):
        raise InputError(_NODE, "track", f"has keyframe frames {ts.tolist()}",
                         "one or more keyframes with strictly increasing frames")
    if len(ts) == 1:
        return lambda t: (float(ps[0, 0]), float(ps[0, 1]))
    tangents = np.empty_like(ps)
    tangents[1:-1] = (ps[2:] - ps[:-2]) / (ts[2:] - ts[:-2])[:, None]
    tangents[0] = (ps[1] - ps[0]) / (ts[1] - ts[0])
    tangents[-1] = (ps[-1] - ps[-2]) / (ts[-1] - ts[-2])

    def track(t: float) -> tuple[float, float]:
        if t <= ts[0]:
            p = ps[0] + tangents[0] * (t - ts[0])
        elif t >= ts[-1]:
            p = ps[-1] + tangents[-1] * (t - ts[-1])
        else:
            k = int(np.searchsorted(ts, t, side="right") - 1)
            h = ts[k + 1] - ts[k]
            s = (t - ts[k]) / h
            h00, h10 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s
            h01, h11 = -2 * s**3 + 3 * s**2, s**3 - s**2
            p = h00 * ps[k] + h10 * h * tangents[k] + h01 * ps[k + 1] + h11 * h * tangents[k + 1]
        return float(p[0]), float(p[1])
    return track


@dataclass(frozen=True)
class Occluder:
    """A flat box in front of everything, in frame pixels.

    ``box`` = (x0, y0, x1, y1) at frame ``frames[0]``; it moves ``velocity``
    pixels per frame and is present for frames ``frames[0] <= t < frames[1]``.
    Box edges on whole pixels give 0/1 occluder coverage, hence exactly
    predictable visible masks."""
    box: tuple[float, float, float, float]
    frames: tuple[int, int] = (0, 1 << 30)
    velocity: tuple[float, float] = (0.0, 0.0)
    colour: tuple[float, float, float] = (0.45, 0.32, 0.20)  # a wooden post

    def box_at(self, t: int) -> tuple[float, float, float, float] | None:
        if not self.frames[0] <= t < self.frames[1]:
            return None
        dx, dy = (self.velocity[0] * (t - self.frames[0]), self.velocity[1] * (t - self.frames[0]))
        x0, y0, x1, y1 = self.box
        return x0 + dx, y0 + dy, x1 + dx, y1 + dy


@dataclass
class TrackedClip(ToyClip):
    """A ToyClip (frames, masks = *visible* coverage, centres, bg_offsets)
    plus the rest of the ground truth. Image-shaped fields are (N, C, H, W)
    torch tensors; per-frame values are NumPy arrays."""
    full_masks: torch.Tensor       # (N, 1, H, W) object coverage ignoring occluders (in-frame part)
    occluder_masks: torch.Tensor   # (N, 1, H, W) coverage of all occluders
    labels: torch.Tensor           # (N, H, W) uint8 at pixel centres: 0 background, 1 object, 2 occluder
    uv_object: torch.Tensor        # (N, 2, H, W) object-local (u, v) at pixel centres, everywhere
    uv_background: torch.Tensor    # (N, 2, H, W) background world (x, y) at pixel centres, everywhere
    zooms: np.ndarray              # (N,) camera zoom
    angles: np.ndarray             # (N,) object rotation, radians
    size_px: float                 # object half-extent in pixels (size * shorter side)
    object_area: float             # whole object's area in pixels², in or out of the frame
    visible_fraction: np.ndarray   # (N,) masks.sum() / object_area
    background: str                # background name, for ``background_colour``
    background_seed: int           # its seed: background_colour(background, wx, wy, seed, H)

    def uv_ground_truth(self) -> torch.Tensor:
        """(N, 2, H, W): object UV where the object is in front at the pixel
        centre, background world coordinates where the background is, NaN
        under occluders."""
        lab = self.labels[:, None]
        uv = torch.where(lab == 1, self.uv_object, self.uv_background)
        return torch.where(lab == 2, torch.full_like(uv, float("nan")), uv)

    def object_point(self, t: int, u: float, v: float) -> tuple[float, float]:
        """Pixel position in frame ``t`` of the object-local point (u, v)."""
        c, s = np.cos(self.angles[t]), np.sin(self.angles[t])
        du, dv = c * u - s * v, s * u + c * v
        return (float(self.centres[t, 0] + self.size_px * du),
                float(self.centres[t, 1] + self.size_px * dv))

    def world_to_pixel(self, t: int, wx, wy):
        """Pixel position in frame ``t`` of the background world point (wx, wy)."""
        h, w = self.frames.shape[-2:]
        (ox, oy), z = self.bg_offsets[t], self.zooms[t]
        return w / 2 + z * (np.asarray(wx) - w / 2) + ox, h / 2 + z * (np.asarray(wy) - h / 2) + oy


def _hash01(ix: np.ndarray, iy: np.ndarray, key: int) -> np.ndarray:
    """Uniform [0, 1) value per integer lattice point (splitmix64 finaliser):
    an unbounded, seedable random grid."""
    m32 = np.uint64(0xFFFFFFFF)
    z = (ix.astype(np.int64).view(np.uint64) & m32) | ((iy.astype(np.int64).view(np.uint64) & m32)
                                                       << np.uint64(32))
    z = z ^ np.uint64(key)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _world_noise(wx: np.ndarray, wy: np.ndarray, cell: float, key: int) -> np.ndarray:
    """Bilinear value noise in [0, 1] at continuous world points, lattice spacing ``cell``."""
    gx, gy = wx / cell, wy / cell
    x0, y0 = np.floor(gx), np.floor(gy)
    fx, fy = gx - x0, gy - y0
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    a, b = _hash01(x0, y0, key), _hash01(x0 + 1, y0, key)
    c, d = _hash01(x0, y0 + 1, key), _hash01(x0 + 1, y0 + 1, key)
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def background_colour(name: str, wx: np.ndarray, wy: np.ndarray, seed: int,
                      scale: float) -> np.ndarray:
    """Colour (..., 3) float64 in [0, 1] of an unbounded toy-world background
    at world points (wx, wy) (same shape, world pixels).

    The palettes are those of ``scenes.render_background`` (grass, sand, sky,
    water); ``scale`` is the scene height in world pixels: fine noise has
    cells of scale/16, coarse noise scale/4, and the sky's gradient spans
    0..scale in y. Closed form, so any pixel of any frame is exact."""
    if name not in scenes.BACKGROUNDS:
        raise InputError(_NODE, "background", f"is {name!r}", ", ".join(scenes.BACKGROUNDS))
    key = (int(seed) * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    fine = _world_noise(wx, wy, max(1.0, scale / 16), key)[..., None]
    coarse = _world_noise(wx, wy, max(2.0, scale / 4), key ^ 0x5DEECE66D)[..., None]
    rows = np.clip(wy / scale, 0, 1)[..., None]
    if name == "grass":
        img = np.array([0.22, 0.52, 0.16]) * (0.7 + 0.45 * fine) + 0.05 * (coarse - 0.5)
    elif name == "sand":
        img = np.array([0.86, 0.76, 0.52]) * (0.88 + 0.18 * fine)
    elif name == "sky":
        img = np.array([0.35, 0.6, 0.95]) * (1 - rows) + np.array([0.7, 0.85, 1.0]) * rows
        clouds = np.clip((coarse - 0.6) * 3.0, 0, 1)
        img = img * (1 - clouds) + clouds * 0.97
    else:  # water
        ripples = 0.5 + 0.5 * np.sin(rows * 40 + 6 * coarse)
        img = np.array([0.05, 0.22, 0.42]) * (0.8 + 0.35 * ripples * fine + 0.2 * fine)
    return np.clip(img, 0, 1)


def _unit_area(shape: str) -> float:
    """Area of the toy-world shape of half-extent 1."""
    if shape == "circle":
        return float(np.pi)
    v = scenes._shape_vertices(shape)
    return float(abs(np.dot(v[:, 0], np.roll(v[:, 1], -1)) - np.dot(v[:, 1], np.roll(v[:, 0], -1))) / 2)


def _check_tracked_inputs(n_frames, height, width, shape, colour, texture, background, size,
                          supersample, occluders) -> None:
    if n_frames < 1:
        raise InputError(_NODE, "n_frames", f"is {n_frames}", ">= 1")
    if height < 1 or width < 1:
        raise InputError(_NODE, "height/width", f"is {height}x{width}", "both >= 1")
    for name, value, allowed in (("shape", shape, scenes.SHAPES), ("colour", colour, list(scenes.COLOURS)),
                                 ("texture", texture, scenes.TEXTURES),
                                 ("background", background, scenes.BACKGROUNDS)):
        if value not in allowed:
            raise InputError(_NODE, name, f"is {value!r}", ", ".join(allowed))
    if not size > 0:
        raise InputError(_NODE, "size", f"is {size}", "> 0 (half-extent, fraction of the shorter side)")
    if supersample < 1:
        raise InputError(_NODE, "supersample", f"is {supersample}", ">= 1")
    for o in occluders:
        x0, y0, x1, y1 = o.box
        if not (x1 > x0 and y1 > y0):
            raise InputError(_NODE, "occluders", f"has box {o.box}", "(x0, y0, x1, y1) with x1 > x0, y1 > y0")


def _default_track(n_frames: int, height: int, width: int) -> Track:
    """A gentle arc across the middle of the frame (not constant velocity)."""
    last = max(1, n_frames - 1)
    return keyframe_track([(0, (0.3 * width, 0.62 * height)), (last / 2, (0.5 * width, 0.4 * height)),
                           (last, (0.7 * width, 0.58 * height))])


def _occluder_cover(occluders, t, xs, ys) -> tuple[np.ndarray, tuple | None]:
    """Occluder coverage at sample points and the front occluder's colour per point."""
    inside = np.zeros(np.broadcast(xs, ys).shape, bool)
    colour = np.zeros(inside.shape + (3,))
    for o in occluders:
        box = o.box_at(t)
        if box is None:
            continue
        hit = (xs >= box[0]) & (xs < box[2]) & (ys >= box[1]) & (ys < box[3])
        colour[hit] = o.colour  # later occluders are in front
        inside |= hit
    return inside, colour


def _render_tracked_frame(obj, t, cam, occluders, background, bg_seed, height, width, ss):
    """One frame at ``ss``² samples per pixel: colour (H, W, 3), visible, full
    and occluder coverage (H, W) each; ``cam`` = (ox, oy, zoom) of frame t."""
    short = min(height, width)
    xs = (np.arange(width * ss) + 0.5) / ss
    ys = (np.arange(height * ss) + 0.5) / ss
    px, py = np.meshgrid(xs, ys, indexing="xy")
    inside = scenes._coverage(obj, px / short, py / short, width / short, height / short)
    dark = scenes._texture(obj, px / short, py / short, width / short, height / short)
    fill = np.array(scenes.COLOURS[obj.colour]) * (1 - 0.55 * dark[..., None])
    ox, oy, z = cam
    wx = width / 2 + (px - width / 2 - ox) / z
    wy = height / 2 + (py - height / 2 - oy) / z
    bg = background_colour(background, wx, wy, bg_seed, height)
    occ, occ_colour = _occluder_cover(occluders, t, px, py)
    img = np.where(occ[..., None], occ_colour, np.where(inside[..., None], fill, bg))

    def down(a):
        return a.reshape(height, ss, width, ss, *a.shape[2:]).mean((1, 3))
    return down(img), down((inside & ~occ).astype(float)), down(inside.astype(float)), down(occ.astype(float))


def make_tracked_clip(n_frames: int = 8, height: int = 64, width: int = 64, seed: int = 0, *,
                      track: Track | Sequence | None = None,
                      pan: tuple[float, float] = (-1.0, 0.0), zoom: float = 1.0,
                      camera: Camera | None = None,
                      shape: str = "circle", colour: str = "red", texture: str = "plain",
                      background: str = "grass", size: float = 0.2, angle: float = 0.0,
                      spin: float = 0.0, occluders: Sequence[Occluder] = (),
                      supersample: int = 4) -> TrackedClip:
    """A toy clip with exact ground truth for tracking, atlas and stylisation tests.

    - ``track``: the object centre (x, y) in pixels as a function of the frame
      (``linear_track``, ``keyframe_track`` or any callable), or a keyframe list
      ``[(frame, (x, y)), ...]``; default a smooth arc across the frame.
    - Camera: content pans ``pan`` pixels per frame and zooms by ``zoom`` per
      frame (zoom(t) = zoom**t, about the frame centre), or ``camera(t) ->
      (ox, oy, z)`` for any other move.
    - The object is a toy-world ``shape``/``colour``/``texture`` of half-extent
      ``size`` × the shorter side, rotated ``angle + spin·t`` radians; it may
      leave the frame (its track is not clamped).
    - ``occluders`` are drawn in front of the object and the background.
    - ``seed`` picks the background; nothing else is random.

    Returns a ``TrackedClip``: frames (N, 3, H, W) sRGB, ``masks`` the visible
    coverage, ``full_masks`` ignoring occluders, ``centres``, UV maps and the
    camera per frame. Centres are the shape's frame origin, which is also
    the mask centroid for circles and squares (not triangles or stars)."""
    _check_tracked_inputs(n_frames, height, width, shape, colour, texture, background, size,
                          supersample, occluders)
    if track is None:
        track = _default_track(n_frames, height, width)
    elif not callable(track):
        track = keyframe_track(track)
    if camera is None:
        camera = lambda t: (pan[0] * t, pan[1] * t, zoom ** t)  # noqa: E731
    short = min(height, width)
    bg_seed = int(np.random.default_rng(seed).integers(2 ** 31))
    xs, ys = np.arange(width) + 0.5, np.arange(height) + 0.5
    px, py = np.meshgrid(xs, ys, indexing="xy")
    out: dict[str, list] = {k: [] for k in ("frames", "masks", "full", "occ", "labels", "uvo", "uvb",
                                            "centres", "offsets", "zooms", "angles")}
    for t in range(n_frames):
        cx, cy = track(float(t))
        ox, oy, z = (float(v) for v in camera(float(t)))
        if not z > 0:
            raise InputError(_NODE, "zoom/camera", f"gives zoom {z} at frame {t}", "> 0")
        a = angle + spin * t
        obj = scenes.ToyObject(shape, colour, texture, cx / width, cy / height, size, angle=a)
        img, vis, full, occ = _render_tracked_frame(obj, t, (ox, oy, z), occluders,
                                                    background, bg_seed, height, width, supersample)
        u, v = scenes._object_local(obj, px / short, py / short, width / short, height / short)
        centre_in = scenes._coverage(obj, px / short, py / short, width / short, height / short)
        centre_occ, _ = _occluder_cover(occluders, t, px, py)
        out["labels"].append(np.where(centre_occ, 2, np.where(centre_in, 1, 0)).astype(np.uint8))
        out["uvo"].append(np.stack([u, v]))
        out["uvb"].append(np.stack([width / 2 + (px - width / 2 - ox) / z,
                                    height / 2 + (py - height / 2 - oy) / z]))
        for k, val in (("frames", img), ("masks", vis), ("full", full), ("occ", occ),
                       ("centres", (cx, cy)), ("offsets", (ox, oy)), ("zooms", z), ("angles", a)):
            out[k].append(val)

    def images(key, channels_last=False):
        arr = np.stack(out[key]).astype(np.float32)
        return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous() if channels_last \
            else torch.from_numpy(arr)
    area = _unit_area(shape) * (size * short) ** 2
    masks = images("masks")[:, None]
    return TrackedClip(
        frames=images("frames", channels_last=True), masks=masks,
        centres=np.array(out["centres"]), bg_offsets=np.array(out["offsets"]),
        full_masks=images("full")[:, None], occluder_masks=images("occ")[:, None],
        labels=torch.from_numpy(np.stack(out["labels"])),
        uv_object=images("uvo"), uv_background=images("uvb"),
        zooms=np.array(out["zooms"]), angles=np.array(out["angles"]),
        size_px=float(size * short), object_area=float(area),
        visible_fraction=masks.sum((1, 2, 3)).double().numpy() / area,
        background=background, background_seed=bg_seed)
