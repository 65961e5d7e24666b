"""Learnable regions, fast unit tests: anchors, boxes, RoI features, the
seeded straight-through Gumbel sample, the gradient path to the region
network's logits, the ranking formula, input errors and the nodes."""
from __future__ import annotations

import pytest
import torch

from livelayers.engine.errors import InputError
from livelayers.engine.regions import (RegionNetwork, anchors_from_attention, box_iou, box_losses,
                                       box_mask, box_proposals, box_sizes_for, clip_targets,
                                       colour_in_prompt, edit_losses, gumbel_softmax_st,
                                       rank_candidates, ranking_scores, recolour_editor,
                                       region_losses, roi_features, top_k_peaks, train_anchor)


# ------------------------------------------------------------------ anchors

def test_top_k_peaks_nms_spreads():
    s = torch.zeros(6, 6)
    s[1, 1], s[1, 2], s[4, 4], s[0, 5] = 1.0, 0.9, 0.8, 0.5  # (1,2) is a neighbour of the max
    peaks = top_k_peaks(s, 3, radius=1)
    assert peaks.tolist() == [[1, 1], [4, 4], [0, 5]]
    assert top_k_peaks(s, 2, radius=0).tolist() == [[1, 1], [1, 2]]
    assert top_k_peaks(torch.rand(2, 2), 9, radius=1).shape == (1, 2)  # map exhausted


def test_anchor_pixels_are_patch_centres():
    attn = torch.zeros(1, 2, 4, 8)
    attn[0, :, 3, 5] = 1.0
    xy = anchors_from_attention(attn, (32, 64), k=1)
    assert xy.tolist() == [[(5 + 0.5) * 8, (3 + 0.5) * 8]]


# -------------------------------------------------------------------- boxes

def test_box_proposals_square_and_clipped():
    anchors = torch.tensor([[32.0, 32.0], [4.0, 60.0]])
    boxes = box_proposals(anchors, (0.25, 0.5), (64, 64))
    assert boxes.shape == (2, 2, 4)
    assert boxes[0].tolist() == [[24, 24, 40, 40], [16, 16, 48, 48]]
    assert boxes[1, 1].tolist() == [0, 44, 20, 64]  # clipped at the left and bottom borders
    m = box_mask(boxes[0, 0], (64, 64))
    assert m.sum() == 16 * 16 and m[0, 0, 24, 24] == 1 and m[0, 0, 40, 40] == 0


def test_box_sizes_for():
    assert box_sizes_for(1) == (0.5,)
    assert box_sizes_for(4, 0.2, 0.8) == pytest.approx((0.2, 0.4, 0.6, 0.8))


def test_roi_features_read_the_right_place():
    fmap = torch.zeros(1, 2, 8, 8)
    fmap[0, 0, :, :4] = 1.0   # channel 0: left half of the image
    fmap[0, 1] = 3.0          # channel 1: constant
    boxes = torch.tensor([[0.0, 0.0, 24.0, 64.0], [40.0, 0.0, 64.0, 64.0]])  # image 64x64
    r = roi_features(fmap, boxes, (64, 64))
    assert r.shape == (2, 2, 7, 7)
    assert torch.allclose(r[:, 1], torch.tensor(3.0))
    assert r[0, 0].mean() > 0.95 and r[1, 0].abs().max() < 1e-6
    # a feature grid of another aspect than the image maps boxes per axis
    wide = torch.zeros(1, 1, 4, 8)
    wide[..., 4:] = 1.0
    right = roi_features(wide, torch.tensor([[40.0, 0.0, 64.0, 32.0]]), (32, 64))
    assert right.min() > 0.99


def test_box_iou():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0


# ------------------------------------------------------------ Gumbel sample

def test_gumbel_st_seeded_one_hot_and_global_rng_untouched():
    logits = torch.tensor([0.1, 2.0, -1.0, 0.5], requires_grad=True)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    y1, i1 = gumbel_softmax_st(logits, torch.Generator().manual_seed(5))
    assert torch.equal(torch.get_rng_state(), before)
    y2, i2 = gumbel_softmax_st(logits, torch.Generator().manual_seed(5))
    assert i1 == i2 and torch.equal(y1, y2)
    assert y1.detach().tolist() == [1.0 if j == i1 else 0.0 for j in range(4)]
    # the backward pass is the softmax's: d y_i / d logits != 0 for all entries
    y1[i1].backward()
    assert (logits.grad.abs() > 0).all()
    # the sample follows the logits' distribution (index 1 has p ~ 0.69)
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros(4)
    for _ in range(2000):
        counts[gumbel_softmax_st(logits.detach(), gen)[1]] += 1
    p = torch.softmax(logits.detach(), 0)
    assert torch.allclose(counts / 2000, p, atol=0.04)


# ---------------------------------------------------------- gradient path

def _toy_scene(seed=3, size=64):
    import numpy as np

    from livelayers.engine.toyworld import scenes
    rng = np.random.default_rng(seed)
    sc = scenes.random_scene(rng, 1)
    img, masks = scenes.render_scene(sc, size)
    return sc, torch.from_numpy(img).permute(2, 0, 1)[None], torch.from_numpy(masks)


def _four_box_setup(toy_clip):
    sc, image, _ = _toy_scene()
    prompt = f"a blue {sc.objects[0].shape}"
    editor = recolour_editor(prompt)
    boxes = box_proposals(torch.tensor([[32.0, 32.0]]), (0.2, 0.4, 0.6, 0.8), (64, 64))[0]
    edits = torch.cat([editor(image, box_mask(b, (64, 64))) for b in boxes])
    return edits, clip_targets(toy_clip, image, prompt, "a photo")


def test_box_losses_are_the_per_edit_losses(toy_clip):
    """One batched CLIP pass gives each edit the loss it gets alone."""
    edits, targets = _four_box_setup(toy_clip)
    batched = box_losses(toy_clip, edits, targets, chunk=3)      # 2 chunks
    alone = torch.stack([region_losses(toy_clip, e[None], targets)["total"] for e in edits]).detach()
    assert torch.allclose(batched, alone, atol=1e-5)
    parts = edit_losses(toy_clip, edits, targets)
    assert torch.allclose(parts["cosine"] + parts["directional"] + parts["structure"], batched, atol=1e-5)
    assert batched.unique().numel() == 4


def test_gradient_of_exact_surrogate(toy_clip):
    """(a) The default objective sum_j y_j L_j with exact per-box losses L:
    the forward value is the sampled box's loss, d/dy_j = L_j for every box,
    and logits.grad equals the hand-computed Gumbel-softmax Jacobian
    d/dz_k = s_k (L_k - sum_i s_i L_i) / tau, s = softmax((z + g) / tau)."""
    edits, targets = _four_box_setup(toy_clip)
    L = box_losses(toy_clip, edits, targets)
    torch.manual_seed(0)
    net = RegionNetwork(8, 4)
    roi = torch.randn(4, 8, 7, 7)
    tau = 0.7
    logits = net(roi)
    logits.retain_grad()
    y, index = gumbel_softmax_st(logits, torch.Generator().manual_seed(4), tau)
    y.retain_grad()
    loss = (y * L).sum()
    assert float(loss.detach()) == pytest.approx(float(L[index]))
    loss.backward()
    assert torch.equal(y.grad, L)                              # every box gets its own exact loss
    u = torch.rand(4, generator=torch.Generator().manual_seed(4)).clamp(1e-10, 1 - 1e-10)
    s = torch.softmax((logits.detach() - torch.log(-torch.log(u))) / tau, 0)
    manual = s * (L - (s * L).sum()) / tau
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().min() > 0
    assert torch.allclose(logits.grad, manual, rtol=1e-4, atol=1e-8)
    assert net.size_bias.grad.abs().sum() > 0 and net.convs[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("objective", ["gumbel", "expected"])
def test_train_anchor_finds_lowest_loss_box(objective):
    """With known per-box losses (no CLIP needed), training moves the
    network's argmax to the lowest-loss box from a different start."""
    torch.manual_seed(1)
    net = RegionNetwork(8, 5)
    roi = torch.randn(5, 8, 7, 7)
    with torch.no_grad():
        start = int(net(roi).argmax())
    L = torch.full((5,), 1.2)
    best = (start + 2) % 5
    L[best], L[(start + 1) % 5] = 0.9, 1.0
    hist, losses = train_anchor(net, roi, None, None, None, 60, 3e-3, torch.Generator().manual_seed(0),
                                objective=objective, box_loss=L)
    with torch.no_grad():
        assert int(net(roi).argmax()) == best
    assert len(hist) == 60 and losses[-1] < losses[0] + 1e-6
    with pytest.raises(ValueError, match="objective"):
        train_anchor(net, roi, None, None, None, 1, 3e-3, torch.Generator(), objective="nope")


def test_gradient_reaches_logits_image_objective(toy_clip):
    """(a, objective="image", the first version) The CLIP loss of
    X_o = sum_j y_j Edit_j reaches the region network:
    logits.grad is finite and non-zero, and d loss / d y_j equals
    <d loss / d X_o, Edit_j> for every box (not only the sampled one)."""
    sc, image, _ = _toy_scene()
    prompt = f"a blue {sc.objects[0].shape}"
    editor = recolour_editor(prompt)
    boxes = box_proposals(torch.tensor([[32.0, 32.0]]), (0.2, 0.4, 0.6, 0.8), (64, 64))[0]
    edits = torch.cat([editor(image, box_mask(b, (64, 64))) for b in boxes])
    torch.manual_seed(0)
    net = RegionNetwork(8, 4)
    roi = torch.randn(4, 8, 7, 7)
    logits = net(roi)
    logits.retain_grad()
    y, index = gumbel_softmax_st(logits, torch.Generator().manual_seed(0))
    y.retain_grad()
    blended = (y.view(-1, 1, 1, 1) * edits).sum(0, keepdim=True)
    blended.retain_grad()
    assert torch.equal(blended.detach(), edits[index:index + 1])  # forward = the chosen edit
    targets = clip_targets(toy_clip, image, prompt, "a photo")
    loss = region_losses(toy_clip, blended, targets)["total"]
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    assert net.size_bias.grad.abs().sum() > 0 and net.convs[0].weight.grad.abs().sum() > 0
    manual = (blended.grad * edits).flatten(1).sum(1)
    assert torch.allclose(y.grad, manual, rtol=1e-4, atol=1e-7)
    assert len(set(manual.tolist())) == 4  # every box gets its own signal


# ------------------------------------------------------------------ ranking

def test_ranking_formula_known_numbers():
    """(d) S = 2 S_t2i + S_i2i: the image term can overturn the text term."""
    t2i = torch.tensor([0.20, 0.30, 0.25])
    i2i = torch.tensor([0.90, 0.50, 0.70])
    s = ranking_scores(t2i, i2i)
    assert torch.allclose(s, torch.tensor([1.30, 1.10, 1.20]))
    assert int(s.argmax()) == 0 and int(t2i.argmax()) == 1


def test_rank_candidates_uses_clip_cosines(toy_clip):
    _, image, _ = _toy_scene()
    cands = torch.cat([image, image.flip(-1), torch.rand_like(image), image * 0.5])
    scores, t2i, i2i = rank_candidates(toy_clip, cands, image, "a red circle")
    e = toy_clip.encode_image(cands)
    ref_t = (e @ toy_clip.encode_text(["a red circle"]).T)[:, 0]
    ref_i = (e @ toy_clip.encode_image(image).T)[:, 0]
    assert torch.allclose(t2i, ref_t, atol=1e-5) and torch.allclose(i2i, ref_i, atol=1e-5)
    assert torch.allclose(scores, 2 * ref_t + ref_i, atol=1e-5)
    assert i2i[0] == pytest.approx(1.0, abs=1e-4)  # the source itself


# ----------------------------------------------------------------- editors

def test_recolour_editor_changes_only_the_mask():
    _, image, _ = _toy_scene()
    mask = box_mask((8, 8, 24, 24), (64, 64))
    out = recolour_editor("a blue star")(image, mask)
    assert torch.equal(out * (1 - mask), image * (1 - mask))
    inside = out[0, :, 8:24, 8:24]
    assert (inside[2] > inside[0]).all() and (inside[2] > inside[1]).all()  # blue dominates
    assert colour_in_prompt("A Purple circle.")[0] == "purple"
    with pytest.raises(InputError, match="names no colour"):
        recolour_editor("a circle")


# ------------------------------------------------------------------- errors

def test_learn_regions_input_errors(toy_clip):
    from livelayers.engine.models.dino import DINOHandle, ViT, ViTConfig
    from livelayers.engine.regions import learn_regions
    dino = DINOHandle(ViT(ViTConfig(image_size=32, patch_size=8, width=32, depth=1, heads=2)))
    ed = recolour_editor("a red circle")
    img = torch.rand(1, 3, 32, 32)
    with pytest.raises(InputError, match="LL_LearnableRegions: input 'image'"):
        learn_regions(dino, toy_clip, ed, torch.rand(2, 3, 32, 32), "a red circle")
    with pytest.raises(InputError, match="both sides >= 16"):
        learn_regions(dino, toy_clip, ed, torch.rand(1, 3, 8, 32), "a red circle")
    with pytest.raises(InputError, match="'prompt'"):
        learn_regions(dino, toy_clip, ed, img, "  ")
    with pytest.raises(InputError, match="'anchors'"):
        learn_regions(dino, toy_clip, ed, img, "a red circle", K=0)
    with pytest.raises(InputError, match="'box_sizes'"):
        learn_regions(dino, toy_clip, ed, img, "a red circle", box_sizes=(0.5, 1.5))
    with pytest.raises(InputError, match="'objective'.*gumbel"):
        learn_regions(dino, toy_clip, ed, img, "a red circle", objective="linear")
    with pytest.raises(ValueError, match="editor returned"):
        learn_regions(dino, toy_clip, lambda i, m: i[:, :1], img, "a red circle", K=1, M=1, steps=0)


def test_learn_regions_small_run_is_deterministic(toy_clip):
    """A tiny end-to-end run: outputs are consistent with each other and a
    second run with the same seed is identical."""
    from livelayers.engine.models.dino import DINOHandle, ViT, ViTConfig
    from livelayers.engine.regions import learn_regions
    torch.manual_seed(0)
    dino = DINOHandle(ViT(ViTConfig(image_size=64, patch_size=8, width=32, depth=2, heads=2)))
    sc, image, _ = _toy_scene()
    prompt = f"a blue {sc.objects[0].shape}"
    runs = [learn_regions(dino, toy_clip, recolour_editor(prompt), image, prompt, K=2, M=3,
                          steps=3, seed=7) for _ in range(2)]
    r = runs[0]
    assert r.history == runs[1].history and r.box == runs[1].box
    assert torch.equal(r.image, runs[1].image)
    assert r.boxes.shape == (2, 3, 4) and len(r.history[0]) == 3
    assert r.best_anchor == int(r.scores.argmax())
    assert tuple(r.boxes[r.best_anchor, r.choices[r.best_anchor]].int().tolist()) == r.box
    x0, y0, x1, y1 = r.box
    assert r.mask.sum() == (x1 - x0) * (y1 - y0)
    assert torch.equal(r.image * (1 - r.mask), image * (1 - r.mask))  # edit only inside the box
    assert torch.equal(r.layer_alpha, r.mask)
    # the default objective logs the exact loss of the sampled box at every step
    assert r.box_losses.shape == (2, 3) and len(r.expected_losses) == 2
    for a in range(2):
        assert r.losses[a] == pytest.approx([float(r.box_losses[a, j]) for j in r.history[a]])
        assert r.box_losses[a].min() - 1e-6 <= r.expected_losses[a] <= r.box_losses[a].max() + 1e-6


# ------------------------------------------------------------------- nodes

def test_nodes_follow_conventions():
    from livelayers.nodes.regions_nodes import NODE_CLASS_MAPPINGS
    assert set(NODE_CLASS_MAPPINGS) == {"LL_LoadDINO", "LL_LearnableRegions"}
    for name, cls in NODE_CLASS_MAPPINGS.items():
        assert cls.__name__ == name and cls.CATEGORY == "LiveLayers/regions" and cls.DESCRIPTION
        assert len(cls.RETURN_NAMES) == len(cls.RETURN_TYPES)
        spec = cls.INPUT_TYPES()
        for group in spec.values():
            for inp, (_, opts) in group.items():
                assert opts.get("tooltip"), f"{name}.{inp} has no tooltip"


def test_load_dino_node_errors(tmp_path):
    from livelayers.engine.errors import ModelNotFoundError
    from livelayers.nodes.regions_nodes import LL_LoadDINO
    with pytest.raises(InputError, match="LL_LoadDINO: input 'model' is empty"):
        LL_LoadDINO().load("")
    with pytest.raises(InputError, match="'device'"):
        LL_LoadDINO().load("toy-dino", device="tpu")
    with pytest.raises(ModelNotFoundError):
        LL_LoadDINO().load(f"local-dir:{tmp_path / 'none'}", device="cpu")


def test_learnable_regions_node_rejects_batches():
    from livelayers.nodes.regions_nodes import LL_LearnableRegions
    with pytest.raises(InputError, match="a single image"):
        LL_LearnableRegions().run(None, None, None, torch.rand(2, 32, 32, 3), "a red circle")
    with pytest.raises(InputError, match="smallest_box"):
        LL_LearnableRegions().run(None, None, None, torch.rand(1, 32, 32, 3), "a red circle",
                                  smallest_box=0.9, largest_box=0.5)


def test_load_dino_node_loads_and_keeps_corrupt_error(assets, tmp_path):
    from livelayers.engine.errors import CorruptFileError
    from livelayers.nodes.regions_nodes import LL_LoadDINO
    (dino,) = LL_LoadDINO().load(f"local-dir:{assets / 'toy_dino'}", device="cpu")
    assert dino.patch_size == 8 and dino.embed_dim == 96
    (tmp_path / "bad.pth").write_bytes(b"junk")
    with pytest.raises(CorruptFileError):
        LL_LoadDINO().load(str(tmp_path / "bad.pth"), device="cpu")
