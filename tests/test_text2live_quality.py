"""Text2LIVE on the toy world with the trained toy CLIP: the edit lands on the
right object, bootstrapping and sparsity matter, and the written EXR
composites back to the network's composite.

Scene: a red circle and a yellow square on grass, 96 px. Prompt "blue
circle", ROI "red circle". Measured (see docs/text2live.md): the thresholds
below sit well below / above the values we measured, with margin.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from livelayers.engine.text2live import GeneratorConfig, Text2LIVESettings, render, train_text2live
from livelayers.toyworld import scenes

SIZE = 96
STEPS = 80
GEN = GeneratorConfig(scales=4, channels_down=32, channels_up=32)
BLUE = torch.tensor(scenes.COLOURS["blue"])
RED = torch.tensor(scenes.COLOURS["red"])


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


TOY_SCENE = scenes.ToyScene("grass", (scenes.ToyObject("circle", "red", "plain", 0.32, 0.36, 0.2),
                                      scenes.ToyObject("square", "yellow", "plain", 0.7, 0.68, 0.17)),
                             seed=3)


def toy_scene(size: int = SIZE):
    """(1,3,H,W) image, (1,1,H,W) circle mask, (1,1,H,W) square mask."""
    img, masks = scenes.render_scene(TOY_SCENE, size)
    m = torch.from_numpy(masks)[:, None]
    return torch.from_numpy(img).permute(2, 0, 1)[None], m[:1], m[1:2]


def settings(**kw) -> Text2LIVESettings:
    base = dict(steps=STEPS, resolution=0, views=4, generator=GEN, relevancy_blocks="all",
                bootstrap_steps=STEPS, checkpoint_every=10_000)
    base.update(kw)
    return Text2LIVESettings(**base)


def away_from(mask: torch.Tensor) -> torch.Tensor:
    """(H,W) bool: pixels 2 px or more from ``mask`` (1,1,H,W), past its anti-aliased edge."""
    return ~(torch.nn.functional.max_pool2d(mask, 5, stride=1, padding=2)[0, 0] > 0.01)


def metrics(clip, image, circle, square=None, seed=0, text="blue circle", **kw) -> dict:
    """Train, render, and measure how well the edit sits on the circle."""
    r = train_text2live(clip, image, text, roi_text="red circle", settings=settings(**kw), seed=seed)
    out = render(r.generator, image)
    inside = circle[0, 0] > 0.5
    outside = away_from(circle)
    comp = out["composite"][0]
    matte = out["alpha"][0, 0] > 0.5
    iou = (matte & inside).sum().item() / max(1, (matte | inside).sum().item())
    if square is None:
        square = toy_scene(image.shape[-1])[2]
    sq = square[0, 0] > 0.5
    before = image[0][:, inside].mean(1)
    after = comp[:, inside].mean(1)
    return {
        "iou": iou,
        "outside_change": (comp - image[0]).abs()[:, outside].mean().item(),
        "dist_blue_before": (before - BLUE).norm().item(),
        "dist_blue_after": (after - BLUE).norm().item(),
        "after": after,
        "square_change": (comp - image[0]).abs()[:, sq].mean().item(),
        "alpha_outside": out["alpha"][0, 0][outside].mean().item(),
        "result": r, "out": out,
    }


@pytest.fixture(scope="module")
def edited(toy_clip):
    image, circle, square = toy_scene()
    return image, circle, square, metrics(toy_clip, image, circle, square)


@pytest.mark.slow
def test_colour_edit_changes_only_the_circle(edited):
    # measured (final toy CLIP, seeds 0/1/2): iou .958/.954/.961, outside .023/.021/.023,
    # square .018/.033/.016, distance to blue 1.09 -> .31/.31/.25
    image, circle, square, m = edited
    print({k: v for k, v in m.items() if k not in ("result", "out")})
    # the circle turns blue ...
    assert m["dist_blue_after"] < m["dist_blue_before"] - 0.5, m
    assert m["after"][2] > m["after"][0] + 0.2, m  # more blue than red now
    # ... the matte sits on the circle ...
    assert m["iou"] >= 0.8, m
    # ... and the rest of the image, the other object included, stays as it was
    assert m["outside_change"] < 0.04, m
    assert m["square_change"] < 0.06, m


@pytest.mark.slow
def test_without_bootstrap_the_edit_leaks(toy_clip, edited):
    """Ablation: without the relevancy bootstrap, alpha leaks outside the circle.

    Measured, full vs no bootstrap (final toy CLIP, seeds 0/1/2):
    alpha outside .076/.083/.075 vs .21/.29/.23; outside change .027/.024/.024
    vs .061/.075/.056; iou .92/.96/.95 vs .88/.53/.88 (the matte's core can
    still find the circle, so IoU alone is not a robust signal).
    Without sparsity the difference is small and NOT consistent across seeds
    in runs this short (alpha outside .094/.080/.093 vs full .076/.083/.075),
    so that ablation is reported in docs/text2live.md, not asserted.
    """
    image, circle, square, full = edited
    no_boot = metrics(toy_clip, image, circle, square, bootstrap_weight=0.0)
    keys = ("iou", "outside_change", "alpha_outside")
    print("full", [full[k] for k in keys], "no_boot", [no_boot[k] for k in keys])
    assert no_boot["alpha_outside"] > full["alpha_outside"] + 0.08
    assert no_boot["outside_change"] > full["outside_change"] + 0.02


def square_corners(circle: torch.Tensor) -> torch.Tensor:
    """(H,W) bool: where a square of the circle's centre and half-extent would
    cover and the circle (its (1,1,H,W) mask) does not, 2 px past its edge:
    the corners a square-shaped layer would paint."""
    as_square = scenes.with_object(TOY_SCENE, 0, shape="square")
    sq = torch.from_numpy(scenes.render_scene(as_square, circle.shape[-1])[1])[0] > 0.5
    return sq & away_from(circle)


def shape_edit_metrics(clip, seed: int = 0) -> dict:
    """ "blue square" on the red circle (region "red circle"): the colour
    metrics, plus alpha and change in the corners a square would add."""
    image, circle, square = toy_scene()
    m = metrics(clip, image, circle, square, seed=seed, text="blue square")
    corners = square_corners(circle)
    m["alpha_corners"] = m["out"]["alpha"][0, 0][corners].mean().item()
    m["corner_change"] = (m["out"]["composite"][0] - image[0]).abs()[:, corners].mean().item()
    print({k: v for k, v in m.items() if k not in ("result", "out")})
    return m


@pytest.fixture(scope="module")
def shape_edited(toy_clip_v2):
    return shape_edit_metrics(toy_clip_v2)


@pytest.mark.slow
def test_shape_edit_turns_the_circle_blue(shape_edited):
    m = shape_edited
    assert m["dist_blue_after"] < m["dist_blue_before"] - 0.5, m
    assert m["after"][2] > m["after"][0] + 0.2, m


@pytest.mark.slow
@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="known weakness, see docs/text2live.md: with a CLIP that "
                   "knows shapes the layer grows the square's corners outside the circle")
def test_shape_edit_keeps_the_circle_shape(shape_edited):
    """ "blue square" on the red circle, judged by toy CLIP v2 (it knows
    shapes): the layer should not grow a square's corners outside the
    circle, and the yellow square should stay.

    Measured (toy CLIP v2, seeds 0/1/2): distance to blue 1.09 -> .36/.38/.30,
    but alpha in the corners .16/.33/.15 (no bootstrap .38/.39/.31) and the
    square changes .18/.01/.07: the relevancy bootstrap anneals to 0 over the
    run and nothing else holds the layer to the region. Neither a bootstrap
    that never fully anneals (corners .22/.15, seeds 0/2, at 1500 training
    steps of toy CLIP v2) nor 4x the structure weight (.10/.19) fixes it.
    Strict: when it passes, drop the mark."""
    m = shape_edited
    assert m["alpha_corners"] < 0.08, m
    assert m["square_change"] < 0.06, m


@pytest.mark.slow
def test_exr_over_reproduces_composite(edited, tmp_path):
    """The edit layer written to EXR, composited with a compositor's linear
    Over onto the source, equals the network's composite to half precision."""
    from livelayers.engine.io import read_exr_layers, to_linear
    from livelayers.nodes.io_nodes import LL_SaveEXR
    image, _, _, m = edited
    out = m["out"]
    nhwc = lambda t: t.permute(0, 2, 3, 1)  # noqa: E731
    paths = LL_SaveEXR().save(str(tmp_path / "edit.####.exr"), edit_image=nhwc(out["colour"]),
                              edit_alpha=out["alpha"][:, 0], source=nhwc(image),
                              composite=nhwc(out["composite"]), frames="1")["result"][0]
    layers = read_exr_layers(paths.splitlines()[0])
    rgba = torch.from_numpy(np.asarray(layers[""])).float()  # unprefixed R,G,B,A = the edit
    src_lin = to_linear(image)[0].permute(1, 2, 0)
    over = rgba[..., :3] + (1 - rgba[..., 3:4]) * src_lin
    want = to_linear(out["composite"])[0].permute(1, 2, 0)
    # half has an 11-bit mantissa: ~5e-4 relative per stored value (P and alpha)
    err = ((over - want).abs() - 2e-3 * want.abs()).max().item()
    assert err < 1e-3, err


@pytest.mark.slow
def test_example_workflow_runs(toy_clip_dir, tmp_path):
    """examples/text2live.json runs headless (fewer steps) and writes every layer."""
    from pathlib import Path

    from livelayers.engine.executor import load_workflow, run_workflow
    from livelayers.engine.io import read_exr_layers
    from livelayers.nodes import NODE_CLASS_MAPPINGS
    root = Path(__file__).resolve().parents[1]
    wf = load_workflow(root / "examples" / "text2live.json")
    result = run_workflow(wf, NODE_CLASS_MAPPINGS, overrides={
        "1.path": str(root / "examples" / "assets" / "toy_scene.png"),
        "2.model": f"local-dir:{toy_clip_dir}",
        "3.steps": 3, "3.run_dir": str(tmp_path / "run"),
        "4.path": str(tmp_path / "text2live.####.exr"),
    })
    exr = tmp_path / "text2live.0001.exr"
    assert str(exr) in [str(p) for p in result.written] or exr.is_file()
    layers = read_exr_layers(exr)
    assert {"", "edit", "composite", "source", "alpha", "relevancy", "greenscreen"} <= set(layers)
    assert layers[""].shape == (128, 128, 4)
    assert (tmp_path / "run" / "generator.safetensors").is_file()
