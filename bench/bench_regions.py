"""Learnable Regions on the toy models (CPU): quality, editor runs and seconds per image, per mode.

    nice -n 10 python bench/bench_regions.py [--images 120] [--time-images 3] [--sizes 32 64 128]

Table 1, per image size: how often the chosen box covers the named object
(held-out toy tasks: recolour one object of a 1-2 object scene, prompt
"a <new colour> <shape>", source prompt "a <old colour> <shape>"; seeds
101, 202, 303), for exhaustive, amortised r = 1 and 2 (the committed
toy-regions network), the fixed middle box (the middle size at every
anchor, then the same ranking: the no-network baseline at r = 1's editor
runs), random (one random box per anchor, then the same ranking) and a
random proposal; with the anchors' rates. Every proposal
of a task is edited once and the modes are read off the same table (an
amortised run edits a subset of the exhaustive run's proposals, with the
same deterministic editor), so the comparison is exact.

Table 2: seconds per image of real ``learn_regions`` runs in each mode
(and random = amortised with an untrained network), with the toy
recolour editor and with the toy SD editor (blended latent diffusion in the
box on tests/assets/toy_sd), and the editor runs counted.

Table 3: the parts (DINO forward, RoI-align, edits, CLIP scoring, network).
Timings only; no assertions.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "tests" / "assets"
sys.path.insert(0, str(ROOT / "bench"))
from _timing import best_of, check_size, row  # noqa: E402


def quality_table(dino, clip, net, sizes, n: int, seeds) -> None:
    from livelayers.toyworld.train_regions import build_tables, evaluate_tables
    tables = {(size, seed): build_tables(dino, clip, n, seed, (size,), (1.0,)) for size in sizes for seed in seeds}
    for rank in ("score", "loss"):
        print(f"\nChosen box covers the named object (>= 80 % of it inside, box <= 4x its bounding box; "
              f"'IoU>=.5' the stricter measure), rank = {rank}, {n} tasks x {len(seeds)} seeds per size")
        print(f"{'size':>6} {'mode':<18}{'covers':>8}{'per seed':>18}{'IoU>=.5':>9}{'runs':>6}{'/ exh':>7}")
        for size in sizes:
            per_seed = [evaluate_tables(tables[size, s], net, rank=rank) for s in seeds]
            tight = [evaluate_tables(tables[size, s], net, rank=rank, key="tight") for s in seeds]
            ex = np.mean([r["exhaustive"]["hit"] for r in per_seed])
            for name in ("exhaustive", "amortised r=1", "amortised r=2", "fixed middle box", "random",
                         "random proposal"):
                hits = [r[name]["hit"] for r in per_seed]
                runs = np.mean([r[name]["editor_runs"] for r in per_seed])
                print(f"{size:>6} {name:<18}{np.mean(hits):>8.3f}{' '.join(f'{h:.2f}' for h in hits):>18}"
                      f"{np.mean([r[name]['hit'] for r in tight]):>9.3f}{runs:>6.1f}{np.mean(hits) / max(ex, 1e-9):>7.2f}")
            on = np.mean([r["anchors"]["top1_on_object"] for r in per_seed])
            named = np.mean([r["anchors"]["named_object_has_anchor"] for r in per_seed])
            print(f"{size:>6} anchors: top-1 on an object {on:.3f}, the named object has an anchor {named:.3f}")


RUNS = ("exhaustive", "amortised r=1", "amortised r=2", "random (untrained net)", "per-image (30 steps)")


def measure_timing(dino, clip, model, sizes, n: int, sd_steps: int, modes=RUNS,
                   sd: bool = True) -> tuple[list[str], dict]:
    """(editor names, {(size, editor, mode): (s per image, editor runs per image)
    or None where not timed}) of real ``learn_regions`` runs on ``n`` tasks per size."""
    from livelayers.engine.regions import AmortisedRegionNetwork, RegionModel, learn_regions
    from livelayers.toyworld.train_regions import BOX_SIZES, K_ANCHORS, toy_editor, toy_task
    torch.manual_seed(0)
    untrained = RegionModel(AmortisedRegionNetwork(model.feature_dim, model.text_dim).eval(), BOX_SIZES)
    runs = {"exhaustive": dict(mode="exhaustive"),
            "amortised r=1": dict(mode="amortised", proposals_per_anchor=1, region_model=model),
            "amortised r=2": dict(mode="amortised", proposals_per_anchor=2, region_model=model),
            "random (untrained net)": dict(mode="amortised", proposals_per_anchor=1, region_model=untrained),
            "per-image (30 steps)": dict(mode="per-image", proposals_per_anchor=0, steps=30)}
    runs = {name: runs[name] for name in modes}
    editors = {"recolour": lambda task, size: toy_editor(task.prompt)}
    sd_handle = None
    if sd and (ASSETS / "toy_sd").is_dir():
        from livelayers.engine.models.diffusion import load_diffusion
        from livelayers.engine.regions import diffusion_editor
        sd_handle = load_diffusion(str(ASSETS / "toy_sd"), device="cpu", offline=True)
        editors[f"toy SD ({sd_steps} steps)"] = lambda task, size: diffusion_editor(
            sd_handle, clip, task.prompt, steps=sd_steps, samples=1, seed=0)
    found = {}
    for size in sizes:
        rng = np.random.default_rng(4040 + size)
        tasks = [toy_task(rng, size, 1 + i % 2) for i in range(n)]
        for ed_name, make in editors.items():
            if ed_name != "recolour" and size % sd_handle.pixel_multiple:
                continue
            for name, kw in runs.items():
                if ed_name != "recolour" and name.startswith("per-image"):
                    found[size, ed_name, name] = None  # = exhaustive's K·M edits + the training steps
                    continue
                total, count = 0.0, 0
                for task in tasks:
                    res = {}

                    def go(task=task, res=res):
                        res["r"] = learn_regions(dino, clip, make(task, size), task.image, task.prompt,
                                                 K=K_ANCHORS, box_sizes=BOX_SIZES,
                                                 source_prompt=task.source_prompt, **kw)
                    total += best_of(go, 1, warmup=False)
                    count += res["r"].editor_runs
                found[size, ed_name, name] = (total / n, count / n)
    return list(editors), found


def timing_table(dino, clip, model, sizes, n: int, sd_steps: int) -> None:
    from livelayers.toyworld.train_regions import BOX_SIZES, K_ANCHORS
    editors, found = measure_timing(dino, clip, model, sizes, n, sd_steps)
    print(f"\nSeconds per image (learn_regions, K = {K_ANCHORS}, M = {len(BOX_SIZES)}, {n} images; "
          f"editor runs per image)")
    print(f"{'size':>6} {'editor':<18}" + "".join(f"{name:>24}" for name in RUNS))
    for size in sizes:
        for ed_name in editors:
            if (size, ed_name, RUNS[0]) not in found:
                continue
            cells = []
            for name in RUNS:
                got = found[size, ed_name, name]
                cells.append(f"{'not timed':>24}" if got is None else f"{got[0]:>15.3f}s ({got[1]:>4.1f})")
            print(f"{size:>6} {ed_name:<18}" + "".join(cells))


def rows(size: str) -> list[dict]:
    """The table rows of ``python -m livelayers bench``: seconds per image of
    ``learn_regions``, amortised (ours) against exhaustive (the reference: the
    paper's exhaustive search, every proposal edited). quick: 32 px, 2 images,
    recolour editor and toy SD at 4 steps; reference: 32/64/128 px, 3 images,
    toy SD at 20 steps, as docs/regions.md (the quality table is not a timing:
    run the script for it)."""
    quick = check_size(size) == "quick"
    sizes, n, sd_steps = ([32], 2, 4) if quick else ([32, 64, 128], 3, 20)
    modes = RUNS[:2] if quick else RUNS[:3]
    from livelayers.engine.regions import load_region_model
    from livelayers.toyworld.train_regions import load_toy_models
    dino, clip = load_toy_models()
    model = load_region_model("toy-regions")
    editors, found = measure_timing(dino, clip, model, sizes, n, sd_steps, modes)
    out = []
    for (px, ed_name, mode), got in found.items():
        if mode == "exhaustive" or got is None:
            continue
        ref = found[px, ed_name, "exhaustive"]
        out.append(row("regions", f"learn_regions {px} px, {ed_name} editor, {mode} vs exhaustive",
                       "s/image", got[0], ref[0],
                       f"editor runs {got[1]:.0f} vs {ref[1]:.0f}, mean of {n} images"))
    return out


def parts_table(dino, clip, model, size: int, repeats: int) -> None:
    from livelayers.engine.regions import (box_inputs, box_mask, box_proposals, clip_targets,
                                           dino_anchors, losses_and_scores, roi_features)
    from livelayers.toyworld.train_regions import BOX_SIZES, toy_editor, toy_task
    task = toy_task(np.random.default_rng(0), size, 2)
    image = task.image
    found = dino_anchors(dino, image, 3)
    boxes = box_proposals(found.anchors, BOX_SIZES, (size, size))
    roi = torch.stack([roi_features(found.feature_map, b, (size, size)) for b in boxes])
    text = clip.encode_text([task.prompt])
    geom = box_inputs(boxes, BOX_SIZES, (size, size), found.feature_map, found.saliency, found.anchors)
    edit = toy_editor(task.prompt)
    mask = box_mask(boxes[0, 3], (size, size))
    edits = torch.cat([edit(image, box_mask(b, (size, size))) for b in boxes.view(-1, 4)])
    targets = clip_targets(clip, image, task.prompt, task.source_prompt)
    rows = {
        f"DINO anchors (view {found.view_hw[0]}px)": best_of(lambda: dino_anchors(dino, image, 3), repeats),
        "box inputs (geometry + DINO cues)": best_of(lambda: box_inputs(
            boxes, BOX_SIZES, (size, size), found.feature_map, found.saliency, found.anchors), repeats),
        "RoI-align (K x M boxes)": best_of(lambda: [roi_features(found.feature_map, b, (size, size))
                                                   for b in boxes], repeats),
        "amortised network (K x M logits)": best_of(lambda: model.network(roi, text, geom), repeats),
        "edit: recolour (foreground)": best_of(lambda: edit(image, mask), repeats),
        f"CLIP L and S of {edits.shape[0]} edits (one pass)": best_of(
            lambda: losses_and_scores(clip, edits, targets), repeats),
    }
    print(f"\nParts, {size}px")
    for name, t in rows.items():
        print(f"{name:<44}{t:>10.4f} s")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--images", type=int, default=120, help="held-out tasks per size and seed (table 1)")
    ap.add_argument("--time-images", type=int, default=3, help="images timed per size (table 2; 0 = skip)")
    ap.add_argument("--sd-steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-quality", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from livelayers.engine.regions import load_region_model
    from livelayers.toyworld.train_regions import EVAL_SEEDS, load_toy_models
    dino, clip = load_toy_models()
    model = load_region_model("toy-regions")
    if not args.skip_quality:
        quality_table(dino, clip, model.network, args.sizes, args.images, EVAL_SEEDS)
    if args.time_images:
        timing_table(dino, clip, model, args.sizes, args.time_images, args.sd_steps)
    parts_table(dino, clip, model, 64, args.repeats)


if __name__ == "__main__":
    main()
