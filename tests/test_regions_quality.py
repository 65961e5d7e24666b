"""Learnable regions on the toy world: measured quality, with thresholds set
from measurements (see docs/regions.md for the numbers and margins).

(b) per-image mode: training the region network makes its chosen box cover
    the named object more often than the untrained network's choice;
(c) DINO anchors land on objects at 32 (the toy DDPM's size), 64 and 128 px,
    DINO seeing each image at its own working size (64 px);
plus a small end-to-end run with the real blended-diffusion editor.
The amortised network against the exhaustive search: tests/test_regions_amortised.py.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from livelayers.engine.regions import (RegionNetwork, box_iou, box_mask, dino_anchors,
                                       box_losses, box_proposals, box_sizes_for, clip_targets,
                                       learn_regions, recolour_editor, roi_features, train_anchor)
from livelayers.toyworld import scenes

SIZE = 64
# Thresholds from measurements on this machine (docs/regions.md), with margin.
# top-1 anchor on an object, DINO at its working size (64 px); measured (docs/regions.md):
# measured 0.925 / 0.95 / 0.90 (40 / 40 / 20 scenes); 32 px seen at 32 px (4 x 4 patches): 0.775
ANCHOR_RATE = {32: 0.85, 64: 0.85, 128: 0.80}
N_SCENES, STEPS = 24, 100  # x 2 network seeds = 48 trainings (test b)
# Measured (scene seeds 31337 (this test) / 7 / 1 / 2; 24 scenes x 2 network seeds each,
# docs/regions.md). Chosen box covers the object, before -> after training:
#   circles and squares  0.27 -> 0.86 / 0.29 -> 0.68 / 0.35 -> 0.76 / 0.25 -> 0.65
#   all shapes           0.25 -> 0.52 / 0.25 -> 0.40 / 0.29 -> 0.54 / 0.29 -> 0.31
# loss-optimal box picked after training: 0.94 / 0.77 / 0.90 / 0.85 (before ~0.27).
ROUND_GAIN = 0.25        # circles and squares; smallest measured gain 0.39
OPTIMAL_AFTER = 0.65


@pytest.fixture(scope="module")
def toy_dino(assets):
    from livelayers.engine.models.dino import load_dino
    return load_dino(f"local-dir:{assets / 'toy_dino'}", device="cpu")


def _render(scene, size=SIZE):
    img, masks = scenes.render_scene(scene, size)
    return torch.from_numpy(img).permute(2, 0, 1)[None], masks


def _bbox(mask: np.ndarray, thresh: float = 0.5) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(mask >= thresh)
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def anchor_hit_rate(dino, n: int, seed: int, size: int, view=None) -> float:
    """Fraction of held-out scenes (1-2 objects) whose top-1 anchor point lies
    on an object (object coverage >= 0.5 at the anchor pixel). ``view``: the
    size DINO sees (None = its working size; "image" = the image's own)."""
    rng = np.random.default_rng(seed)
    hits = 0
    for i in range(n):
        image, masks = _render(scenes.random_scene(rng, n_objects=1 + i % 2), size)
        x, y = dino_anchors(dino, image, 1, size=view).anchors[0].tolist()
        hits += masks.sum(0)[min(size - 1, int(y)), min(size - 1, int(x))] >= 0.5
    return hits / n


@pytest.mark.slow
def test_anchors_land_on_objects(toy_dino):
    """(c) At the toy DDPM's 32 px, 64 px and 128 px the anchors land on
    objects, because DINO sees every image at its working size and the
    anchors are mapped back; at 32 px seen as 4 x 4 patches they did not as
    often. Chance (object area) is ~17 %."""
    rates = {size: anchor_hit_rate(toy_dino, 40 if size < 128 else 20, seed=2024 + size, size=size)
             for size in (32, 64, 128)}
    own = anchor_hit_rate(toy_dino, 40, seed=2024 + 32, size=32, view="image")
    print(f"top-1 anchor on an object: {rates}; 32 px seen at 32 px: {own:.3f}")
    for size, rate in rates.items():
        assert rate >= ANCHOR_RATE[size], size
    assert rates[32] > own


def _box_choice_trial(dino, clip, scene, seeds, steps, sizes):
    """For one single-object scene, train region networks (one per seed) at an
    anchor on the object's centre with the default objective (exact per-box
    CLIP losses through the straight-through Gumbel-softmax). Returns per
    seed a dict: covers before / after (IoU(chosen box, object's bounding
    box) >= 0.5), the chosen indices, and the loss of the chosen edit before
    / after, with the best possible."""
    image, masks = _render(scene)
    obj = scene.objects[0]
    new = next(c for c in scenes.COLOURS if c != obj.colour and c != "white")
    prompt = f"a {new} {obj.shape}"
    bbox = _bbox(masks[0])
    centre = torch.tensor([[(bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2]])
    boxes = box_proposals(centre, sizes, (SIZE, SIZE))[0]
    covers = [box_iou(b.tolist(), bbox) >= 0.5 for b in boxes]
    editor = recolour_editor(prompt, colours=scenes.COLOURS)
    edits = torch.cat([editor(image, box_mask(b, (SIZE, SIZE))) for b in boxes])
    roi = roi_features(dino(image).feature_map(), boxes, (SIZE, SIZE))
    targets = clip_targets(clip, image, prompt, "a photo")
    loss = box_losses(clip, edits, targets)                   # (M,) exact, one CLIP pass
    best = int(loss.argmin())
    out = []
    for s in seeds:
        torch.manual_seed(s)
        net = RegionNetwork(roi.shape[1], len(sizes))
        with torch.no_grad():
            before = int(net(roi).argmax())
        train_anchor(net, roi, edits, clip, targets, steps, 3e-3, torch.Generator().manual_seed(s),
                     box_loss=loss)
        with torch.no_grad():
            after = int(net(roi).argmax())
        out.append(dict(cover_before=covers[before], cover_after=covers[after], before=before,
                        after=after, loss_before=float(loss[before]), loss_after=float(loss[after]),
                        loss_best=float(loss[best]), optimal_before=before == best,
                        optimal_after=after == best, cover_best=covers[best], shape=obj.shape))
    return out


@pytest.mark.slow
def test_training_improves_box_choice(toy_dino, toy_clip, one_thread):
    """(b) Over held-out scenes and network seeds, the trained network's box
    covers the named object more often than the untrained network's, has a
    lower loss and is the loss-optimal box most of the time. The gain is
    asserted on circles and squares, whose box edit is the prompt's object;
    for stars and triangles the recoloured box is a coloured square around
    the shape, and the toy CLIP's loss prefers the smallest box (the
    loss-optimal box covers them ~0.1 of the time; docs/regions.md)."""
    rng = np.random.default_rng(31337)
    sizes = box_sizes_for(7)
    res = []
    for _ in range(N_SCENES):
        res += _box_choice_trial(toy_dino, toy_clip, scenes.random_scene(rng, 1), seeds=(0, 1),
                                 steps=STEPS, sizes=sizes)
    mean = lambda key, rs=res: float(np.mean([r[key] for r in rs]))  # noqa: E731
    full = [r for r in res if r["shape"] in ("circle", "square")]  # box edit keeps the shape
    print(f"covers object: before {mean('cover_before'):.3f} after {mean('cover_after'):.3f} "
          f"loss-optimal box {mean('cover_best'):.3f}; circles/squares ({len(full)}): before "
          f"{mean('cover_before', full):.3f} after {mean('cover_after', full):.3f}; loss of the choice: "
          f"before {mean('loss_before'):.3f} after {mean('loss_after'):.3f} best {mean('loss_best'):.3f}; "
          f"optimal picked: before {mean('optimal_before'):.2f} after {mean('optimal_after'):.2f}")
    assert len(full) >= 10
    assert mean("cover_after", full) >= mean("cover_before", full) + ROUND_GAIN
    assert mean("cover_after") > mean("cover_before")   # 0.25 -> 0.52 on these scenes
    assert mean("optimal_after") >= OPTIMAL_AFTER
    assert mean("loss_after") < mean("loss_before")


@pytest.mark.slow
def test_end_to_end_with_blended_diffusion(toy_dino, toy_clip, assets):
    """A small run with the real pixel blended-diffusion editor on the toy
    DDPM (32 px): the edit stays inside the chosen box and changes it."""
    if not (assets / "toy_ddpm").is_dir():
        pytest.skip("toy DDPM not built (toyworld/train_ddpm.py)")
    from livelayers.engine.models.diffusion import load_diffusion
    from livelayers.engine.regions import diffusion_editor
    ddpm = load_diffusion(str(assets / "toy_ddpm"), kind="pixel", device="cpu")
    size = ddpm.sample_size
    scene = scenes.random_scene(np.random.default_rng(5), 1, background="grass")
    image, masks = _render(scene, size)
    prompt = "a red circle"
    editor = diffusion_editor(ddpm, toy_clip, prompt, steps=20, samples=2, views=2, seed=0)
    r = learn_regions(toy_dino, toy_clip, editor, image, prompt, K=1, M=2, box_sizes=(0.4, 0.6),
                      mode="per-image", steps=5, seed=0)
    assert torch.isfinite(r.image).all()
    outside = (1 - r.mask)
    assert torch.allclose(r.image * outside, image * outside, atol=1e-4)
    inside = ((r.image - image).abs() * r.mask).sum() / r.mask.sum() / 3
    assert inside > 0.02  # the box was really edited
