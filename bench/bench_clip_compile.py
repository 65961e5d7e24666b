"""Does torch.compile pay for Text2LIVE's CLIP side? One forward + backward
of the views to the input only (frozen weights, as the objective needs),
eager against ``torch.compile`` (inductor), fp32.

    python bench/bench_clip_compile.py [--clip random:ViT-B-32] [--views 33] [--threads 2]

``--clip``: ``random:<open_clip architecture>`` (random weights, the
reference benches' choice) or any ``load_clip`` spec (``toy-clip``, a
folder). 33 views is our Text2LIVE step's batch at the reference settings
(docs/performance.md). Prints one table: eager and compiled seconds (best of
``--repeat`` after a warm-up), the compile time (the first compiled call),
the ratio, and how far the compiled input gradient is from the eager one.
Timings only; nothing is asserted.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F


def image_encoder(spec: str):
    """(encode_image callable, image size) for ``spec``."""
    if spec.startswith("random:"):
        import open_clip
        torch.manual_seed(0)
        model = open_clip.create_model(spec[len("random:"):], pretrained=None).eval().requires_grad_(False)
        size = model.visual.image_size
        return model.encode_image, size[0] if isinstance(size, (tuple, list)) else size
    from livelayers.engine.models.clip import load_clip
    clip = load_clip(spec, device="cpu")
    return clip.encode_image, clip.image_size


def clip_side_step(encode, views: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """The CLIP side of one step: cosine loss of the views' embeddings to a
    text embedding, gradient to the views only (returned)."""
    x = views.clone().requires_grad_(True)
    f = F.normalize(encode(x), dim=-1)
    (1 - f @ text.T).mean().backward()
    return x.grad


def best_seconds(encode, views, text, repeat: int) -> tuple[float, torch.Tensor]:
    clip_side_step(encode, views, text)                       # warm-up
    times, grad = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        grad = clip_side_step(encode, views, text)
        times.append(time.perf_counter() - t0)
    return min(times), grad


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default="random:ViT-B-32")
    ap.add_argument("--views", type=int, default=33)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    encode, size = image_encoder(args.clip)
    gen = torch.Generator().manual_seed(0)
    views = torch.rand(args.views, 3, size, size, generator=gen)
    with torch.no_grad():
        dim = encode(views[:1]).shape[-1]
    text = F.normalize(torch.randn(1, dim, generator=gen), dim=-1)
    eager, g_eager = best_seconds(encode, views, text, args.repeat)
    compiled = torch.compile(encode)
    t0 = time.perf_counter()
    clip_side_step(compiled, views, text)
    compile_s = time.perf_counter() - t0
    fast, g_fast = best_seconds(compiled, views, text, args.repeat)
    diff = float((g_eager - g_fast).abs().max() / g_eager.abs().max().clamp_min(1e-12))
    print(f"CLIP side ({args.clip}, {args.views} views at {size} px, forward + backward to the input, "
          f"fp32, {args.threads} thread(s), torch {torch.__version__})")
    print(f"{'eager s':>10}{'compiled s':>12}{'compile s':>11}{'eager/compiled':>16}{'grad rel. diff':>16}")
    print(f"{eager:>10.3f}{fast:>12.3f}{compile_s:>11.1f}{eager / fast:>15.2f}x{diff:>16.1e}")


if __name__ == "__main__":
    main()
