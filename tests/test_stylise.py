"""Stylisation of video objects (engine/stylise, nodes/stylise_nodes.py):
loss terms against known answers, the views, the exact empty layer, the
nodes' contract and errors, checkpoints/resume, the saved stylised atlas,
farm-chunk rendering and the `stylised` EXR layer. Fast: a 3-step atlas of a
tiny clip; the quality checks are in test_stylise_quality.py."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from livelayers.engine.atlas import AtlasSettings, decompose, load_atlas
from livelayers.engine.errors import Cancelled, CorruptFileError, InputError
from livelayers.engine.progress import Progress
from livelayers.engine.stylise import (StyliseSettings, apply_prefix, is_stylised, layer_alpha,
                                       render_stylised, stylise_atlas)
from livelayers.engine.stylise import losses as L
from livelayers.engine.stylise import views as V
from livelayers.engine.stylise.render import composite_layer
from livelayers.nodes import stylise_nodes as sn
from livelayers.toyworld.clips import make_toy_clip

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(steps=3, lr=1e-2, n_global=1, n_local=1, checkpoint_every=2)


# --------------------------------------------------------------------------- losses

def test_text_loss_is_one_minus_cosine_of_the_mean_view():
    e = torch.eye(4)
    views = torch.stack([e[[0, 1]], e[[0, 0]]])          # frame 0: two views, frame 1: the same twice
    # frame 0: mean (.5, .5, 0, 0) -> cos with e0 = 1/sqrt(2); frame 1: cos 1
    want = ((1 - 1 / math.sqrt(2)) + 0) / 2
    assert L.text_loss(views, e[0]).item() == pytest.approx(want, abs=1e-6)


def test_triplet_loss_known_answer_and_gaussian_weight():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.6, 0.8])
    # t1 = a, the near frame t2 = b (sim .6), the far frame t3 = a (sim 1): violated by .4
    emb = torch.stack([a, b, a])
    times = torch.tensor([0, 2, 4])
    assert L.triplet_loss(emb, times, 5.0).item() == pytest.approx(0.4 * math.exp(-16 / 50), abs=1e-6)
    # ordered the right way round: no loss
    assert L.triplet_loss(torch.stack([a, a, b]), times, 5.0).item() == 0.0
    assert L.triplet_loss(emb[:2], times[:2]).item() == 0.0          # fewer than 3 frames
    assert L.temporal_weight(torch.tensor(5.0), 5.0).item() == pytest.approx(math.exp(-0.5))
    # four frames: the mean over the 4 triplets i<j<k
    four = L.triplet_loss(torch.stack([a, b, a, a]), torch.tensor([0, 1, 2, 3]), 5.0)
    manual = (0.4 * math.exp(-4 / 50) + 0.4 * math.exp(-9 / 50)) / 4
    assert four.item() == pytest.approx(manual, abs=1e-6)


def test_sparsity_loss_counts_only_where_the_object_is_not():
    colour = torch.zeros(1, 3, 2, 2)
    colour[0, :, 0, 0] = torch.tensor([0.6, 0.8, 0.0])     # norm 1
    alpha = torch.ones(1, 1, 2, 2)
    assert L.sparsity_loss(colour, alpha).item() == 0.0    # all object: no penalty
    alpha[0, 0, 0, 0] = 0.5
    assert L.sparsity_loss(colour, alpha).item() == pytest.approx(0.25 / 4)


def test_prefixes_never_double_the_article():
    assert apply_prefix("a photo of a {}", "a blue circle") == "a photo of a blue circle"
    assert apply_prefix("the {}", "a blue circle") == "a blue circle"
    assert apply_prefix("image of the {}", "swan with crocodile skin") == "image of the swan with crocodile skin"
    assert apply_prefix("a {}", "crocodile skin") == "a crocodile skin"


# --------------------------------------------------------------------------- views

def _disc(h, w, cx, cy, r):
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    return (((xs - cx) ** 2 + (ys - cy) ** 2) <= r * r).float()[None, None]


def test_resized_crops_have_the_asked_area_and_aspect():
    g = torch.Generator().manual_seed(0)
    m = V.resized_crop_matrices(g, 500, (0.1, 0.5), (0.8, 1.2), 40, 40)
    area = m[:, 0, 0] * m[:, 1, 1]                 # half sizes: area fraction of the square
    aspect = m[:, 0, 0] / m[:, 1, 1]
    assert area.min() >= 0.1 - 1e-6 and area.max() <= 0.5 + 1e-6
    assert aspect.min() >= 0.8 - 1e-6 and aspect.max() <= 1.2 + 1e-6
    # inside the crop: |centre| + half size <= 1
    assert (m[:, 0, 2].abs() + m[:, 0, 0]).max() <= 1 + 1e-6
    assert (m[:, 1, 2].abs() + m[:, 1, 1]).max() <= 1 + 1e-6


def test_local_views_are_at_least_a_third_object():
    g = torch.Generator().manual_seed(1)
    alpha = _disc(40, 40, 16, 18, 12)               # the object fills ~28 % of the crop
    _, frac = V.local_matrices(g, 64, alpha, (0.1, 0.5), (0.8, 1.2), 1 / 3, 16)
    assert frac.min() >= 1 / 3
    plain = V.object_fraction(alpha, V.resized_crop_matrices(g, 64, (0.1, 0.5), (0.8, 1.2), 40, 40))
    assert (plain < 1 / 3).float().mean() > 0.05     # without resampling some views miss it (9 %)
    # a very small object: no candidate may pass; then the view with the most object is kept
    small = _disc(40, 40, 12, 14, 5)
    _, best = V.local_matrices(g, 64, small, (0.1, 0.5), (0.8, 1.2), 1 / 3, 16)
    first = V.object_fraction(small, V.resized_crop_matrices(g, 64, (0.1, 0.5), (0.8, 1.2), 40, 40))
    assert best.mean() > 2 * first.mean()


def test_background_removal_and_gradients():
    alpha = _disc(32, 32, 16, 16, 10)
    colour = torch.full((1, 3, 32, 32), 0.5, requires_grad=True)
    bg = (1 - alpha) * torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1)
    eye = torch.eye(3).expand(2, 3, 3)
    out = V.render_views(alpha * colour, bg, eye, torch.tensor([False, True]), 32)
    outside = alpha[0, 0] == 0
    assert out[0, 1][outside].min() == 1.0           # kept: the green background
    assert out[1][:, outside].abs().max() == 0.0     # removed: black
    out.sum().backward()
    assert colour.grad[0, 0][alpha[0, 0] > 0].abs().min() > 0


def test_perspective_strength_is_per_view():
    g = torch.Generator().manual_seed(0)
    m = V.with_perspective(g, torch.eye(3).expand(200, 3, 3), 0.5, (0.1, 0.5))
    warped = (m - torch.eye(3)).abs().flatten(1).amax(1) > 1e-6
    assert 0.3 < warped.float().mean() < 0.7


# --------------------------------------------------------------------------- the empty layer

def test_layer_alpha_below_the_cutoff_is_exactly_zero_and_the_plate_is_kept():
    alpha = torch.tensor([1e-4, 0.019, 0.02, 0.7]).view(1, 1, 1, 4)
    a = layer_alpha(alpha, 0.02)
    assert a.flatten().tolist() == [0.0, 0.0, pytest.approx(0.02), pytest.approx(0.7)]
    plate = torch.rand(1, 3, 1, 4)
    colour = torch.rand(1, 3, 1, 4)
    straight, comp = composite_layer(colour, a, plate)
    assert torch.equal(comp[..., :2], plate[..., :2]) and straight[..., :2].abs().max() == 0
    torch.testing.assert_close(comp[..., 3], 0.7 * colour[..., 3] + 0.3 * plate[..., 3])


# --------------------------------------------------------------------------- settings and nodes

def test_settings_errors_name_the_input():
    with pytest.raises(InputError, match="LL_StyliseVideoObject: input 'prefixes' is 3"):
        StyliseSettings(prefixes=3).validate()
    with pytest.raises(InputError, match="input 'use_global'"):
        StyliseSettings(use_global=False, use_local=False).validate()
    with pytest.raises(InputError, match="input 'n_local' is 0"):
        StyliseSettings(n_local=0).validate()
    with pytest.raises(InputError, match="input 'alpha_cutoff'"):
        StyliseSettings(alpha_cutoff=1.5).validate()
    StyliseSettings(n_local=0, use_local=False).validate()       # an ablation is fine


def test_node_contract():
    for name, cls in sn.NODE_CLASS_MAPPINGS.items():
        assert cls.__name__ == name and cls.CATEGORY == "LiveLayers/video" and cls.DESCRIPTION
        assert len(cls.RETURN_NAMES) == len(cls.RETURN_TYPES) == len(cls.OUTPUT_TOOLTIPS)
        for group in ("required", "optional"):
            for inp, (kind, opts) in cls.INPUT_TYPES().get(group, {}).items():
                assert opts.get("tooltip"), f"{name}.{inp} has no tooltip"
    inputs = sn.LL_StyliseVideoObject.INPUT_TYPES()["optional"]
    for term in ("global", "local", "temporal", "sparsity"):     # every term can be switched off
        assert inputs[f"use_{term}"][0] == "BOOLEAN" and f"lambda_{term}" in inputs


@pytest.fixture(scope="module")
def tiny(toy_clip):
    clip = make_toy_clip(n_frames=4, height=24, width=32, seed=2, shape="circle", texture="plain")
    atlas = decompose(clip.frames, clip.masks, AtlasSettings(steps=3, batch=64), seed=0, device="cpu",
                      frame_numbers=[1001, 1002, 1003, 1004])
    return clip, atlas


def test_resume_is_bit_identical_and_the_source_stays_frozen(tiny, toy_clip, tmp_path):
    clip, atlas = tiny
    before = {k: v.clone() for k, v in atlas.fields.state_dict().items()}
    s = StyliseSettings(**TINY)
    whole = stylise_atlas(toy_clip, atlas, "a blue circle", "blue", s, seed=3, device="cpu")
    # stop after 2 steps (a checkpoint is written), then resume in the same run_dir
    calls = {"n": 0}

    def stop_at_two(step, total, info):
        calls["n"] = step

    stopper = Progress(callback=stop_at_two, should_stop=lambda: calls["n"] >= 2)
    with pytest.raises(Cancelled):
        stylise_atlas(toy_clip, atlas, "a blue circle", "blue", s, seed=3, device="cpu",
                      run_dir=tmp_path / "run", progress=stopper)
    resumed = stylise_atlas(toy_clip, atlas, "a blue circle", "blue", s, seed=3, device="cpu",
                            run_dir=tmp_path / "run")
    for k, v in whole.atlas.fields.state_dict().items():
        assert torch.equal(v, resumed.atlas.fields.state_dict()[k]), k
    assert resumed.losses["total"] == whole.losses["total"] and resumed.steps == 3
    # only the fg colour field changed; the source atlas is untouched
    for k, v in atlas.fields.state_dict().items():
        assert torch.equal(v, before[k]), k
        same = torch.equal(v, whole.atlas.fields.state_dict()[k])
        assert same == (not k.startswith("atlas_fg.")), k
    with pytest.raises(CorruptFileError, match="another atlas, text"):
        stylise_atlas(toy_clip, atlas, "a green circle", "green", s, seed=3, device="cpu",
                      run_dir=tmp_path / "run")



def test_more_steps_resume_a_finished_stylisation(tiny, toy_clip, tmp_path):
    """A finished run folder asked for more steps continues from its last step."""
    from dataclasses import replace
    clip, atlas = tiny
    s = StyliseSettings(**TINY)
    first = stylise_atlas(toy_clip, atlas, "a blue circle", "blue", s, seed=3, device="cpu",
                          run_dir=tmp_path / "run")
    seen = []
    more = replace(s, steps=s.steps + 2)
    extended = stylise_atlas(toy_clip, atlas, "a blue circle", "blue", more, seed=3, device="cpu",
                             run_dir=tmp_path / "run",
                             progress=Progress(callback=lambda step, t, info: seen.append(step)))
    assert seen == list(range(s.steps + 1, more.steps + 1)) and extended.steps == more.steps
    assert extended.losses["total"][:s.steps] == first.losses["total"]  # the history carried on

def test_nodes_save_reuse_render_chunks_and_errors(tiny, toy_clip, tmp_path):
    clip, atlas = tiny
    frames = clip.frames.permute(0, 2, 3, 1)
    path = tmp_path / "shot.stylised.atlas.safetensors"
    node = sn.LL_StyliseVideoObject()
    args = dict(clip=toy_clip, atlas=atlas, frames=frames, global_text="a blue circle", local_text="blue",
                prefixes=4, n_global=1, n_local=1, batch_frames=3, steps=2, lr=1e-2, seed=0,
                resolution=32, atlas_path=str(path), device="cpu")
    image, layer, alpha, comp, styl = node.run(**args)
    assert image.shape[0] == 1 and max(image.shape[1:3]) == 32 and layer.shape == (4, 24, 32, 3)
    assert alpha.shape == (4, 24, 32) and comp.shape == (4, 24, 32, 3)
    assert is_stylised(styl) and styl.info["stylised"]["global_text"] == "a blue circle"
    assert styl.info["fingerprint"] != atlas.info["fingerprint"]   # never taken for the decomposition
    stamp = path.stat().st_mtime_ns
    again = node.run(**args)                                      # same job: loaded, not retrained
    assert path.stat().st_mtime_ns == stamp and torch.equal(again[3], comp)
    loaded = load_atlas(path)
    assert is_stylised(loaded) and loaded.frame_numbers == [1001, 1002, 1003, 1004]
    # farm chunks: a render of frames 1003-1004 from the file equals the training node's frames
    l2, a2, c2 = sn.LL_StyliseRender().run(loaded, "1003-1004", plate=frames)
    torch.testing.assert_close(c2, comp[2:], rtol=0, atol=1e-6)
    torch.testing.assert_close(a2, alpha[2:], rtol=0, atol=1e-6)
    where_empty = alpha == 0
    assert torch.equal(comp[where_empty], frames[where_empty])   # bit-exact plate where empty
    with pytest.raises(InputError, match="LL_StyliseVideoObject: input 'frames' is 16x24"):
        node.run(**{**args, "frames": frames[:, :, :16]})
    with pytest.raises(InputError, match="input 'global_text' is empty"):
        node.run(**{**args, "global_text": " ", "atlas_path": ""})
    with pytest.raises(InputError, match="input 'prefixes' is 2"):
        node.run(**{**args, "prefixes": 2, "atlas_path": ""})
    with pytest.raises(InputError, match="LL_StyliseRender: input 'frames' asks for frames 7"):
        sn.LL_StyliseRender().run(loaded, "7")


def test_exr_holds_the_stylised_layer(tiny, toy_clip, tmp_path):
    from livelayers.engine.io import read_exr_layers
    from livelayers.nodes.io_nodes import LL_SaveEXR
    clip, atlas = tiny
    s = StyliseSettings(**{**TINY, "steps": 1})
    styl = stylise_atlas(toy_clip, atlas, "a blue circle", "blue", s, seed=0, device="cpu").atlas
    layer, alpha, comp = render_stylised(styl, [0, 1], clip.frames[:2])
    nhwc = lambda t: t.permute(0, 2, 3, 1)  # noqa: E731
    out = LL_SaveEXR().save(str(tmp_path / "s.####.exr"), edit_image=nhwc(layer), edit_alpha=alpha[:, 0],
                            edit_layer="stylised", composite=nhwc(comp), source=nhwc(clip.frames[:2]),
                            alpha=alpha[:, 0], frames="1-2")
    layers = read_exr_layers(out["result"][0].splitlines()[0])
    assert {"", "stylised", "composite", "source", "alpha"} <= set(layers) and "edit" not in layers
    np.testing.assert_array_equal(np.asarray(layers[""]), np.asarray(layers["stylised"]))
    a = np.asarray(layers["alpha"])[..., 0]
    np.testing.assert_allclose(a, alpha[0, 0].numpy(), atol=1e-7)
    with pytest.raises(InputError, match="input 'edit_layer'"):
        LL_SaveEXR().save(str(tmp_path / "x.####.exr"), edit_image=nhwc(layer), edit_alpha=alpha[:, 0],
                          edit_layer="object", frames="1-2")


def test_views_see_the_crop_not_the_whole_frame(tiny, toy_clip):
    """The crop boxes bound the object (opacity >= .5) with the margin, squared."""
    from livelayers.engine.stylise.trainer import object_boxes
    clip, _ = tiny
    boxes = object_boxes(clip.masks, 0.5, 0.1)
    for b, m in zip(boxes, clip.masks):
        inside = m[0] >= 0.5
        ys, xs = torch.nonzero(inside, as_tuple=True)
        assert b.x0 <= xs.min() and b.x1 > xs.max() and b.y0 <= ys.min() and b.y1 > ys.max()
        assert b.width == b.height or b.height == 24     # square unless the frame is too short
        assert b.width < 32
