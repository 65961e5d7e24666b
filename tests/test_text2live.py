"""Text2LIVE unit tests: loss terms vs hand-computed values, generator shape and
size handling, differentiable views, checkpoint/resume, determinism, files, nodes.

These use a randomly initialised toy-sized CLIP (same architecture as the toy
model), so they do not wait for the trained toy CLIP; quality tests that need
a CLIP that understands words are in test_text2live_quality.py.
"""
from __future__ import annotations

import math

import pytest
import torch

from livelayers.engine import augment as W
from livelayers.engine.errors import Cancelled, InputError
from livelayers.engine.progress import Progress
from livelayers.engine.text2live import augment as A
from livelayers.engine.text2live import losses as L
from livelayers.engine.text2live.generator import (GeneratorConfig, SkipGenerator, apply_generator,
                                                   count_parameters, load_generator, save_generator)
from livelayers.engine.text2live.settings import TEMPLATES, Text2LIVESettings
from livelayers.engine.text2live.trainer import (GENERATOR_FILE, _lr_at, calibrate_batchnorm,
                                                 train_text2live)
from livelayers.toyworld import scenes

TINY_GEN = GeneratorConfig(scales=3, channels_down=16, channels_up=16)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def scene_image():
    """(1, 3, 64, 64) red circle + yellow square on grass, and the circle's mask (1, 1, 64, 64)."""
    sc = scenes.ToyScene("grass", (scenes.ToyObject("circle", "red", "plain", 0.3, 0.35, 0.2),
                                   scenes.ToyObject("square", "yellow", "plain", 0.7, 0.68, 0.17)), seed=3)
    img, masks = scenes.render_scene(sc, 64)
    return torch.from_numpy(img).permute(2, 0, 1)[None], torch.from_numpy(masks[:1])[None]


def tiny_settings(**kw) -> Text2LIVESettings:
    base = dict(steps=6, resolution=0, views=3, generator=TINY_GEN, checkpoint_every=2,
                bootstrap_steps=6)
    base.update(kw)
    return Text2LIVESettings(**base)


# --------------------------------------------------------------------------- losses

def test_spherical_distance_known_values():
    e = torch.eye(4)
    assert L.spherical_distance(e[0], e[0]).item() == pytest.approx(0.0, abs=1e-6)
    assert L.spherical_distance(e[0], e[1]).item() == pytest.approx(math.pi ** 2 / 8, rel=1e-5)
    assert L.spherical_distance(e[0], -e[0]).item() == pytest.approx(math.pi ** 2 / 2, rel=1e-4)
    # 60 degrees apart: θ²/2 = (π/3)²/2; inputs need not be normalised.
    v = torch.tensor([0.5, math.sqrt(3) / 2, 0.0, 0.0]) * 7
    assert L.spherical_distance(e[0], v).item() == pytest.approx((math.pi / 3) ** 2 / 2, rel=1e-5)


def test_clip_text_loss_averages_views_and_texts():
    e = torch.eye(3)
    views = torch.stack([e[0], e[1]])
    texts = torch.stack([e[0], e[0], e[2]])
    # pairs: (0,0)=0 twice, (0,2)=π²/8, (1,0)=π²/8 twice, (1,2)=π²/8 -> 4·π²/8 / 6
    assert L.clip_text_loss(views, texts).item() == pytest.approx(4 * math.pi ** 2 / 8 / 6, rel=1e-5)
    assert L.clip_text_loss(views, texts, "cosine").item() == pytest.approx(4 / 6, rel=1e-5)


def test_direction_loss_aligned_and_opposed():
    src = torch.tensor([[1.0, 0.0, 0.0]])
    t, roi = torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([[0.0, 0.0, 1.0]])
    along = src + 0.3 * (t - roi)
    against = src - 0.3 * (t - roi)
    assert L.direction_loss(along, src, t, roi).item() == pytest.approx(0.0, abs=1e-6)
    assert L.direction_loss(against, src, t, roi).item() == pytest.approx(2.0, abs=1e-6)
    both = torch.cat([along, against])
    assert L.direction_loss(both, src, t, roi).item() == pytest.approx(1.0, abs=1e-6)


def test_structure_loss_hand_computed():
    a = torch.tensor([[[1.0, 0.0], [0.0, 3.0]]])   # orthogonal tokens: S = I
    b = torch.tensor([[[2.0, 0.0], [5.0, 0.0]]])   # parallel tokens:  S = ones
    assert L.structure_loss(a, a).item() == pytest.approx(0.0, abs=1e-7)
    assert L.structure_loss(a, b).item() == pytest.approx(0.5, abs=1e-6)
    # the source side carries no gradient
    a2 = a.clone().requires_grad_(True)
    b2 = b.clone().requires_grad_(True)
    L.structure_loss(a2 + 0.1, b2).backward()
    assert b2.grad is None and a2.grad is not None


def test_sparsity_formula():
    zero = torch.zeros(1, 1, 4, 4)
    assert L.sparsity_loss(zero).item() == pytest.approx(0.0, abs=1e-9)
    half = torch.full((1, 1, 4, 4), 0.5)
    sig = 1 / (1 + math.exp(-2.5))
    assert L.sparsity_loss(half).item() == pytest.approx(0.01 * 0.5 + 0.01 * (2 * sig - 1), rel=1e-5)
    # mixed matte: mean over pixels of each term
    mixed = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2)
    sig5 = 1 / (1 + math.exp(-5))
    want = 0.2 * 0.5 + 0.3 * (2 * sig5 - 1) / 2
    assert L.sparsity_loss(mixed, l1=0.2, l0=0.3).item() == pytest.approx(want, rel=1e-5)


def test_bootstrap_schedule_and_summed_loss():
    assert L.bootstrap_weight(0, 10, 1000) == 10
    assert L.bootstrap_weight(250, 10, 1000) == pytest.approx(7.5)
    assert L.bootstrap_weight(1000, 10, 1000) == 0
    assert L.bootstrap_weight(5000, 10, 1000) == 0
    assert L.bootstrap_weight(3, 10, 0) == 0
    alpha = torch.stack([torch.full((1, 4, 4), 0.5), torch.full((1, 4, 4), 0.2)])
    target = torch.zeros(2, 1, 8, 8)  # alpha is resized to the target's size
    # per-sample MSE 0.25 and 0.04, SUMMED (the official code kept only the last one)
    assert L.bootstrap_loss(alpha, target).item() == pytest.approx(0.29, rel=1e-5)


def test_green_screen_composite():
    c = torch.ones(1, 3, 2, 2)
    for a, want in ((0.0, (0, 177 / 255, 64 / 255)), (1.0, (1, 1, 1)),
                    (0.5, (0.5, 0.5 + 177 / 510, 0.5 + 32 / 255))):
        out = L.green_screen(c, torch.full((1, 1, 2, 2), a))
        assert torch.allclose(out[0, :, 0, 0], torch.tensor(want, dtype=torch.float32), atol=1e-6)


def test_lr_schedule():
    s = Text2LIVESettings()
    assert _lr_at(0, s) == pytest.approx(2.5e-3)
    assert _lr_at(10, s) == pytest.approx(2.5e-3 * 0.99 ** 10)
    assert _lr_at(5000, s) == pytest.approx(1e-5)


def test_templates_are_the_fourteen():
    assert len(TEMPLATES) == 14 and TEMPLATES[:3] == ("photo of {}.", "high quality photo of {}.",
                                                     "a photo of {}.")
    assert scenes.TEMPLATES is TEMPLATES  # the toy CLIP's captions are Text2LIVE's prompts, one list


# --------------------------------------------------------------------------- generator

def test_generator_param_count_default():
    n = count_parameters(SkipGenerator())
    assert abs(n - 3.1e6) / 3.1e6 < 0.15, n


@pytest.mark.parametrize("h,w", [(37, 50), (64, 64), (33, 129)])
def test_generator_any_size(h, w):
    g = SkipGenerator(GeneratorConfig(scales=5, channels_down=8, channels_up=8))
    y = g(torch.rand(2, 3, h, w))
    assert y.shape == (2, 4, h, w)
    assert float(y.detach().min()) > 0 and float(y.detach().max()) < 1
    # deepest map >= 2 px, padded size a multiple of 2**scales
    ph, pw = g.padded_size(h, w)
    assert ph % 32 == 0 and pw % 32 == 0 and min(ph, pw) >= 64


def test_generator_head_uses_decorrelation_matrix():
    g = SkipGenerator(TINY_GEN).eval()
    x = torch.rand(1, 3, 24, 24)
    assert g.padded_size(24, 24) == (24, 24)  # a multiple of 2**3 and >= 2**4: no padding
    feats = g.head(g.body(x))
    rgb = torch.einsum("ij,njhw->nihw", g.color_matrix, feats[:, :3])
    want = torch.sigmoid(torch.cat([rgb, feats[:, 3:]], 1))
    assert torch.allclose(g(x), want, atol=1e-5)


def test_tiled_inference_matches_untiled():
    torch.manual_seed(1)
    g = SkipGenerator(GeneratorConfig(scales=3, channels_down=8, channels_up=8))
    x = torch.rand(1, 3, 96, 160)
    calibrate_batchnorm(g, x)
    c0, a0 = apply_generator(g, x)
    c1, a1 = apply_generator(g, x, tile=64, overlap=32)
    assert c1.shape == c0.shape and a1.shape == a0.shape
    err = max((c1 - c0).abs().mean().item(), (a1 - a0).abs().mean().item())
    assert err < 0.01, err


def test_generator_file_round_trip(tmp_path):
    g = SkipGenerator(TINY_GEN)
    x = torch.rand(1, 3, 40, 48)
    calibrate_batchnorm(g, x)
    path = save_generator(g, tmp_path / "g.safetensors", metadata={"prompt": "blue circle"})
    g2 = load_generator(path)
    assert g2.config == TINY_GEN and g2.info["prompt"] == "blue circle"
    assert torch.equal(apply_generator(g, x)[1], apply_generator(g2, x)[1])
    (tmp_path / "bad.safetensors").write_bytes(b"nonsense")
    from livelayers.engine.errors import CorruptFileError
    with pytest.raises(CorruptFileError):
        load_generator(tmp_path / "bad.safetensors")


# --------------------------------------------------------------------------- augmentations

def test_whole_view_is_the_image_and_views_keep_gradients():
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    gen = torch.Generator().manual_seed(0)
    views = A.clip_views(x, 6, 64, gen)
    assert views.shape == (6, 3, 64, 64)
    assert torch.allclose(views[0], x[0], atol=1e-5)  # view 1 = the whole image, clean
    for i in range(6):
        (g,) = torch.autograd.grad(views[i].sum(), x, retain_graph=True)
        assert g.abs().sum() > 0, f"view {i} lost its gradient"


def test_views_differ_per_source_and_are_seeded():
    x = torch.rand(2, 3, 48, 48)
    v1 = A.clip_views(x, 4, 32, torch.Generator().manual_seed(5))
    v2 = A.clip_views(x, 4, 32, torch.Generator().manual_seed(5))
    assert torch.equal(v1, v2)
    assert v1.shape == (8, 3, 32, 32)
    assert not torch.allclose(v1[1], v1[5])


def test_perspective_homography_maps_corners():
    dst = torch.tensor([[[-0.8, -0.9], [0.7, -1.0], [1.0, 0.6], [-1.0, 0.9]]])
    h = W.homographies_from_corners(dst)[0]
    for k, (x, y) in enumerate([(-1, -1), (1, -1), (1, 1), (-1, 1)]):
        p = h @ torch.tensor([x, y, 1.0])
        assert torch.allclose(p[:2] / p[2], dst[0, k], atol=1e-5)


def test_training_crop_moves_mask_with_image():
    gen = torch.Generator().manual_seed(3)
    mask = (torch.rand(1, 1, 60, 80) > 0.5).float()
    image = mask.expand(1, 3, 60, 80)
    cfg = A.CropSettings(jitter_p=0.0)
    for _ in range(5):
        crop, mcrop = A.training_crop(image, gen, cfg, extra=mask)
        h, w = crop.shape[-2:]
        assert 0.8 * 0.85 * 60 - 1 <= h <= 1.2 * 60 + 1 and 0.8 * 0.85 * 80 - 1 <= w <= 1.2 * 80 + 1
        assert torch.allclose(crop[:, :1], mcrop, atol=1e-6)


def test_colour_jitter_off_is_identity_and_grayscale():
    x = torch.rand(3, 3, 8, 8)
    gen = torch.Generator().manual_seed(0)
    assert torch.allclose(A.colour_jitter(x, gen, 0.1, torch.zeros(3, dtype=torch.bool)), x, atol=1e-5)
    g = A.random_grayscale(x, torch.tensor([True, False, False]))
    assert torch.allclose(g[0, 0], g[0, 1]) and torch.equal(g[1], x[1])


# --------------------------------------------------------------------------- training runs

def _flat(gen: SkipGenerator) -> torch.Tensor:
    return torch.cat([t.flatten().float() for t in gen.state_dict().values()])


def test_same_seed_same_output_different_seed_differs(random_clip, scene_image):
    x, mask = scene_image
    s = tiny_settings(steps=4)
    runs = [train_text2live(random_clip, x, "blue circle", roi_text="red circle", bootstrap_mask=mask,
                            settings=s, seed=seed) for seed in (7, 7, 8)]
    outs = [apply_generator(r.generator, x) for r in runs]
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    assert runs[0].losses["total"] == runs[1].losses["total"]
    assert not torch.equal(outs[0][1], outs[2][1])


def test_cancel_and_resume_matches_uninterrupted(random_clip, scene_image, tmp_path):
    x, mask = scene_image
    s = tiny_settings(steps=6)
    kw = dict(roi_text="red circle", bootstrap_mask=mask, settings=s, seed=3)
    full = train_text2live(random_clip, x, "blue circle", run_dir=tmp_path / "a", **kw)
    assert (tmp_path / "a" / GENERATOR_FILE).is_file()

    seen = []
    stopper = Progress(callback=lambda step, total, info: seen.append(step),
                       should_stop=lambda: len(seen) >= 3)
    with pytest.raises(Cancelled):
        train_text2live(random_clip, x, "blue circle", run_dir=tmp_path / "b", progress=stopper, **kw)
    assert (tmp_path / "b" / "checkpoint.pt").is_file() and not (tmp_path / "b" / GENERATOR_FILE).exists()
    resumed = train_text2live(random_clip, x, "blue circle", run_dir=tmp_path / "b", **kw)
    assert resumed.losses["total"] == full.losses["total"] and len(full.losses["total"]) == 6
    assert torch.equal(_flat(resumed.generator), _flat(full.generator))
    # a different run in the same folder is refused, not silently mixed
    with pytest.raises(InputError, match="run_dir"):
        train_text2live(random_clip, x, "green circle", run_dir=tmp_path / "b", **kw)


def test_training_reports_progress_with_previews(random_clip, scene_image):
    x, mask = scene_image
    got = []
    p = Progress(callback=lambda step, total, info: got.append((step, total, "preview" in info)),
                 preview_every=2)
    r = train_text2live(random_clip, x, "blue circle", roi_text="circle", bootstrap_mask=mask,
                        settings=tiny_settings(steps=4), progress=p)
    assert [g[0] for g in got] == [1, 2, 3, 4] and all(g[1] == 4 for g in got)
    assert [g[2] for g in got] == [False, True, False, True]
    assert set(r.losses) >= {"clip", "direction", "screen", "structure", "sparsity", "bootstrap"}
    assert all(len(v) == 4 for v in r.losses.values())
    assert r.losses["bootstrap"][0] > 0 and r.losses["structure"][1] > 0


def test_trainer_rejects_bad_inputs(random_clip, scene_image):
    x, mask = scene_image
    with pytest.raises(InputError, match="image"):
        train_text2live(random_clip, x[..., :20, :20], "blue", settings=tiny_settings())
    with pytest.raises(InputError, match="prompt"):
        train_text2live(random_clip, x, "  ", settings=tiny_settings())
    with pytest.raises(InputError, match="bootstrap_mask"):
        train_text2live(random_clip, x, "blue", bootstrap_mask=mask[..., :32], settings=tiny_settings())
    with pytest.raises(InputError, match="views"):
        train_text2live(random_clip, x, "blue", settings=tiny_settings(views=0))


# --------------------------------------------------------------------------- nodes

def test_nodes_contract_and_round_trip(random_clip, scene_image, tmp_path):
    from livelayers.nodes import text2live_nodes as N
    for name, cls in N.NODE_CLASS_MAPPINGS.items():
        assert cls.__name__ == name and cls.CATEGORY == "LiveLayers/text2live" and cls.DESCRIPTION
        assert len(cls.RETURN_NAMES) == len(cls.RETURN_TYPES)
        spec = cls.INPUT_TYPES()
        for group in ("required", "optional"):
            for inp, (_, opts) in spec.get(group, {}).items():
                assert opts.get("tooltip"), f"{name}.{inp} has no tooltip"
    x, mask = scene_image
    image = x.permute(0, 2, 3, 1)
    node = N.LL_Text2LIVE()
    out = node.run(random_clip, image, "blue circle", "circle", steps=2, seed=0, resolution=0, views=2,
                   bootstrap_mask=mask[:, 0], generator_scales=3, generator_channels=8,
                   run_dir=str(tmp_path / "run"))
    edit, alpha, comp, screen, rel, gen = out
    assert edit.shape == comp.shape == screen.shape == image.shape and alpha.shape == rel.shape == (1, 64, 64)
    assert torch.allclose(comp, alpha[..., None] * edit + (1 - alpha[..., None]) * image, atol=1e-5)
    assert torch.allclose(rel, mask[:, 0], atol=1e-5)  # the given mask is the bootstrap target
    frames = torch.rand(2, 40, 56, 3)
    e2, a2, c2 = N.LL_ApplyGenerator().apply(gen, frames)
    assert e2.shape == (2, 40, 56, 3) and a2.shape == (2, 40, 56)
    saved = N.LL_SaveGenerator().save(gen, str(tmp_path / "g.safetensors"))["result"][0]
    (loaded,) = N.LL_LoadGenerator().load(saved)
    assert torch.equal(N.LL_ApplyGenerator().apply(loaded, frames)[1], a2)
    (from_run,) = N.LL_LoadGenerator().load(str(tmp_path / "run"))
    assert torch.equal(N.LL_ApplyGenerator().apply(from_run, frames)[1], a2)


def test_nodes_reject_bad_inputs(random_clip):
    from livelayers.nodes import text2live_nodes as N
    node = N.LL_Text2LIVE()
    img = torch.rand(2, 64, 64, 3)
    with pytest.raises(InputError, match="batch 1"):
        node.run(random_clip, img, "blue", "", steps=1, seed=0, resolution=0)
    with pytest.raises(InputError, match="resolution"):
        node.run(random_clip, img[:1], "blue", "", steps=1, seed=0, resolution=20)
    with pytest.raises(InputError, match="bootstrap_mask"):
        node.run(random_clip, img[:1], "blue", "", steps=1, seed=0, resolution=0,
                 bootstrap_mask=torch.ones(1, 32, 32))
    with pytest.raises(InputError, match="generator"):
        N.LL_ApplyGenerator().apply("not a generator", img)
    with pytest.raises(InputError, match="tile"):
        N.LL_ApplyGenerator().apply(SkipGenerator(TINY_GEN), img, tile=16)
    with pytest.raises(InputError, match="path"):
        N.LL_LoadGenerator().load("/nonexistent/g.safetensors")
