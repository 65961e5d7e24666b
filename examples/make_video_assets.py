"""Make the Text2LIVE video examples' plate (examples/text2live_video*.json):

* examples/assets/toy_video/frame.####.png — 8 frames, 96×64: a checkered
  red circle moving (2.5, 0.5) px per frame over grass panning 1 px per
  frame (toyworld.clips.make_toy_clip);
* examples/assets/toy_video/mask.####.png  — the circle's masks in the PNG
  alpha (LL_LoadImage's ``alpha`` output), for graphs that decompose with
  masks instead of ``object_text``.

    python examples/make_video_assets.py        # a second
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import OpenImageIO as oiio

from livelayers.toyworld.clips import make_toy_clip

HERE = Path(__file__).parent
OUT = HERE / "assets" / "toy_video"
# The clip of tests/test_text2live_video_quality.py (docs/video.md): the toy
# CLIP tells a blue from a red circle of this size in these frames.
CLIP = dict(n_frames=8, height=64, width=96, seed=0, shape="circle", colour="red",
            texture="checkered", velocity=(2.5, 0.5), size=0.16)


def toy_video():
    """The example clip (``ToyClip``: frames, masks, centres, background offsets)."""
    return make_toy_clip(**CLIP)


def write_png(path: Path, pixels: np.ndarray) -> None:
    """(H, W, C) float in [0, 1] → 8-bit PNG (straight alpha, as stored)."""
    spec = oiio.ImageSpec(pixels.shape[1], pixels.shape[0], pixels.shape[2], "uint8")
    spec.attribute("oiio:UnassociatedAlpha", 1)
    buf = oiio.ImageBuf(spec)
    buf.set_pixels(oiio.ROI(), np.ascontiguousarray(pixels.astype(np.float32)))
    if not buf.write(str(path), "uint8"):
        raise RuntimeError(f"could not write {path}: {buf.geterror()}")


def main(out: Path = OUT) -> None:
    out.mkdir(parents=True, exist_ok=True)
    clip = toy_video()
    for i in range(clip.frames.shape[0]):
        rgb = clip.frames[i].permute(1, 2, 0).numpy()
        write_png(out / f"frame.{i + 1:04d}.png", rgb)
        m = clip.masks[i, 0].numpy()[..., None]
        write_png(out / f"mask.{i + 1:04d}.png", np.concatenate([np.ones_like(rgb), m], -1))
    print(f"wrote {clip.frames.shape[0]} frames + masks to {out}")


if __name__ == "__main__":
    main()
