"""Stylisation bench: seconds per training step and where they go (CLIP
forward + backward, the atlas field on the crops, drawing the views), for a
few view counts, on a toy clip with the toy CLIP.

    nice -n 10 python bench/bench_stylise.py [--threads 1] [--repeat 5]

The clip is decomposed briefly first (the step cost does not depend on how
well); best-of-``repeat`` wall times with ``--threads`` torch threads.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import best_of, check_size, row  # noqa: E402

from livelayers.engine.atlas import AtlasSettings, decompose  # noqa: E402
from livelayers.engine.models.clip import load_clip  # noqa: E402
from livelayers.engine.stylise import StyliseSettings  # noqa: E402
from livelayers.engine.stylise import trainer as T  # noqa: E402
from livelayers.engine.stylise.views import sample_views  # noqa: E402
from livelayers.toyworld.clips import make_toy_clip  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TEXT = ("a blue circle", "blue")


VIEWS = ((1, 2), (2, 4), (2, 6))


def measure(views=VIEWS, repeat: int = 5) -> tuple[object, list[tuple]]:
    """(toy CLIP handle, [(n_global, n_local, step s, CLIP s, field s, views s)]),
    best-of-``repeat`` wall times on the briefly decomposed toy clip."""
    clip = make_toy_clip(n_frames=8, height=64, width=64, seed=0, shape="circle", texture="checkered")
    atlas = decompose(clip.frames, clip.masks, AtlasSettings(steps=20), seed=0, device="cpu")
    handle = load_clip(f"local-dir:{ROOT / 'tests' / 'assets' / 'toy_clip'}", device="cpu")
    dev = torch.device("cpu")
    out = []
    for n_g, n_l in views:
        s = StyliseSettings(n_global=n_g, n_local=n_l)
        crops = T.object_crops(atlas, s, dev)
        fields = T.stylised_fields(atlas, dev)
        gen = torch.Generator().manual_seed(0)

        def step():
            loss, _, _ = T.training_step(fields, crops, handle, TEXT, s, gen)
            loss.backward()

        x = torch.rand(s.batch_frames * (n_g + n_l), 3, handle.image_size, handle.image_size,
                       requires_grad=True)

        def clip_pass():
            handle.encode_image(x).sum().backward()

        def field():
            for t in range(s.batch_frames):
                T.render_crop(fields, crops, t)[0].sum().backward()

        obj = T.render_crop(fields, crops, 0)[1].detach()

        def views_():
            for t in range(s.batch_frames):
                sample_views(gen, obj, crops.background[0], crops.alpha[0], n_g, n_l, handle.image_size, s)

        out.append((n_g, n_l, *(best_of(f, repeat) for f in (step, clip_pass, field, views_))))
    return handle, out


def rows(size: str) -> list[dict]:
    """The table rows of ``python -m livelayers bench`` (quick: 1 + 2 views, best
    of 2; reference: the three view counts, best of 5, as docs/stylise.md). No
    reference design (the paper's code is not reproduced); the note splits the
    step into its parts."""
    views, repeat = (((1, 2),), 2) if check_size(size) == "quick" else (VIEWS, 5)
    handle, measured = measure(views, repeat)
    return [row("stylise", f"training step, {n_g} + {n_l} views/frame, toy clip 8x64², toy CLIP "
                f"{handle.image_size} px", "ms/step", t_step * 1e3,
                note=f"CLIP {t_clip * 1e3:.0f} ms, field {t_field * 1e3:.0f} ms, "
                     f"views {t_views * 1e3:.0f} ms")
            for n_g, n_l, t_step, t_clip, t_field, t_views in measured]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    handle, measured = measure(VIEWS, args.repeat)
    print(f"toy clip 8x64x64, toy CLIP {handle.image_size} px, {args.threads} thread(s), best of {args.repeat}")
    print(f"{'views/frame':>12} {'step ms':>9} {'CLIP ms':>9} {'field ms':>9} {'views ms':>9} {'CLIP share':>11}")
    for n_g, n_l, *times in measured:
        t_step, t_clip, t_field, t_views = (t * 1000 for t in times)
        print(f"{n_g:>5} + {n_l:<4} {t_step:9.1f} {t_clip:9.1f} {t_field:9.1f} {t_views:9.1f} "
              f"{t_clip / t_step:10.0%}")


if __name__ == "__main__":
    main()
