"""Learnable regions, fast unit tests: anchors (DINO at its working size),
boxes, RoI features, the foreground recolour editor, the seeded
straight-through Gumbel sample, the gradient path to the region network's
logits, the ranking formula, the three modes (editor runs, which proposals
are edited, what is picked), the region model on disk, input errors and the
nodes."""
from __future__ import annotations

import pytest
import torch

from livelayers.engine.errors import InputError
from livelayers.engine.regions import (RegionNetwork, anchors_from_attention, box_iou, box_losses,
                                       box_mask, box_proposals, box_sizes_for, clip_targets,
                                       colour_in_prompt, edit_losses, gumbel_softmax_st,
                                       rank_candidates, ranking_scores, recolour_editor,
                                       region_losses, roi_features, top_k_peaks, train_anchor)
from livelayers.toyworld.scenes import COLOURS


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

    from livelayers.toyworld import scenes
    rng = np.random.default_rng(seed)
    sc = scenes.random_scene(rng, 1)
    img, masks = scenes.render_scene(sc, size)
    return sc, torch.from_numpy(img).permute(2, 0, 1)[None], torch.from_numpy(masks)


def _four_box_setup(toy_clip):
    sc, image, _ = _toy_scene()
    prompt = f"a blue {sc.objects[0].shape}"
    editor = recolour_editor(prompt, colours=COLOURS)
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
    editor = recolour_editor(prompt, colours=COLOURS)
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
    out = recolour_editor("a blue star", colours=COLOURS)(image, mask)
    assert torch.equal(out * (1 - mask), image * (1 - mask))
    inside = out[0, :, 8:24, 8:24]
    assert (inside[2] > inside[0]).all() and (inside[2] > inside[1]).all()  # blue dominates
    assert colour_in_prompt("A Purple circle.", COLOURS)[0] == "purple"
    with pytest.raises(InputError, match="names no colour"):
        recolour_editor("a circle", colours=COLOURS)


# ------------------------------------------------------------------- errors

def test_learn_regions_input_errors(toy_clip):
    from livelayers.engine.models.dino import DINOHandle, ViT, ViTConfig
    from livelayers.engine.regions import learn_regions
    dino = DINOHandle(ViT(ViTConfig(image_size=32, patch_size=8, width=32, depth=1, heads=2)))
    ed = recolour_editor("a red circle", colours=COLOURS)
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
    runs = [learn_regions(dino, toy_clip, recolour_editor(prompt, colours=COLOURS), image, prompt, K=2, M=3,
                          mode="per-image", proposals_per_anchor=0, steps=3, seed=7) for _ in range(2)]
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


# ------------------------------------------------ DINO at its working size

class _PeakDINO:
    """A stand-in DINO handle (working size 64, patch 8) whose CLS attention
    peaks at one patch of whatever grid it is given; records what it saw."""
    patch_size, image_size, embed_dim, device = 8, 64, 4, torch.device("cpu")

    def __init__(self, row_frac=0.3, col_frac=0.7):
        self.row_frac, self.col_frac, self.seen = row_frac, col_frac, []

    def __call__(self, x, node="LL_DINO"):
        from livelayers.engine.models.dino import DINOOutput
        self.seen.append(tuple(x.shape[-2:]))
        h, w = x.shape[-2] // 8, x.shape[-1] // 8
        attn = torch.zeros(1, 2, h, w)
        attn[..., int(self.row_frac * h), int(self.col_frac * w)] = 1.0
        return DINOOutput(features=torch.zeros(1, h * w, 4), cls=torch.zeros(1, 4), attention=attn,
                          grid=(h, w))


def test_dino_sees_its_working_size_and_anchors_map_back():
    """A 32 px image is shown to DINO at 64 px (8 x 8 patches, not 4 x 4) and
    the anchor comes back in the image's own pixels; other sizes and aspect
    ratios likewise; "image" keeps the old behaviour."""
    from livelayers.engine.regions import dino_anchors, dino_view
    dino = _PeakDINO()
    found = dino_anchors(dino, torch.rand(1, 3, 32, 32), k=1)
    assert dino.seen[-1] == (64, 64) and found.view_hw == (64, 64)
    # peak at grid (row 2, col 5) of 8 x 8 -> centre (5.5, 2.5) patches -> x 5.5 * 4, y 2.5 * 4 in 32 px
    assert found.anchors.tolist() == [[22.0, 10.0]]
    found = dino_anchors(dino, torch.rand(1, 3, 128, 256), k=1)           # aspect 2:1 kept
    assert dino.seen[-1] == (64, 128)
    assert found.anchors.tolist() == [[(11 + 0.5) * 16, (2 + 0.5) * 16]]
    dino_anchors(dino, torch.rand(1, 3, 32, 32), k=1, size="image")
    assert dino.seen[-1] == (32, 32)
    assert dino_view(torch.rand(1, 3, 30, 45), 8, "image").shape[-2:] == (24, 40)
    assert dino_view(torch.rand(1, 3, 30, 45), 8, 64).shape[-2:] == (64, 96)


# ------------------------------------------------------ foreground recolour

def test_foreground_recolour_paints_the_object_not_the_background():
    """region="foreground" repaints only what stands out from the box's
    surroundings: the whole object when the box holds it, the part inside
    when the box clips a corner, nothing when the box lies inside the object."""
    sc, image, masks = _toy_scene(seed=3)
    obj = masks[0] >= 0.5
    ys, xs = torch.nonzero(obj, as_tuple=True)
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    edit = recolour_editor("a blue star", region="foreground", colours=COLOURS)
    changed = lambda out: (out - image).abs().sum(1)[0] > 0.05   # noqa: E731
    big = changed(edit(image, box_mask((max(0, x0 - 6), max(0, y0 - 6), x1 + 6, y1 + 6), (64, 64))))
    assert big[obj].float().mean() > 0.9           # the object is repainted
    assert big[masks[0] == 0].float().mean() < 0.02  # the background is kept
    clipped = changed(edit(image, box_mask((x0 + 2, y0 + 2, x1 + 6, y1 + 6), (64, 64))))
    inside_box = torch.zeros_like(obj)
    inside_box[y0 + 2:y1 + 6, x0 + 2:x1 + 6] = True
    assert clipped[obj & inside_box].float().mean() > 0.8
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    inner = edit(image, box_mask((cx - 2, cy - 2, cx + 2, cy + 2), (64, 64)))
    assert torch.equal(inner, image)
    with pytest.raises(InputError, match="'region'"):
        recolour_editor("a blue star", region="blob", colours=COLOURS)


# ---------------------------------------------------- the amortised network

def test_box_geometry_and_amortised_network_shapes():
    from livelayers.engine.regions import AmortisedRegionNetwork, BoundRegionNetwork, box_geometry
    boxes = box_proposals(torch.tensor([[32.0, 32.0], [2.0, 2.0]]), (0.25, 0.5), (64, 64))
    g = box_geometry(boxes, (0.25, 0.5), (64, 64))
    assert g.shape == (2, 2, 4)
    assert g[0, 1].tolist() == pytest.approx([0.5, 0.5, 0.5, 1.0])
    assert g[1, 1, 3] < 0.5                              # clipped at the corner: area kept < 1
    torch.manual_seed(0)
    net = AmortisedRegionNetwork(8, 16, hidden=16, geometry_dim=4)
    roi, text = torch.randn(2, 2, 8, 7, 7), torch.randn(1, 16)
    z = net(roi, text, g)
    assert z.shape == (2, 2)
    assert torch.allclose(net(roi, text.expand(2, -1), g), z, atol=1e-6)   # one text per anchor
    assert not torch.allclose(net(roi, torch.randn(1, 16), g), z)         # the text matters
    bound = BoundRegionNetwork(net, text, g[1])
    assert torch.allclose(bound(roi[1]), z[1], atol=1e-6)


def test_dino_cues_read_the_anchor_object_extent():
    """Affinity share inside the box rises to ~1 once the box holds the
    anchor's object; the ring affinity is high when the box cuts it."""
    from livelayers.engine.regions import dino_cues
    fmap = torch.zeros(1, 2, 8, 8)
    fmap[0, 0] = 1.0
    fmap[0, 0, 2:5, 2:5], fmap[0, 1, 2:5, 2:5] = 0.0, 1.0   # an "object" of 3 x 3 patches (16..40 px)
    sal = torch.zeros(8, 8)
    sal[2:5, 2:5] = 1.0
    anchors = torch.tensor([[28.0, 28.0]])
    boxes = torch.tensor([[[24, 24, 32, 32], [12, 12, 44, 44], [0, 0, 64, 64]]])
    cues = dino_cues(fmap, sal, anchors, boxes, (64, 64))
    assert cues.shape == (1, 3, 3)
    inside, ring, sal_in = cues[0].T
    assert inside[0] < 0.3 < 0.9 < inside[1] and inside[2] == pytest.approx(1.0)
    assert ring[0] > 0.9 and ring[1] < 0.2
    assert sal_in[1] > 0.9 and sal_in[2] == pytest.approx(1.0)


def test_top_r_lowest_loss_and_pick():
    from livelayers.engine.regions import lowest_loss, pick, top_r
    logits = torch.tensor([[0.1, 2.0, 2.0, -1.0], [3.0, 0.0, 1.0, 2.0]])
    assert top_r(logits, 1).int().tolist() == [[0, 1, 0, 0], [1, 0, 0, 0]]   # tie: the smaller box
    assert top_r(logits, 2).int().tolist() == [[0, 1, 1, 0], [1, 0, 0, 1]]
    nan = float("nan")
    L = torch.tensor([[nan, 1.0, 0.5, nan], [0.7, nan, nan, 0.7]])
    assert lowest_loss(L) == [2, 0]                                          # equal: the first
    S = torch.tensor([[nan, 0.2, 0.1, nan], [0.3, nan, nan, 0.9]])
    assert pick(L, S, [2, 0], "score") == 1 and pick(L, S, [2, 0], "loss") == 0


def _tiny_setup(toy_clip, seed=0):
    from livelayers.engine.models.dino import DINOHandle, ViT, ViTConfig
    from livelayers.engine.regions import AmortisedRegionNetwork, RegionModel
    torch.manual_seed(seed)
    dino = DINOHandle(ViT(ViTConfig(image_size=64, patch_size=8, width=32, depth=2, heads=2)))
    net = AmortisedRegionNetwork(32, toy_clip.embed_dim, hidden=16).eval().requires_grad_(False)
    return dino, RegionModel(net, box_sizes_for(4))


class _Counting:
    def __init__(self, editor):
        self.editor, self.calls = editor, 0

    def __call__(self, image, mask):
        self.calls += 1
        return self.editor(image, mask)


def test_modes_editor_runs_and_choices(toy_clip):
    """exhaustive edits all K·M proposals and keeps each anchor's lowest
    loss; amortised edits exactly the network's top-r per anchor (K·r runs)
    and keeps the lowest loss among them; per-image trains on the edited
    ones. The editor-run count is in the result, its metadata and the progress."""
    from livelayers.engine.progress import Progress
    from livelayers.engine.regions import learn_regions, top_r
    dino, model = _tiny_setup(toy_clip)
    sc, image, _ = _toy_scene()
    prompt = f"a blue {sc.objects[0].shape}"
    common = dict(K=3, M=4, seed=1, source_prompt=f"a {sc.objects[0].colour} {sc.objects[0].shape}")
    seen = []
    ed = _Counting(recolour_editor(prompt, region="foreground", colours=COLOURS))
    ex = learn_regions(dino, toy_clip, ed, image, prompt, mode="exhaustive",
                       progress=Progress(callback=lambda s, t, info: seen.append((s, t, info))), **common)
    k = ex.anchors.shape[0]
    assert ed.calls == ex.editor_runs == k * 4 and ex.edited.all()
    assert ex.metadata()["editor_runs"] == k * 4 and ex.metadata()["mode"] == "exhaustive"
    assert seen[-1][2]["editor_runs"] == k * 4 and seen[-1][0] == seen[-1][1] == k * 4
    assert ex.choices == [int(row.argmin()) for row in ex.box_losses]
    assert ex.best_anchor == int(ex.scores.argmax())
    for r in (1, 2):
        ed = _Counting(recolour_editor(prompt, region="foreground", colours=COLOURS))
        am = learn_regions(dino, toy_clip, ed, image, prompt, mode="amortised", proposals_per_anchor=r,
                           region_model=model, **common)
        assert ed.calls == am.editor_runs == k * r
        assert torch.equal(am.edited, top_r(am.proposal_logits, r))
        assert torch.isnan(am.box_losses[~am.edited]).all()
        assert torch.allclose(am.box_losses[am.edited], ex.box_losses[am.edited], atol=1e-5)  # same edits
        for a, j in enumerate(am.choices):
            assert am.edited[a, j] and am.box_losses[a, j] == am.box_losses[a][am.edited[a]].min()
    ed = _Counting(recolour_editor(prompt, region="foreground", colours=COLOURS))
    pi = learn_regions(dino, toy_clip, ed, image, prompt, mode="per-image", proposals_per_anchor=2,
                       region_model=model, steps=4, **common)
    assert ed.calls == pi.editor_runs == 2 * k and len(pi.history[0]) == 4
    for a in range(k):
        assert all(pi.edited[a, j] for j in pi.history[a] + [pi.choices[a]])


def test_mode_input_errors(toy_clip):
    from livelayers.engine.regions import AmortisedRegionNetwork, RegionModel, learn_regions
    dino, model = _tiny_setup(toy_clip)
    img, ed = torch.rand(1, 3, 64, 64), recolour_editor("a red circle", colours=COLOURS)
    run = lambda **kw: learn_regions(dino, toy_clip, ed, img, "a red circle", K=1, M=3, **kw)  # noqa: E731
    with pytest.raises(InputError, match="'mode'.*exhaustive, amortised, per-image"):
        run(mode="greedy")
    with pytest.raises(InputError, match="'rank'"):
        run(rank="vibes")
    with pytest.raises(InputError, match="'region_model' is missing"):
        run(mode="amortised")
    with pytest.raises(InputError, match="'proposals_per_anchor' is 1 in mode 'per-image'"):
        run(mode="per-image", proposals_per_anchor=1, region_model=model)
    with pytest.raises(InputError, match="'proposals_per_anchor' is 2 with no region model"):
        run(mode="per-image", proposals_per_anchor=2)
    wrong = RegionModel(AmortisedRegionNetwork(96, toy_clip.embed_dim), box_sizes_for(3), dino="toy-dino")
    with pytest.raises(InputError, match="'region_model' was trained on DINO features of width 96"):
        run(mode="amortised", region_model=wrong)


def test_region_model_round_trip_and_errors(toy_clip, tmp_path):
    from livelayers.engine.errors import CorruptFileError, ModelNotFoundError
    from livelayers.engine.regions import load_region_model, save_region_model
    _, model = _tiny_setup(toy_clip)
    save_region_model(model.network, tmp_path / "m", box_sizes_for(4), dino="d", clip="c",
                      report={"hit": 0.5}, half=False)
    back = load_region_model(f"local-dir:{tmp_path / 'm'}")
    assert back.box_sizes == pytest.approx(box_sizes_for(4)) and back.report == {"hit": 0.5}
    roi, text = torch.randn(2, 4, 32, 7, 7), torch.randn(1, toy_clip.embed_dim)
    g = torch.rand(2, 4, 7)
    assert torch.equal(back.network(roi, text, g), model.network(roi, text, g))
    with pytest.raises(InputError, match="'region_model'"):
        load_region_model(" ")
    with pytest.raises(ModelNotFoundError):
        load_region_model(f"local-dir:{tmp_path / 'none'}")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text('{"format": "something"}')
    (tmp_path / "bad" / "model.safetensors").write_bytes(b"junk")
    with pytest.raises(CorruptFileError, match="not a LiveLayers region model"):
        load_region_model(str(tmp_path / "bad"))


def test_toy_region_model_loads_by_catalogue_id():
    from livelayers.engine.regions import load_region_model
    m = load_region_model("toy-regions")
    assert (m.feature_dim, m.text_dim) == (96, 128) and len(m.box_sizes) == 7
    assert m.dino == "toy-dino" and m.clip == "toy-clip-v2"


def test_quiet_progress_shows_nothing_but_stops_with_the_callers():
    from livelayers.engine.errors import Cancelled
    from livelayers.engine.progress import Progress
    from livelayers.engine.regions import quiet_progress
    stop, seen = [False], []
    caller = Progress(callback=lambda s, t, i: seen.append(s), should_stop=lambda: stop[0], label="LL_X")
    quiet = quiet_progress(caller)
    quiet.update(1, 10)
    assert seen == [] and quiet.label == "LL_X"         # the caller's bar is not touched
    stop[0] = True
    with pytest.raises(Cancelled):
        quiet.update(2, 10)
    quiet_progress(Progress()).update(1, 1)               # a caller without a stop hook


def test_learnable_regions_node_amortised_reports_editor_runs(assets, toy_clip, monkeypatch):
    """The node in amortised mode with the toy models (the diffusion editor
    swapped for the recolour editor): K editor runs, reported in 'info'."""
    import json

    import livelayers.engine.regions as regions
    from livelayers.engine.models.dino import load_dino
    from livelayers.nodes.regions_nodes import LL_LearnableRegions
    calls = []

    def fake_diffusion_editor(handle, clip, prompt, **kw):
        inner = recolour_editor(prompt, region="foreground", colours=COLOURS)
        return lambda image, mask: calls.append(1) or inner(image, mask)

    monkeypatch.setattr(regions, "diffusion_editor", fake_diffusion_editor)
    dino = load_dino(f"local-dir:{assets / 'toy_dino'}", device="cpu")
    _, image, _ = _toy_scene()
    out = LL_LearnableRegions().run(dino, toy_clip, None, image.permute(0, 2, 3, 1), "a blue circle",
                                    anchors=3, boxes_per_anchor=7, mode="amortised",
                                    proposals_per_anchor=1)
    info = json.loads(out["result"][4])
    assert info["mode"] == "amortised" and info["editor_runs"] == len(calls) == info["anchors"]
    assert info["proposals"] == 7 * info["anchors"] and "editor runs" in out["ui"]["text"][0]
    edited, box_mask_ = out["result"][0], out["result"][1]
    assert edited.shape == (1, 64, 64, 3) and box_mask_.sum() > 0


def test_train_regions_script_runs_and_resumes(tmp_path, one_thread):
    """The docs' training command, tiny: writes a loadable region model;
    a second run with the same run_dir reuses the edited tables and the
    checkpoint and gives the same weights."""
    from livelayers.engine.regions import load_region_model
    from livelayers.toyworld import train_regions
    args = ["--images", "4", "--steps", "3", "--eval-images", "0", "--threads", "1",
            "--run-dir", str(tmp_path / "run")]
    train_regions.main(["--out", str(tmp_path / "a"), *args])
    assert (tmp_path / "run" / "tables.pt").is_file() and (tmp_path / "run" / "checkpoint.pt").is_file()
    a = load_region_model(f"local-dir:{tmp_path / 'a'}")
    assert a.report["images"] == 4 and (a.feature_dim, a.text_dim) == (96, 128)
    train_regions.main(["--out", str(tmp_path / "b"), *args])
    b = load_region_model(f"local-dir:{tmp_path / 'b'}")
    for (k, v), w in zip(a.network.state_dict().items(), b.network.state_dict().values()):
        assert torch.equal(v, w), k
