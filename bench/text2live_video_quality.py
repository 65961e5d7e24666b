"""Text2LIVE video vs the paper's two baselines on the example clip: IoU,
outside change and flicker, per edit seed.

    nice -n 15 python bench/text2live_video_quality.py                 # seeds 0 1 2, ~6 min on 1 thread
    python bench/text2live_video_quality.py --seeds 0 --methods ours

The clip, the decomposition from text alone and every setting are those of
tests/test_text2live_video_quality.py (imported from it, so the two never
drift): 8 frames 96x64, a checkered red circle moving over panning grass,
decomposed from "red circle" (no masks), edited with "blue circle" / ROI
"red circle" by ours (LL_Text2LIVEVideo's engine call), the atlas baseline
(the image method on the atlas image) and the frames baseline (the image
method trained on all frames, applied per frame). Measures:
``engine.text2live.baselines.edit_measures``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import test_text2live_video_quality as Q  # noqa: E402  (the test's clip and settings)

from livelayers.engine.atlas import AtlasSettings, decompose  # noqa: E402
from livelayers.engine.atlas.measure import opacity_iou  # noqa: E402
from livelayers.engine.models.clip import load_clip  # noqa: E402
from livelayers.engine.text2live.baselines import METHODS, compare, track_flicker  # noqa: E402
from livelayers.toyworld.clips import make_toy_clip  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="edit seeds")
    ap.add_argument("--decompose-seed", type=int, default=0)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, metavar="METHOD",
                    help=f"any of: {', '.join(repr(m) for m in METHODS)}")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    handle = load_clip(f"local-dir:{ROOT / 'tests' / 'assets' / 'toy_clip'}", device="cpu")
    clip = make_toy_clip(**Q.CLIP)
    t0 = time.perf_counter()
    atlas = decompose(clip.frames, None, AtlasSettings(steps=Q.DECOMPOSE_STEPS), seed=args.decompose_seed,
                      device="cpu", object_text=Q.OBJECT_TEXT, clip=handle)
    print(f"decomposition from '{Q.OBJECT_TEXT}' alone: {Q.DECOMPOSE_STEPS} steps, "
          f"{time.perf_counter() - t0:.0f} s, opacity IoU {opacity_iou(atlas, clip.masks):.3f}")
    rows = []
    for seed in args.seeds:
        res = compare(handle, atlas, clip.frames, clip.masks, clip.centres, Q.PROMPT, Q.ROI, Q.VIDEO,
                      Q.IMAGE, seed=seed, methods=tuple(args.methods))
        rows += [(seed, name, r) for name, r in res.items()]
    print(f"'{Q.PROMPT}' (ROI '{Q.ROI}'), {Q.VIDEO.steps} steps, {Q.VIDEO.views} views, "
          f"{args.threads} thread(s)")
    print(f"{'method':<17}{'seed':>5}{'min IoU':>9}{'mean IoU':>10}{'max outside':>13}{'flicker':>10}{'s':>6}")
    for seed, name, r in rows:
        m = r.measures
        print(f"{name:<17}{seed:>5}{m.min_iou:>9.3f}{np.mean(m.iou):>10.3f}{m.max_outside:>13.4f}"
              f"{m.flicker:>10.4f}{r.seconds:>6.0f}")
    print(f"(the unedited plate: flicker {track_flicker(clip.frames, clip.masks, clip.centres):.4f}, "
          "the measure's floor for the plate's own texture)")
    by = {name: [r.measures for s, n, r in rows if n == name] for name in args.methods}
    if {"ours", "frames baseline"} <= set(by):
        ratio = [f.flicker / o.flicker for o, f in zip(by["ours"], by["frames baseline"])]
        print("flicker, frames baseline / ours: " + " ".join(f"{x:.2f}x" for x in ratio))
    if {"ours", "atlas baseline"} <= set(by):
        gap = [o.min_iou - a.min_iou for o, a in zip(by["ours"], by["atlas baseline"])]
        print("min IoU, ours - atlas baseline: " + " ".join(f"{x:+.3f}" for x in gap))
    return 0


if __name__ == "__main__":
    sys.exit(main())
