"""Make the atlas example's assets (examples/atlas.json):

* examples/assets/toy_clip/frame.####.png — 16 frames, 96×64, a checkered red
  square moving over panning grass (toyworld.clips);
* examples/assets/toy_clip/mask.####.png  — its object masks (in the alpha
  channel, so LL_LoadImage's ``alpha`` output is the mask);
* examples/assets/atlas_paint.png         — an RGBA paint on the foreground
  atlas (a yellow ring with a blue dot on the object's centre), at the atlas
  resolution the example extracts (256), made by decomposing the clip with
  the example's settings.

    python examples/make_atlas_assets.py        # a few minutes on a CPU
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import torch

from livelayers.engine.atlas import AtlasSettings, decompose
from livelayers.engine.atlas.products import atlas_grid, frame_point_to_atlas
from livelayers.toyworld.clips import make_toy_clip

HERE = Path(__file__).parent
CLIP_DIR = HERE / "assets" / "toy_clip"
RESOLUTION = 256   # LL_AtlasExtract's resolution in examples/atlas.json
STEPS = 200        # LL_AtlasDecompose's steps in examples/atlas.json


def write_png(path: Path, pixels: np.ndarray) -> None:
    """(H, W, C) float in [0, 1] → 8-bit PNG."""
    buf = oiio.ImageBuf(np.ascontiguousarray(pixels.astype(np.float32)))
    if not buf.write(str(path), "uint8"):
        raise RuntimeError(f"could not write {path}: {buf.geterror()}")


def main() -> None:
    CLIP_DIR.mkdir(parents=True, exist_ok=True)
    clip = make_toy_clip(n_frames=16, height=64, width=96, seed=7, velocity=(2.0, 0.5), texture="checkered")
    for i in range(16):
        rgb = clip.frames[i].permute(1, 2, 0).numpy()
        write_png(CLIP_DIR / f"frame.{i + 1:04d}.png", rgb)
        m = clip.masks[i, 0].numpy()[..., None]
        write_png(CLIP_DIR / f"mask.{i + 1:04d}.png", np.concatenate([np.ones_like(rgb), m], -1))
    # The paint must sit on the foreground atlas: decompose as the example does
    # (frames as the PNGs hold them) and paint where frame 1's object centre maps.
    frames = torch.round(clip.frames * 255) / 255
    masks = torch.round(clip.masks * 255) / 255
    atlas = decompose(frames, masks, AtlasSettings(steps=STEPS), seed=0, device="cpu")
    ha, wa, _ = atlas_grid(atlas, "fg", RESOLUTION)
    cx, cy = clip.centres[0]
    col, row, px = frame_point_to_atlas(atlas, 0, float(cx), float(cy), RESOLUTION)
    rows, cols = np.mgrid[0:ha, 0:wa]
    d = np.hypot(rows - row, cols - col) / px              # distance in frame pixels
    ring = np.clip(1.5 - np.abs(d - 8), 0, 1)
    dot = np.clip(3.5 - d, 0, 1)
    alpha = np.maximum(ring, dot)
    colour = np.where((dot > 0)[..., None], [0.1, 0.3, 1.0], [1.0, 0.9, 0.1])
    write_png(HERE / "assets" / "atlas_paint.png", np.concatenate([colour, alpha[..., None]], -1))
    print(f"wrote 16 frames + masks to {CLIP_DIR} and a {wa}x{ha} atlas paint")


if __name__ == "__main__":
    main()
