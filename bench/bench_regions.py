"""Timings of Learnable Regions' parts on the toy models (CPU).

    nice -n 10 python bench/bench_regions.py [--size 64] [--repeats 5]

Prints one table (seconds per call) and the cost of our scheme (edit every
proposal once and score it once with CLIP: K·M edits + K batched CLIP passes +
K·steps network-only steps) against re-editing the chosen box at every step
(K·steps edits + K·steps CLIP steps, what a per-step editor loop costs).
Also the region step of the first version (objective="image": CLIP
forward/backward on the blended edit every step). Timings only; no assertions.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "tests" / "assets"


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--K", type=int, default=3)
    ap.add_argument("--M", type=int, default=5)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--diffusion-steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from livelayers.engine.models.clip import load_clip
    from livelayers.engine.models.dino import load_dino
    from livelayers.engine.regions import (RegionNetwork, box_mask, box_proposals, box_sizes_for,
                                           box_losses, clip_targets, gumbel_softmax_st,
                                           recolour_editor, region_losses, roi_features)
    from livelayers.engine.toyworld import scenes

    clip = load_clip(f"local-dir:{ASSETS / 'toy_clip'}", device="cpu")
    dino = load_dino(f"local-dir:{ASSETS / 'toy_dino'}", device="cpu")
    sc = scenes.random_scene(np.random.default_rng(0), 1)
    img, _ = scenes.render_scene(sc, args.size)
    image = torch.from_numpy(img).permute(2, 0, 1)[None]
    prompt = f"a blue {sc.objects[0].shape}"
    H = W = args.size
    sizes = box_sizes_for(args.M)
    boxes = box_proposals(torch.tensor([[W / 2, H / 2]]), sizes, (H, W))[0]
    mask = box_mask(boxes[2], (H, W))

    rows = {}
    rows["DINO forward"] = timed(lambda: dino(image), args.repeats)
    out = dino(image)
    fmap = out.feature_map()
    rows["RoI-align (M boxes)"] = timed(lambda: roi_features(fmap, boxes, (H, W)), args.repeats)
    recolour = recolour_editor(prompt)
    rows["edit: recolour"] = timed(lambda: recolour(image, mask), args.repeats)
    if (ASSETS / "toy_ddpm").is_dir():
        from livelayers.engine.models.diffusion import load_diffusion
        from livelayers.engine.regions import diffusion_editor
        ddpm = load_diffusion(str(ASSETS / "toy_ddpm"), device="cpu")
        if ddpm.sample_size != args.size:
            small = torch.nn.functional.interpolate(image, size=ddpm.sample_size, mode="area")
            small_mask = box_mask(box_proposals(torch.tensor([[ddpm.sample_size / 2] * 2]), sizes,
                                                (ddpm.sample_size,) * 2)[0][2], (ddpm.sample_size,) * 2)
        else:
            small, small_mask = image, mask
        diff = diffusion_editor(ddpm, clip, prompt, steps=args.diffusion_steps, samples=2, views=4)
        rows[f"edit: blended diffusion ({args.diffusion_steps} steps, {ddpm.sample_size}px)"] = \
            timed(lambda: diff(small, small_mask), max(1, args.repeats // 2))

    edits = torch.cat([recolour(image, box_mask(b, (H, W))) for b in boxes])
    roi = roi_features(fmap, boxes, (H, W))
    targets = clip_targets(clip, image, prompt, "a photo")
    net = RegionNetwork(roi.shape[1], len(sizes))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)

    def image_step():
        y, _ = gumbel_softmax_st(net(roi), gen)
        loss = region_losses(clip, (y.view(-1, 1, 1, 1) * edits).sum(0, keepdim=True), targets)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()

    rows["CLIP scores of the M edits (one batch)"] = timed(lambda: box_losses(clip, edits, targets),
                                                          args.repeats)
    scores = box_losses(clip, edits, targets)

    def exact_step():
        y, _ = gumbel_softmax_st(net(roi), gen)
        loss = (y * scores).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()

    rows["region step, exact (Gumbel + network + Adam)"] = timed(exact_step, args.repeats * 4)
    rows["region step, image (Gumbel + CLIP fwd/bwd + Adam)"] = timed(image_step, args.repeats)

    print(f"\nLearnable Regions parts, {args.size}px, CPU threads={args.threads}")
    print(f"{'part':<52}{'s/call':>10}")
    for name, t in rows.items():
        print(f"{name:<52}{t:>10.4f}")
    t_exact = rows["region step, exact (Gumbel + network + Adam)"]
    t_image = rows["region step, image (Gumbel + CLIP fwd/bwd + Adam)"]
    t_score = rows["CLIP scores of the M edits (one batch)"]
    K, M, S = args.K, args.M, args.steps
    print(f"\nregion step, image / exact: {t_image / t_exact:.1f}x")
    print(f"\nTotals for K={K}, M={M}, steps={S} (editor time dominates with diffusion):")
    print(f"{'editor':<40}{'ours (exact)':>14}{'first (image)':>15}{'per-step edits':>16}"
          f"{'per-step/ours':>15}")
    for name, t in rows.items():
        if not name.startswith("edit:"):
            continue
        ours = K * M * t + K * t_score + K * S * t_exact
        first = K * M * t + K * S * t_image
        per_step = K * S * (t + t_image)
        print(f"{name[6:]:<40}{ours:>13.2f}s{first:>14.2f}s{per_step:>15.2f}s{per_step / ours:>15.2f}")


if __name__ == "__main__":
    main()
