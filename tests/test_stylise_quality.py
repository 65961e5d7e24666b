"""Stylisation of a video object on a procedurally made clip, with the toy CLIP.

Clip: the example clip (examples/assets/toy_clip, made by
examples/make_atlas_assets.py): a checkered red square moving (2, 0.5)
px/frame over grass panning -1 px/frame, 16 frames of 96x64, with its masks.
It is decomposed once, by running the documented example graph exactly as
docs/stylise.md shows it (250 decomposition steps; only the stylisation steps
are cut for speed); the stylisation runs below reuse that decomposition.

Runs: global text "a blue square", local text "blue"; 40 steps, lr 3e-2 (MLP 3e-3),
1 global + 2 local views per frame, 3 frames per step (tiny: the paper runs
2000 steps with ViT-L/14). Seeds 0, 1, 2 with every term on, and the same
seeds with the temporal or the sparsity term switched off or the temporal
weight at 5 (the same random
draws: switching a term off does not change which frames, views or prefixes
are drawn). Measured numbers and margins: docs/stylise.md ("Measured").
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from livelayers.engine.atlas import load_atlas
from livelayers.engine.io import load_image, read_exr_layers
from livelayers.engine.stylise import StyliseSettings, render_stylised, stylise_atlas
from livelayers.engine.stylise import losses as L
from livelayers.engine.stylise.render import frame_colour
from livelayers.engine.stylise.trainer import object_boxes
from livelayers.toyworld.clips import make_toy_clip

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

ROOT = Path(__file__).resolve().parents[1]
N, H, W = 16, 64, 96
SEEDS = (0, 1, 2)
RUN = dict(steps=40, lr=3e-2, n_global=1, n_local=2)
TEXT = ("a blue square", "blue")
# docs/stylise.md's commands; the tests add only fewer stylisation steps
FAST = ["--set", "5.steps=3", "--progress", "none"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder where the example graphs' relative paths resolve (examples/ and
    the toy CLIP linked in), after `python -m livelayers run examples/stylise_video.json`."""
    from livelayers.__main__ import main
    ws = tmp_path_factory.mktemp("stylise_ws")
    (ws / "examples").symlink_to(ROOT / "examples")
    (ws / "tests").mkdir()
    (ws / "tests" / "assets").symlink_to(ROOT / "tests" / "assets")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ws)
        assert main(["run", "examples/stylise_video.json", *FAST]) == 0
        yield ws


@pytest.fixture(scope="module")
def clip():
    """The example clip as its PNGs hold it, with the true masks and track."""
    frames = load_image(str(ROOT / "examples/assets/toy_clip/frame.####.png")).rgb
    masks = load_image(str(ROOT / "examples/assets/toy_clip/mask.####.png")).alpha
    truth = make_toy_clip(n_frames=N, height=H, width=W, seed=7, velocity=(2.0, 0.5), texture="checkered")
    assert (truth.frames - frames).abs().max() <= 1 / 255 + 1e-6   # the assets are this clip
    truth.frames, truth.masks = frames, masks
    return truth


@pytest.fixture(scope="module")
def atlas(workspace):
    return load_atlas(workspace / "out" / "stylise" / "toy.atlas.safetensors")


@torch.no_grad()
def measure(toy_clip, clip, styl) -> dict:
    """Numbers of one stylised atlas rendered over the clip's true frames."""
    layer, alpha, comp = render_stylised(styl, list(range(N)), clip.frames)
    boxes = object_boxes(clip.masks, 0.5, 0.1)            # from the TRUE masks, not the atlas
    text = toy_clip.encode_text([TEXT[0]])[0]
    emb = torch.cat([toy_clip.encode_image(b.crop(comp[i:i + 1])) for i, b in enumerate(boxes)])
    src = torch.cat([toy_clip.encode_image(b.crop(clip.frames[i:i + 1])) for i, b in enumerate(boxes)])
    # stylised colour on the true track: a 3-px disc around the true centre, inside the object
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    track = []
    for i, (cx, cy) in enumerate(clip.centres):
        near = ((xs - cx) ** 2 + (ys - cy) ** 2 <= 9) & (clip.masks[i, 0] > 0.99)
        track.append(layer[i][:, near].mean(1))
    track = torch.stack(track)
    uv, _, a = styl.frame_maps(list(range(N)))
    far = F.max_pool2d((clip.masks > 0).float(), 5, stride=1, padding=2) == 0   # > 2 px from it
    ring = (clip.masks == 0) & ~far
    change = (comp - clip.frames).abs().amax(1, keepdim=True)
    return {
        "rise": (emb @ text - src @ text).tolist(),           # per frame
        "track_step": (track[1:] - track[:-1]).norm(dim=1).max().item(),
        "consecutive": (1 - (emb[1:] * emb[:-1]).sum(1)).mean().item(),
        # what the temporal term optimises, on the finished frames: every one of the 560
        # frame triplets, the same Gaussian weights, plain crops (no random views)
        "triplet": L.triplet_loss(emb, torch.arange(N)).item(),
        "sparsity": L.sparsity_loss(frame_colour(styl, uv), a).item(),
        "far_changed": int(change[far].gt(0).sum()),
        "ring_changed": int(change[ring].gt(0).sum()), "ring_max": change[ring].max().item(),
        "ring_pixels": int(ring.sum()),
        "empty_changed": int(change[alpha == 0].gt(0).sum()),
    }


@pytest.fixture(scope="module")
def runs(toy_clip, clip, atlas):
    """{config: [(numbers, result) per seed]} for full / no temporal / no sparsity /
    the temporal term at weight 5."""
    out = {}
    for name, switch in (("full", {}), ("no_temporal", {"use_temporal": False}),
                         ("no_sparsity", {"use_sparsity": False}),
                         ("temporal_5", {"lambda_temporal": 5.0})):
        out[name] = []
        for seed in SEEDS:
            r = stylise_atlas(toy_clip, atlas, *TEXT, StyliseSettings(**RUN, **switch), seed=seed,
                              device="cpu")
            m = measure(toy_clip, clip, r.atlas)
            half = len(r.losses["temporal"]) // 2
            m["train_temporal"] = sum(r.losses["temporal"][half:]) / (len(r.losses["temporal"]) - half)
            out[name].append((m, r))
            print(name, seed, json.dumps({k: (v if not isinstance(v, float) else float(f"{v:.4g}"))
                                          for k, v in m.items() if k != "rise"}),
                  "rise min", round(min(m["rise"]), 3))
    return out


def test_the_object_turns_to_the_text_in_every_frame(runs):
    # measured (seeds 0/1/2): rise of the toy CLIP's "a blue square" score of the object
    # crop over the source, min over the 16 frames: .40/.42/.42 (docs/stylise.md)
    for m, _ in runs["full"]:
        assert min(m["rise"]) > 0.25, m["rise"]


def test_background_is_untouched(runs):
    for m, _ in runs["full"]:
        assert m["empty_changed"] == 0                    # layer alpha 0: bit-exact plate
        assert m["far_changed"] == 0, m                   # true opacity 0, > 2 px from the object
        # the 2-px ring around the object: the decomposition's opacity leaks there (an opacity
        # field is smooth); measured max change .26/.28/.28 (seeds 0/1/2), see docs/stylise.md
        assert m["ring_max"] < 0.5, m


def test_colour_on_the_true_track_is_steady(runs):
    # measured max frame-to-frame change (L2, RGB in [0,1]) at the true centre: .0030/.0025/.0013
    for m, _ in runs["full"]:
        assert m["track_step"] < 0.05, m


def test_sparsity_keeps_the_unseen_atlas_dark(runs):
    # measured mean ||(1-alpha) c'||^2 over every frame pixel (seeds 0/1/2):
    # on .043/.043/.051, off .86/.87/.87
    for (on, _), (off, _) in zip(runs["full"], runs["no_sparsity"]):
        assert off["sparsity"] > 10 * on["sparsity"] and off["sparsity"] > 0.5, (on, off)


def test_temporal_term_reaches_the_field_and_changes_the_result(toy_clip, atlas, runs):
    """What the temporal term measurably does on this clip.

    1. On a batch where the triplet is violated, the gradient with the term
       on points downhill for the triplet: a step along it lowers the triplet
       loss at first order by λ·‖∇triplet‖² more than the step without it.
    2. The paired runs (same draws) end with different stylised atlases.

    Its effect on the finished frames' consistency is not of one sign across
    seeds, here (6 seeds) nor on a clip made to need it (an occluding post,
    12 seeds); at λ_temporal ≥ 3 it lowers the frame-to-frame distance only by
    holding back the stylisation (docs/stylise.md, "The temporal term"). So
    that is reported, not asserted.
    """
    from livelayers.engine.stylise.trainer import (object_crops, step_terms, stylised_fields,
                                                   weighted_loss)
    s = StyliseSettings(**RUN)
    crops = object_crops(atlas, s, torch.device("cpu"))
    fields = stylised_fields(atlas, torch.device("cpu"))
    params = list(fields.atlas_fg.parameters())
    for seed in range(50):                   # the first batch whose triplet is violated
        terms, _ = step_terms(fields, crops, toy_clip, TEXT, s, torch.Generator().manual_seed(seed))
        if terms["temporal"].item() > 1e-4:
            break
    assert terms["temporal"].item() > 1e-4

    def grad(loss):
        return [g if g is not None else torch.zeros_like(p) for g, p in
                zip(torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True), params)]

    def dot(a, b):
        return sum((x * y).sum() for x, y in zip(a, b)).item()
    g_t = grad(terms["temporal"])
    g_on = grad(weighted_loss(terms, s))
    g_off = grad(weighted_loss(terms, StyliseSettings(**RUN, use_temporal=False)))
    # slope of the triplet along each descent direction
    slope_on, slope_off = -dot(g_t, g_on), -dot(g_t, g_off)
    assert dot(g_t, g_t) > 0
    assert slope_on == pytest.approx(slope_off - s.lambda_temporal * dot(g_t, g_t), rel=1e-3, abs=1e-9)
    assert slope_on < slope_off
    for (_, r_on), (_, r_off) in zip(runs["full"], runs["no_temporal"]):
        diff = max((a - b).abs().max().item() for a, b in
                   zip(r_on.atlas.fields.atlas_fg.parameters(), r_off.atlas.fields.atlas_fg.parameters()))
        assert diff > 1e-4


def test_temporal_term_at_its_default_weight_costs_no_text_score(runs):
    """At λ_temporal = 1 the term does not hold the stylisation back.

    At λ 3-5 the term wins over the text: the object changes less, so its
    frames stay alike; at the default it must not. Measured, the largest per-frame drop
    of the rise with the term on vs off (same draws): seeds 0-5 .012 / .001 /
    .005 / .008 / .007 / .004 at λ 1, and .28 / .032 / .10 / .09 / .22 / .07 at
    λ 5 (docs/stylise.md); the bound sits between the two.
    """
    for (on, _), (off, _) in zip(runs["full"], runs["no_temporal"]):
        drop = max(b - a for a, b in zip(on["rise"], off["rise"]))
        assert drop < 0.03, (on["rise"], off["rise"])


def test_temporal_term_at_weight_5_holds_the_stylisation_back(runs):
    """The other side of the bracket: given weight (λ_temporal 5) the term wins
    over the text on every seed. Measured, worst-frame rise on / off (seeds
    0/1/2): .14 / .41, .39 / .42, .33 / .42. On this clip it does not buy a
    lower triplet on every seed (×10⁻⁴, on / off: 1.23 / 1.03, 0.54 / 1.03, 0.28 / 1.28); on the occluding-post
    clip it does (12 of 12 seeds), by the same trade (docs/stylise.md)."""
    for (strong, _), (off, _) in zip(runs["temporal_5"], runs["no_temporal"]):
        assert min(strong["rise"]) < min(off["rise"]) - 0.02, (strong["rise"], off["rise"])


# --------------------------------------------------------------------------- the documented commands

def test_documented_example_writes_the_exr_sequence(workspace):
    files = sorted((workspace / "out" / "stylise").glob("stylised.*.exr"))
    assert [f.name for f in files] == [f"stylised.{i:04d}.exr" for i in range(1, N + 1)]
    layers = read_exr_layers(files[0])
    assert {"", "stylised", "composite", "source", "alpha"} <= set(layers) and "edit" not in layers
    assert layers[""].shape == (H, W, 4)
    np.testing.assert_array_equal(np.asarray(layers[""]), np.asarray(layers["stylised"]))
    a = np.asarray(layers["alpha"])[..., 0]
    comp, src = np.asarray(layers["composite"]), np.asarray(layers["source"])
    assert (a == 0).mean() > 0.8                                  # the background ...
    assert np.array_equal(comp[a == 0], src[a == 0])              # ... is the plate, bit for bit
    assert (workspace / "out" / "stylise" / "toy.stylised.atlas.safetensors").is_file()


def test_documented_farm_pair_trains_once_and_renders_chunks(workspace):
    import yaml
    from livelayers.__main__ import main
    from livelayers.engine import farm
    out = workspace / "out" / "stylise"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workspace)
        assert main(["export-job", "examples/stylise_video_render.json",
                     "--train-graph", "examples/stylise_video_train.json",
                     "--frames", "1-16", "--chunk", "4", "--format", "openjd", "--out", "job/stylise"]) == 0
        template = yaml.safe_load((workspace / "job" / "stylise" / "template.yaml").read_text())
        assert [s["name"] for s in template["steps"]] == ["train", "render"]
        chunks = farm.openjd_chunks(farm.validate_openjd(template, workspace / "job" / "stylise"))
        assert chunks == ["1-4", "5-8", "9-12", "13-16"]
        # the train step: both atlases are already there (same inputs), so it only loads them
        stamp = (out / "toy.stylised.atlas.safetensors").stat().st_mtime_ns
        assert main(["run", "examples/stylise_video_train.json", *FAST]) == 0
        assert (out / "toy.stylised.atlas.safetensors").stat().st_mtime_ns == stamp
        assert (out / "stylised_atlas.exr").is_file()
        # one render task, from the saved stylised atlas: the same frames as the all-in-one graph
        before = {f: read_exr_layers(out / f"stylised.{f:04d}.exr") for f in range(5, 9)}
        for f in range(5, 9):
            (out / f"stylised.{f:04d}.exr").unlink()
        assert main(["run", "examples/stylise_video_render.json", "--frames", "5-8",
                     "--progress", "none"]) == 0
    for f in range(5, 9):
        after = read_exr_layers(out / f"stylised.{f:04d}.exr")
        for name in ("", "composite", "alpha", "source"):
            np.testing.assert_array_equal(np.asarray(after[name]), np.asarray(before[f][name]))
