"""Chefer relevancy: the rollout, the map's shape and range, and where it points
on held-out toy-world scenes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from livelayers.engine.errors import InputError
from livelayers.engine.relevancy import parse_blocks, relevancy_map, relevancy_rollout
from livelayers.toyworld import scenes

# Measured with the toy CLIP (1500 steps) on these 48 scenes: colour 1.00, shape 0.50,
# colour+shape 1.00 with blocks="all" (bench/relevancy_quality.py,
# and docs/models.md); the asserted rates keep a margin below the measurement.
MIN_RATE = {"colour": 0.90, "colour+shape": 0.90}
# Toy CLIP v2 knows shapes (zero-shot 0.87) but localises shape words only a
# little better than chance: measured on 96 scenes (the 48 above first) colour
# 0.958, colour+shape 0.917, shape 0.594 (toy CLIP: 0.50). Its colour+shape
# floor is 0.85, not 0.90: a different model, measured lower; shape > chance.
MIN_RATE_V2 = {"colour": 0.90, "colour+shape": 0.85, "shape": 0.55}
N_SCENES_V2 = 96
N_SCENES = 48
HELD_OUT_SEED = 90210  # not a training seed: the trainer draws from seed 0


def test_rollout_known_answer():
    # one block, 3 tokens; only the CLS -> token 2 entry has positive grad x attention
    a = torch.tensor([[[[0.2, 0.3, 0.5], [0.3, 0.4, 0.3], [0.1, 0.1, 0.8]]]])
    g = torch.tensor([[[[1.0, -1.0, 2.0], [-1.0, 0.0, -2.0], [0.0, -3.0, 0.0]]]])
    r = relevancy_rollout([a], [g])
    want = torch.eye(3) + torch.tensor([[0.2, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert torch.allclose(r[0], want)
    # two blocks: R = (I + A2)(I + A1), heads are averaged after the clamp
    a2 = torch.cat([a, a], dim=1)
    g2 = torch.cat([g, -g], dim=1)  # the second head contributes its own positive part
    r2 = relevancy_rollout([a, a2], [g, g2])
    cam2 = (g2 * a2).clamp(min=0).mean(1)[0]
    assert torch.allclose(r2[0], (torch.eye(3) + cam2) @ want)


def test_parse_blocks():
    assert parse_blocks("last", 4) == [3]
    assert parse_blocks("all", 4) == [0, 1, 2, 3]
    assert parse_blocks("2, 0,-1", 4) == [0, 2, 3]
    assert parse_blocks([1, 1], 4) == [1]
    with pytest.raises(InputError, match="LL_X: input 'blocks' has block 4; allowed: 0..3"):
        parse_blocks("4", 4, node="LL_X")
    with pytest.raises(InputError, match="comma-separated"):
        parse_blocks("first", 4)


def test_map_shape_range_and_batch_independence(toy_clip):
    img = torch.rand(3, 3, 48, 80)  # not square, not CLIP's size
    m = relevancy_map(toy_clip, img, "a red circle", blocks="all")
    assert m.shape == (3, 1, 48, 80) and m.dtype == torch.float32
    assert torch.allclose(m.amin(dim=(1, 2, 3)), torch.zeros(3))
    assert torch.allclose(m.amax(dim=(1, 2, 3)), torch.ones(3))
    # images in a batch do not leak into each other's gradients
    one_by_one = torch.cat([relevancy_map(toy_clip, img[i:i + 1], "a red circle", blocks="all")
                            for i in range(3)])
    assert (one_by_one - m).abs().max() < 1e-4
    assert (relevancy_map(toy_clip, img, "a red circle", "all", batch_size=2) - m).abs().max() < 1e-4


def test_negative_text_equal_to_the_text_cancels_everything(toy_clip):
    img = torch.rand(1, 3, 64, 64)
    m = relevancy_map(toy_clip, img, "a red circle", blocks="all", negative_text="a red circle")
    assert m.abs().max() == 0  # zero score gradient: a flat map, reported as 0


def test_works_under_no_grad_and_inference_mode(toy_clip):
    img = torch.rand(1, 3, 64, 64)
    ref = relevancy_map(toy_clip, img, "a red circle", blocks="all")
    with torch.inference_mode():
        inside = relevancy_map(toy_clip, img.clone(), "a red circle", blocks="all")
    with torch.no_grad():
        assert torch.allclose(relevancy_map(toy_clip, img, "a red circle", blocks="all"), ref)
    assert torch.allclose(inside, ref) and ref.max() == 1
    with torch.inference_mode():  # a text first embedded (and cached) in inference mode
        toy_clip.encode_text(["a green star"])
    assert relevancy_map(toy_clip, img, "a green star", blocks="all").max() == 1


def test_bad_inputs(toy_clip):
    with pytest.raises(InputError, match="'text' is empty"):
        relevancy_map(toy_clip, torch.rand(1, 3, 64, 64), "  ")
    with pytest.raises(InputError, match="'image' has shape"):
        relevancy_map(toy_clip, torch.rand(1, 64, 64, 3), "a red circle")


def _held_out_scenes(n=N_SCENES, size=64):
    rng = np.random.default_rng(HELD_OUT_SEED)
    out = []
    for _ in range(n):
        scene = scenes.random_scene(rng, 2, distinct=True)
        img, masks = scenes.render_scene(scene, size)
        out.append((scene, torch.from_numpy(img).permute(2, 0, 1), torch.from_numpy(masks)))
    return out


def peak_hit_rates(clip, blocks="all", n=N_SCENES, size=64) -> dict[str, float]:
    """Fraction of scenes where the map's peak pixel lies inside the named object
    (coverage > 0.5), for each kind of text; the target is object 0 or 1 alternately."""
    data = _held_out_scenes(n, size)
    images = torch.stack([d[1] for d in data])
    texts = {
        "colour": lambda o: f"a {o.colour} shape",
        "shape": lambda o: f"a {o.shape}",
        "colour+shape": lambda o: f"a {o.colour} {o.shape}",
    }
    rates = {}
    for kind, make in texts.items():
        hits = 0
        for i, (scene, img, masks) in enumerate(data):
            k = i % 2
            m = relevancy_map(clip, images[i:i + 1], make(scene.objects[k]), blocks=blocks)[0, 0]
            peak = int(m.flatten().argmax())
            hits += bool(masks[k].flatten()[peak] > 0.5)
        rates[kind] = hits / n
    return rates


@pytest.mark.slow
@pytest.mark.parametrize("model, floors, n", [("toy_clip", MIN_RATE, N_SCENES),
                                             ("toy_clip_v2", MIN_RATE_V2, N_SCENES_V2)])
def test_relevancy_points_at_the_named_object_on_held_out_scenes(request, model, floors, n):
    rates = peak_hit_rates(request.getfixturevalue(model), blocks="all", n=n)
    print(f"\n{model}: relevancy peak-inside rates (blocks=all, {n} scenes): {rates}")
    for kind, floor in floors.items():
        assert rates[kind] >= floor, (kind, rates)


def test_node_returns_a_mask_and_checks_its_inputs(toy_clip):
    from livelayers.nodes.relevancy_nodes import LL_Relevancy
    node = LL_Relevancy()
    image = torch.rand(2, 40, 56, 3)
    (mask,) = node.run(toy_clip, image, "a blue square", "", "custom", "0, -1")
    assert mask.shape == (2, 40, 56) and 0 <= mask.min() and mask.max() <= 1
    with pytest.raises(InputError, match="LL_Relevancy: input 'custom_blocks' is empty"):
        node.run(toy_clip, image, "a blue square", "", "custom", "")
    with pytest.raises(InputError, match="input 'custom_blocks' has block 7"):
        node.run(toy_clip, image, "a blue square", "", "custom", "7")
    with pytest.raises(InputError, match="input 'clip'"):
        node.run("not a clip", image, "a blue square")
    spec = LL_Relevancy.INPUT_TYPES()["required"]
    assert all("tooltip" in opts for _, opts in spec.values())
    assert spec["blocks"][1]["default"] == "last"
