"""Blended diffusion: maths, input checks, loading and nodes (fast; random tiny models).

Quality tests with the trained toy models are in test_diffusion_quality.py.
"""
from __future__ import annotations

import json

import pytest
import torch

from livelayers.engine import augment as W
from livelayers.engine.diffusion import common, edit_region, pixel
from livelayers.engine.diffusion.latent import latent_mask, shrink_schedule
from livelayers.engine.errors import InputError, ModelNotFoundError
from livelayers.engine.text2live import losses as L


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def tiny_pixel():
    """A random (untrained) UNet2DModel of the toy-DDPM architecture as a pixel handle."""
    from livelayers.engine.models.diffusion import DiffusionHandle
    from livelayers.toyworld.train_ddpm import build_scheduler, build_unet
    torch.manual_seed(0)
    unet = build_unet().eval().requires_grad_(False)
    return DiffusionHandle("pixel", unet, build_scheduler(), 32, 3, 3, "epsilon", torch.device("cpu"))


def _image_and_mask(size=32):
    torch.manual_seed(1)
    x = torch.rand(1, 3, size, size)
    m = torch.zeros(1, 1, size, size)
    m[..., size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 1
    return x, m


# ------------------------------------------------------------------ maths

def test_blend_step_noises_background_to_t_minus_1():
    torch.manual_seed(0)
    x_fg, x0, noise = torch.randn(2, 3, 8, 8), torch.randn(1, 3, 8, 8), torch.randn(2, 3, 8, 8)
    m = torch.zeros(1, 1, 8, 8)
    m[..., :4] = 1
    abar_t, abar_prev = 0.3, 0.6
    out = pixel.blend_step(x_fg, x0, m, abar_prev, noise)
    expect_bg = 0.6 ** 0.5 * x0 + 0.4 ** 0.5 * noise     # hand computation at t-1
    assert torch.allclose(out[..., :4], x_fg[..., :4])
    assert torch.allclose(out[..., 4:], expect_bg[..., 4:], atol=1e-6)
    wrong_bg = abar_t ** 0.5 * x0 + (1 - abar_t) ** 0.5 * noise  # the reference's level t
    assert not torch.allclose(out[..., 4:], wrong_bg[..., 4:], atol=1e-2)


def test_respaced_schedule_runs_75_of_100_and_ends_at_x0(tiny_pixel):
    ts, abar, abar_prev = pixel.respaced_schedule(tiny_pixel.scheduler, 100, 0.25)
    assert len(ts) == 75
    assert torch.all(ts[:-1] > ts[1:])                      # descending
    assert torch.equal(abar_prev[:-1], abar[1:])            # x_{t-1} has the next step's level
    assert abar_prev[-1] == 1.0                             # the last blend uses x_0 itself
    ac = tiny_pixel.scheduler.alphas_cumprod.double()
    assert torch.allclose(abar, ac[ts])


def test_posterior_matches_diffusers_ddpm_step(tiny_pixel):
    """Our respaced posterior mean/variance = DDPMScheduler.step on set_timesteps(100)."""
    from diffusers import DDPMScheduler
    from diffusers.utils.torch_utils import randn_tensor
    sched = DDPMScheduler.from_config(tiny_pixel.scheduler.config)
    sched.set_timesteps(100)
    ts, abar, abar_prev = pixel.respaced_schedule(tiny_pixel.scheduler, 100, 0.0)
    torch.manual_seed(3)
    xt, eps = torch.randn(1, 3, 8, 8), torch.randn(1, 3, 8, 8)
    for i in (0, 40, 98):
        t = int(ts[i])
        ref = sched.step(eps, t, xt, generator=torch.Generator().manual_seed(5)).prev_sample
        x0 = pixel.predict_x0(eps, xt, float(abar[i]), "epsilon").clamp(-1, 1)
        mean, var = pixel.posterior(x0, xt, float(abar[i]), float(abar_prev[i]))
        z = randn_tensor(xt.shape, generator=torch.Generator().manual_seed(5))
        assert torch.allclose(mean + var ** 0.5 * z, ref, atol=1e-5), t


def test_feather_stays_inside_mask():
    m = torch.zeros(1, 1, 32, 32)
    m[..., 8:24, 8:24] = 1
    a = common.feather_alpha(m, 3.0)
    assert torch.equal(a[m == 0], torch.zeros_like(a[m == 0]))   # outside untouched
    assert a[0, 0, 16, 16] == 1.0                                # deep inside: opaque
    assert 0 < a[0, 0, 8, 16] < 1                                # inner edge: ramp
    assert torch.equal(common.feather_alpha(m, 0), m)


def test_paste_is_bit_exact_outside():
    torch.manual_seed(0)
    img, gen = torch.rand(1, 3, 16, 16), torch.rand(3, 3, 16, 16)
    alpha = torch.zeros(1, 1, 16, 16)
    alpha[..., 4:8, 4:8] = 0.37
    out = common.paste(gen, img, alpha)
    outside = (alpha == 0).expand(3, 3, -1, -1)
    assert torch.equal(out[outside], img.expand(3, -1, -1, -1)[outside])


def test_views_first_is_clean_and_differentiable():
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    v = common.augment_views(x, 4, torch.Generator().manual_seed(0))
    assert v.shape == (8, 3, 16, 16)
    assert torch.equal(v[:2], x)
    assert not torch.allclose(v[2:4], x)           # augmented views differ
    v.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_homography_maps_corners():
    src = torch.tensor([[-1.0, -1], [1, -1], [1, 1], [-1, 1]])
    dst = torch.tensor([[-0.8, -0.9], [0.7, -1], [1, 0.6], [-0.9, 1]])
    h = W.homography(src, dst)[0]              # the solver diffusion's views use (engine/augment.py)
    p = torch.cat([src, torch.ones(4, 1)], 1) @ h.T
    assert torch.allclose(p[:, :2] / p[:, 2:], dst, atol=1e-5)


def test_spherical_distance_known_values():
    a = torch.tensor([[1.0, 0.0]])
    assert L.spherical_distance(a, a).item() == 0.0
    b = torch.tensor([[0.0, 1.0]])                 # 90 degrees: 2·(π/4)² ... = 2·arcsin(√2/2)²
    assert abs(L.spherical_distance(a, b).item() - 2 * (torch.pi / 4) ** 2) < 1e-6


def test_rank_orders_by_score():
    imgs = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 3, 2, 2)
    r = common.make_result(imgs, imgs + 10, torch.tensor([0.1, 0.3, 0.2]), torch.ones(1, 1, 2, 2),
                           [5, 6, 7])
    assert r.scores.tolist() == pytest.approx([0.3, 0.2, 0.1])
    assert r.seeds == [6, 7, 5]
    assert r.images[:, 0, 0, 0].tolist() == [1.0, 2.0, 0.0]
    assert r.layer_rgb[0, 0, 0, 0] == 11.0               # the best sample's colour
    unranked = common.make_result(imgs, imgs, torch.full((3,), float("nan")), imgs[:1, :1], [1, 2, 3])
    assert unranked.seeds == [1, 2, 3]


def test_latent_mask_modes_and_shrinking():
    m = torch.zeros(1, 1, 16, 16)
    m[..., 5, 5] = 1                                   # one pixel
    assert latent_mask(m, 4, "maxpool").sum() == 1     # any touched latent is editable
    assert latent_mask(m, 4, "nearest").sum() == 0     # NEAREST can lose small masks
    lm = latent_mask(m, 4, "maxpool")
    sched = shrink_schedule(lm, 5, 2)
    assert sched[0].sum() > sched[2].sum() > sched[-1].sum()
    assert torch.equal(sched[-1], lm)


# ------------------------------------------------------------------ pixel mechanics

def test_pixel_background_exact_and_seeded(tiny_pixel, toy_clip):
    x, m = _image_and_mask()
    kw = dict(steps=8, samples=2, views=2, seed=3, guidance=1000.0)
    r = edit_region(tiny_pixel, toy_clip, x, m, "a red circle", **kw)
    outside = (m[0, 0] == 0)
    assert r.images.shape == (2, 3, 32, 32)
    assert torch.equal(r.images[:, :, outside], x.expand(2, -1, -1, -1)[:, :, outside])
    assert not torch.allclose(r.images[:, :, ~outside], x.expand(2, -1, -1, -1)[:, :, ~outside])
    assert r.scores[0] >= r.scores[1] and sorted(r.seeds) == [3, 4]
    again = edit_region(tiny_pixel, toy_clip, x, m, "a red circle", **kw)
    assert torch.equal(r.images, again.images)
    other = edit_region(tiny_pixel, toy_clip, x, m, "a red circle", **{**kw, "seed": 9})
    assert not torch.equal(r.images, other.images)
    assert torch.equal(r.layer_alpha, m)


def test_progress_and_cancel(tiny_pixel, toy_clip):
    from livelayers.engine.errors import Cancelled
    from livelayers.engine.progress import Progress
    x, m = _image_and_mask()
    seen = []
    edit_region(tiny_pixel, None, x, m, "a", steps=8, samples=1, guidance=0.0,
                progress=Progress(lambda s, t, i: seen.append((s, t))))
    assert seen == [(i, 6) for i in range(1, 7)]
    with pytest.raises(Cancelled):
        edit_region(tiny_pixel, toy_clip, x, m, "a", steps=8, samples=1,
                    progress=Progress(should_stop=lambda: True))


@pytest.mark.parametrize("change, name", [
    (lambda x, m: (x[..., :24, :24], m[..., :24, :24]), "image"),   # not a multiple of 32
    (lambda x, m: (x, m[..., :16, :16]), "mask"),                   # size mismatch
    (lambda x, m: (x, m * 0), "mask"),                              # empty
    (lambda x, m: (x * 2, m), "image"),                             # outside [0,1]
    (lambda x, m: (x[None], m), "image"),                           # wrong rank
])
def test_bad_inputs_raise_input_error(tiny_pixel, change, name):
    x, m = change(*_image_and_mask())
    with pytest.raises(InputError) as e:
        edit_region(tiny_pixel, None, x, m, "a red circle", steps=4, guidance=0.0)
    assert e.value.input_name == name and e.value.allowed


def test_bad_settings_raise_input_error(tiny_pixel):
    x, m = _image_and_mask()
    for kw, name in [({"start": 1.0}, "start"), ({"steps": 0}, "steps"), ({"samples": 0}, "samples"),
                     ({"views": 0}, "views")]:
        with pytest.raises(InputError) as e:
            edit_region(tiny_pixel, None, x, m, "a", guidance=0.0, **{"steps": 4, **kw})
        assert e.value.input_name == name
    with pytest.raises(InputError, match="clip"):
        edit_region(tiny_pixel, None, x, m, "a", steps=4, guidance=100.0)


def test_pixel_allows_multiples_of_sample_size(tiny_pixel):
    x, m = _image_and_mask(64)
    r = edit_region(tiny_pixel, None, x, m, "a", steps=4, samples=1, guidance=0.0)
    assert r.images.shape == (1, 3, 64, 64)


# ------------------------------------------------------------------ loading

def test_load_errors(tmp_path):
    from livelayers.engine.models.diffusion import load_diffusion
    with pytest.raises(InputError, match="kind"):
        load_diffusion("toy-ddpm", kind="video")
    with pytest.raises(ModelNotFoundError):
        load_diffusion(str(tmp_path / "nope"), device="cpu")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text(json.dumps({"_class_name": "Other"}))
    with pytest.raises(InputError, match="not a diffusers model"):
        load_diffusion(str(tmp_path / "empty"), device="cpu")


def test_pixel_folder_round_trip(tmp_path, tiny_pixel):
    """save_pretrained (safetensors) → load_diffusion gives the same weights and kind."""
    from livelayers.engine.models.diffusion import load_diffusion
    tiny_pixel.unet.save_pretrained(tmp_path / "m" / "unet", safe_serialization=True)
    tiny_pixel.scheduler.save_pretrained(tmp_path / "m" / "scheduler")
    h = load_diffusion(str(tmp_path / "m"), device="cpu", offline=True)
    assert h.kind == "pixel" and h.sample_size == 32 and h.prediction_type == "epsilon"
    for (k, a), b in zip(tiny_pixel.unet.state_dict().items(), h.unet.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(InputError, match="pixel"):
        load_diffusion(str(tmp_path / "m"), kind="latent", device="cpu", offline=True)
    assert not list((tmp_path / "m").rglob("*.bin"))      # safetensors only


# ------------------------------------------------------------------ nodes

def test_nodes_contract():
    from livelayers.nodes import diffusion_nodes as dn
    for name, cls in dn.NODE_CLASS_MAPPINGS.items():
        assert cls.__name__ == name and cls.CATEGORY == "LiveLayers/diffusion" and cls.DESCRIPTION
        assert len(cls.RETURN_NAMES) == len(cls.RETURN_TYPES)
        spec = cls.INPUT_TYPES()
        for group in spec.values():
            for inp, (typ, *opts) in group.items():
                assert opts and opts[0].get("tooltip"), f"{name}.{inp} has no tooltip"


def test_node_rejects_wrong_model_kind_and_batches(tiny_pixel, toy_clip):
    from livelayers.nodes.diffusion_nodes import LL_BlendedDiffusion, LL_BlendedLatentDiffusion
    img = torch.rand(1, 32, 32, 3)
    mask = torch.zeros(1, 32, 32)
    mask[:, 8:24, 8:24] = 1
    args = dict(prompt="a red circle", steps=4, start=0.25, samples=1, seed=0, feather=0.0)
    with pytest.raises(InputError, match="latent model"):
        LL_BlendedLatentDiffusion().edit(tiny_pixel, img, mask, cfg=7.5, negative_prompt="",
                                         background_fix="paste", decoder_steps=1, **args)
    with pytest.raises(InputError, match="batch"):
        LL_BlendedDiffusion().edit(tiny_pixel, toy_clip, img.repeat(2, 1, 1, 1), mask,
                                   guidance=0.0, views=1, **args)
    samples, layer, alpha, comp, scores = LL_BlendedDiffusion().edit(
        tiny_pixel, toy_clip, img, mask, guidance=0.0, views=1, **args)
    assert samples.shape == (1, 32, 32, 3) and alpha.shape == (1, 32, 32)
    assert torch.allclose(comp, samples[:1]) and "seed 0" in scores
