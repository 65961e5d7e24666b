"""Blended diffusion with the committed toy models (tests/assets/toy_ddpm,
toy_sd, toy_clip_v2): background preservation, CLIP guidance, ranking, seeds,
loading offline. Thresholds were measured on this machine (docs/diffusion.md)
and set with margin.
"""
from __future__ import annotations


import pytest
import torch

from livelayers.engine.diffusion import edit_region
from livelayers.toyworld import scenes

# Measured with the committed toy models and toy CLIP v2 (docs/diffusion.md "Measured"),
# guided (1000) − unguided, seeds 0 / 10 / 20: mean masked CLIP score 0.407 / 0.394 / 0.288,
# best sample 0.318 / 0.461 / 0.463; redness mean 0.526 / 0.311 / 0.084, best sample
# 0.433 / 0.588 / 0.552; decoder fix mean |Δ| outside 0.032.
MIN_MEAN_SCORE_GAIN = 0.15
MIN_BEST_SCORE_GAIN = 0.20
# Lowered from 0.1 (toy CLIP v1): v2 knows shapes, so its guidance draws a red *circle*
# inside the square mask rather than a red fill, and the mean redness over the whole
# mask is diluted by the grass left around the circle (seed 20: 0.084).
MIN_MEAN_RED_GAIN = 0.05
MIN_BEST_RED_GAIN = 0.3
DECODER_MAX_MEAN_DIFF = 0.08


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def toy_ddpm(assets):
    from livelayers.engine.models.diffusion import load_diffusion
    return load_diffusion(str(assets / "toy_ddpm"), device="cpu", offline=True)


@pytest.fixture(scope="module")
def toy_sd(assets):
    from livelayers.engine.models.diffusion import load_diffusion
    return load_diffusion(str(assets / "toy_sd"), device="cpu", offline=True)


def grass_scene(size: int):
    """A blue square on grass; the mask covers empty grass in the lower right."""
    obj = scenes.ToyObject("square", "blue", "plain", cx=0.27, cy=0.3, size=0.18)
    img, _ = scenes.render_scene(scenes.ToyScene("grass", (obj,), seed=7), size)
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    m = torch.zeros(1, 1, size, size)
    a, b = size * 7 // 16, size * 15 // 16
    m[..., a:b, a:b] = 1
    return x, m


def redness(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean R − (G+B)/2 inside the mask, per sample: (S, 3, H, W) → (S,)."""
    inside = mask[0, 0] > 0
    r, g, b = (images[:, c][:, inside] for c in range(3))
    return (r - (g + b) / 2).mean(1)


# ------------------------------------------------------------------ loading

def test_toy_models_load_offline_by_catalogue_id(monkeypatch):
    from livelayers.engine.models.diffusion import load_diffusion
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    px = load_diffusion("toy-ddpm", device="cpu")
    assert px.kind == "pixel" and px.sample_size == 32 and px.in_channels == 3
    assert px.unet.dtype == torch.float32            # fp16 file, upcast on load
    sd = load_diffusion("toy-sd", device="cpu")
    assert sd.kind == "latent" and sd.vae_scale_factor == 4 and sd.pixel_multiple == 8
    ids = sd.tokenizer(["a red circle"]).input_ids[0]
    assert ids == [49406, 320, 736, 7117, 49407]      # OpenAI CLIP BPE, as open_clip tokenises
    with pytest.raises(Exception, match="pixel"):
        load_diffusion("toy-ddpm", kind="latent", device="cpu")


def test_committed_folders_are_safetensors_and_small(assets):
    for name in ("toy_ddpm", "toy_sd"):
        files = [p for p in (assets / name).rglob("*") if p.is_file()]
        assert not [p for p in files if p.suffix in (".bin", ".pt", ".ckpt", ".pth")]
        assert sum(p.stat().st_size for p in files) < 10 * 2**20


# ------------------------------------------------------------------ pixel

@pytest.mark.slow
def test_pixel_guidance_paints_the_prompt_in_the_mask(toy_ddpm, toy_clip_v2):
    """CLIP guidance raises the masked CLIP score and the redness for "a red
    circle" over an unguided run with the same seeds; outside stays exact."""
    x, m = grass_scene(32)
    kw = dict(steps=40, samples=4, views=4, seed=0)
    guided = edit_region(toy_ddpm, toy_clip_v2, x, m, "a red circle", guidance=1000.0, **kw)
    plain = edit_region(toy_ddpm, toy_clip_v2, x, m, "a red circle", guidance=0.0, **kw)
    outside = m[0, 0] == 0
    for r in (guided, plain):
        assert torch.equal(r.images[:, :, outside], x.expand(4, -1, -1, -1)[:, :, outside])
        assert torch.all(r.scores[:-1] >= r.scores[1:])                 # ranked best first
    # the method makes several samples and keeps the best: both the mean and the best must rise
    assert guided.scores.mean() - plain.scores.mean() > MIN_MEAN_SCORE_GAIN
    assert guided.scores[0] - plain.scores[0] > MIN_BEST_SCORE_GAIN
    red_g, red_p = redness(guided.images, m), redness(plain.images, m)
    assert red_g.mean() - red_p.mean() > MIN_MEAN_RED_GAIN
    assert red_g[0] - red_p[0] > MIN_BEST_RED_GAIN          # the top-ranked sample is red


@pytest.mark.slow
def test_pixel_same_seed_same_samples(toy_ddpm, toy_clip_v2):
    x, m = grass_scene(32)
    kw = dict(steps=12, samples=2, views=2, seed=5, guidance=1000.0, feather=2.0)
    a = edit_region(toy_ddpm, toy_clip_v2, x, m, "a red circle", **kw)
    b = edit_region(toy_ddpm, toy_clip_v2, x, m, "a red circle", **kw)
    assert torch.equal(a.images, b.images) and a.seeds == b.seeds
    assert torch.equal(a.scores, b.scores)
    # feathered alpha: zero outside, ramps inside, composite = best sample
    assert torch.equal(a.layer_alpha[m == 0], torch.zeros_like(a.layer_alpha[m == 0]))
    inside = a.layer_alpha[m == 1]
    assert inside.max() == 1 and 0 < inside.min() < 1
    comp = a.layer_rgb * a.layer_alpha + x * (1 - a.layer_alpha)
    assert torch.allclose(comp, a.images[:1], atol=1e-6)


# ------------------------------------------------------------------ latent

@pytest.mark.slow
def test_latent_background_paste_exact_and_decoder_fix_close(toy_sd, toy_clip_v2):
    x, m = grass_scene(64)
    outside = m[0, 0] == 0
    kw = dict(steps=20, samples=2, seed=0)
    paste = edit_region(toy_sd, toy_clip_v2, x, m, "a red circle", background_fix="paste", **kw)
    raw = edit_region(toy_sd, toy_clip_v2, x, m, "a red circle", background_fix="none", **kw)
    fixed = edit_region(toy_sd, toy_clip_v2, x, m, "a red circle", background_fix="decoder",
                        decoder_steps=40, **kw)
    src = x.expand(2, -1, -1, -1)
    assert torch.equal(paste.images[:, :, outside], src[:, :, outside])
    assert not torch.allclose(paste.images[:, :, ~outside], src[:, :, ~outside], atol=0.05)
    drift_raw = (raw.images - src).abs()[:, :, outside].mean()
    drift_fix = (fixed.images - src).abs()[:, :, outside].mean()
    assert drift_fix < drift_raw                     # the fine-tune pulls the background back
    assert drift_fix < DECODER_MAX_MEAN_DIFF
    for r in (paste, raw, fixed):
        assert torch.all(r.scores[:-1] >= r.scores[1:])


@pytest.mark.slow
def test_latent_seeds_and_inpaint_pipeline(toy_sd, tmp_path):
    """Same seed → same samples; a 9-channel (inpainting) UNet runs through the same code."""
    from diffusers import StableDiffusionInpaintPipeline, UNet2DConditionModel

    from livelayers.engine.models.diffusion import load_diffusion
    x, m = grass_scene(64)
    kw = dict(steps=8, samples=2, seed=3)
    a = edit_region(toy_sd, None, x, m, "a red circle", **kw)
    b = edit_region(toy_sd, None, x, m, "a red circle", **kw)
    assert torch.equal(a.images, b.images) and torch.isnan(a.scores).all() and a.seeds == [3, 4]
    torch.manual_seed(0)
    unet9 = UNet2DConditionModel.from_config({**toy_sd.unet.config, "in_channels": 9})
    pipe = StableDiffusionInpaintPipeline(
        vae=toy_sd.vae, text_encoder=toy_sd.text_encoder, tokenizer=toy_sd.tokenizer, unet=unet9,
        scheduler=toy_sd.scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    pipe.save_pretrained(tmp_path / "inpaint", safe_serialization=True)
    h = load_diffusion(str(tmp_path / "inpaint"), device="cpu", offline=True)
    assert h.kind == "latent-inpaint" and h.in_channels == 9
    r = edit_region(h, None, x, m, "a red circle", **kw)
    outside = m[0, 0] == 0
    assert torch.equal(r.images[:, :, outside], x.expand(2, -1, -1, -1)[:, :, outside])


# ------------------------------------------------------------------ example graph

@pytest.mark.slow
def test_example_graph_runs_and_writes_exr(tmp_path, monkeypatch):
    import json
    from pathlib import Path

    from livelayers.engine.executor import run_workflow, validate_workflow
    from livelayers.nodes import NODE_CLASS_MAPPINGS
    root = Path(__file__).resolve().parents[1]
    wf = json.loads((root / "examples" / "blended_diffusion.json").read_text())
    validate_workflow(wf, NODE_CLASS_MAPPINGS)
    monkeypatch.chdir(root)
    out = tmp_path / "bd.####.exr"
    run_workflow(wf, NODE_CLASS_MAPPINGS, overrides={"5.steps": 8, "5.samples": 2, "5.views": 2,
                                                      "6.path": str(out)})
    written = list(tmp_path.glob("bd.*.exr"))
    assert len(written) == 1 and written[0].stat().st_size > 0
