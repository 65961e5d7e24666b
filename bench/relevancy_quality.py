"""Where does relevancy point? Peak-inside rates on held-out toy-world scenes,
and the time per map, for each block choice and kind of text.

    python bench/relevancy_quality.py                       # toy CLIP, 48 scenes
    python bench/relevancy_quality.py --scenes 100 --size 128

For each two-object scene (random_scene(rng, 2, distinct=True)) one object
is named (alternating 0/1) and a hit counts when the map's peak pixel lies
inside it (coverage > 0.5). Prints a table and the all/last ratios.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from livelayers.engine.models.clip import load_clip
from livelayers.engine.relevancy import relevancy_map
from livelayers.toyworld import scenes

TEXTS = {
    "colour": lambda o: f"a {o.colour} shape",
    "shape": lambda o: f"a {o.shape}",
    "colour+shape": lambda o: f"a {o.colour} {o.shape}",
    "texture": lambda o: f"a {o.texture} shape" if o.texture != "plain" else None,
}


def measure(clip, blocks, n: int, size: int, seed: int) -> tuple[dict, float]:
    rng = np.random.default_rng(seed)
    data = []
    for _ in range(n):
        scene = scenes.random_scene(rng, 2, distinct=True)
        img, masks = scenes.render_scene(scene, size)
        data.append((scene, torch.from_numpy(img).permute(2, 0, 1)[None], masks))
    rates, seconds, calls = {}, 0.0, 0
    for kind, make in TEXTS.items():
        hits = total = 0
        for i, (scene, img, masks) in enumerate(data):
            k = i % 2
            text = make(scene.objects[k])
            if text is None:
                continue
            t0 = time.perf_counter()
            m = relevancy_map(clip, img, text, blocks=blocks)[0, 0].numpy()
            seconds += time.perf_counter() - t0
            calls += 1
            peak = np.unravel_index(m.argmax(), m.shape)
            hits += masks[k][peak] > 0.5
            total += 1
        rates[kind] = (hits / total if total else float("nan"), total)
    return rates, seconds / max(calls, 1)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default=str(Path(__file__).resolve().parents[1] / "tests/assets/toy_clip"))
    ap.add_argument("--scenes", type=int, default=48)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=90210)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    clip = load_clip(args.clip, device="cpu")
    print(f"model {args.clip}  {args.scenes} scenes at {args.size} px\n")
    print(f"{'blocks':8s} {'text':14s} {'peak inside':>12s} {'n':>4s}")
    results = {}
    for blocks in ("last", "all"):
        rates, sec = measure(clip, blocks, args.scenes, args.size, args.seed)
        results[blocks] = (rates, sec)
        for kind, (rate, n) in rates.items():
            print(f"{blocks:8s} {kind:14s} {rate:12.3f} {n:4d}")
        print(f"{blocks:8s} {'time/map':14s} {sec * 1000:10.1f}ms")
    print("\nratios all/last:")
    for kind in TEXTS:
        a, b = results["all"][0][kind][0], results["last"][0][kind][0]
        print(f"  {kind:14s} rate x{a / b if b else float('inf'):.2f}")
    print(f"  {'time/map':14s} x{results['all'][1] / results['last'][1]:.2f}")


if __name__ == "__main__":
    main()
