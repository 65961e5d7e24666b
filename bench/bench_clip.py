"""Timings of the CLIP handle: open_clip's encode_image vs our manual
image_forward (with and without attention maps), and a relevancy map.

    python bench/bench_clip.py [--clip tests/assets/toy_clip] [--batch 8] [--repeat 5]

Prints a table and ratios relative to encode_image. Numbers depend on the
machine; they are never asserted in tests.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from livelayers.engine.models.clip import load_clip
from livelayers.engine.relevancy import relevancy_map

from _timing import best_of, check_size, row  # bench/_timing.py


DEFAULT_CLIP = str(Path(__file__).resolve().parents[1] / "tests/assets/toy_clip")


def measure(clip_spec: str, batch: int, repeat: int, device: str = "cpu"):
    """(clip handle, [(what, best seconds per batch)]) for the bench's passes."""
    clip = load_clip(clip_spec, device=device)
    x = torch.rand(batch, 3, clip.image_size, clip.image_size, device=clip.device)
    every = tuple(range(clip.n_blocks))

    def enc():
        with torch.no_grad():
            clip.encode_image(x)

    def fwd():
        with torch.no_grad():
            clip.image_forward(x)

    def fwd_attn():
        with torch.no_grad():
            clip.image_forward(x, tokens_from=every, attention_from=every)

    def enc_grad():
        xi = x.clone().requires_grad_(True)
        clip.encode_image(xi).sum().backward()

    def rel_last():
        relevancy_map(clip, x, "a red circle", blocks="last", batch_size=batch)

    def rel_all():
        relevancy_map(clip, x, "a red circle", blocks="all", batch_size=batch)

    passes = [("encode_image (no grad)", enc), ("image_forward (no grad)", fwd),
              ("image_forward + all tokens/attention", fwd_attn), ("encode_image + backward", enc_grad),
              ("relevancy blocks=last", rel_last), ("relevancy blocks=all", rel_all)]
    return clip, [(name, best_of(fn, repeat)) for name, fn in passes]


def rows(size: str) -> list[dict]:
    """The table rows of ``python -m livelayers bench`` (toy CLIP; quick: batch 2,
    best of 3; reference: batch 8, best of 5, as docs/models.md). The reference
    of our ``image_forward`` passes is open_clip's own ``encode_image``."""
    batch, repeat = (2, 3) if check_size(size) == "quick" else (8, 5)
    clip, times = measure(DEFAULT_CLIP, batch, repeat, "cpu")
    t = dict(times)
    where = f"toy CLIP {clip.image_size} px, batch {batch}"
    ref = "reference: open_clip's encode_image"
    return [row("clip", f"image_forward (no grad), {where}", "ms/batch", t["image_forward (no grad)"] * 1e3,
                t["encode_image (no grad)"] * 1e3, ref),
            row("clip", f"image_forward + all tokens/attention, {where}", "ms/batch",
                t["image_forward + all tokens/attention"] * 1e3, t["encode_image (no grad)"] * 1e3, ref),
            row("clip", f"encode_image + backward, {where}", "ms/batch", t["encode_image + backward"] * 1e3),
            row("clip", f"relevancy map blocks=last, {where}", "ms/batch", t["relevancy blocks=last"] * 1e3),
            row("clip", f"relevancy map blocks=all, {where}", "ms/batch", t["relevancy blocks=all"] * 1e3)]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default=DEFAULT_CLIP)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    clip, times = measure(args.clip, args.batch, args.repeat, args.device)
    print(f"{clip!r}\nbatch {args.batch}, {args.threads} thread(s), best of {args.repeat}\n")
    base = None
    print(f"{'what':40s} {'ms/batch':>10s} {'ratio':>7s}")
    for name, t in times:
        base = base or t
        print(f"{name:40s} {t * 1000:10.1f} {t / base:7.2f}")


if __name__ == "__main__":
    main()
