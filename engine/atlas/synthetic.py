"""Toy clips with exactly known motion, for tests, the bench and the demo.

A textured toy-world object translates (constant velocity) over a textured
background that pans by whole pixels per frame. Ground truth comes with the
frames: the object's coverage mask per frame, its centre track and the
background offset per frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..toyworld import scenes


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
