"""Blended diffusion speed: our design vs the reference design, on this CPU.

    nice -n 10 python bench/bench_diffusion.py [--samples 2] [--measure-steps 1] [--threads 1]

Pixel variant at the reference settings: 256x256, 75 of 100 respaced steps,
8 CLIP views, a ViT-B/16-sized CLIP with random weights
(``open_clip.create_model("ViT-B-16", pretrained=None)``). guided-diffusion's
256² UNet (~550 M parameters) is far too slow on a CPU, so a scaled-down
``UNet2DModel`` at 256² is used (6 levels, channels 32..256, attention at
32/16/8 px) — the ratio, not the absolute time, is what carries over.
A few steps are measured and extrapolated to 75.

- ours: one UNet pass per step with autograd through it, x̂0 taken from it
  for the CLIP gradient; all samples and all views in one batch
  (``engine.diffusion.blended_diffusion_pixel``, the real code).
- reference design: per sample, a no-grad UNet pass for the step and a second
  UNet pass with grad for the CLIP gradient; views one at a time.

Latent variant on the toy pipeline (an SD-sized UNet does not fit a useful
CPU budget): ours (all samples x CFG in one UNet batch) vs one sample at a time.
Timings go here, never into tests.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import check_size, row  # noqa: E402  bench/_timing.py

ROOT = Path(__file__).resolve().parents[1]


def scaled_unet_256():
    from diffusers import UNet2DModel
    return UNet2DModel(
        sample_size=256, in_channels=3, out_channels=3, layers_per_block=1,
        block_out_channels=(32, 64, 64, 128, 128, 256),
        down_block_types=("DownBlock2D",) * 3 + ("AttnDownBlock2D",) * 3,
        up_block_types=("AttnUpBlock2D",) * 3 + ("UpBlock2D",) * 3,
        attention_head_dim=32).eval().requires_grad_(False)


def pixel_handle(unet):
    from diffusers import DDPMScheduler

    from livelayers.engine.models.diffusion import DiffusionHandle
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    return DiffusionHandle("pixel", unet, sched, 256, 3, 3, "epsilon", torch.device("cpu"))


def vit_b16_clip():
    import open_clip

    from livelayers.engine.models.clip import handle_from_model
    return handle_from_model(open_clip.create_model("ViT-B-16", pretrained=None))


def scene(size: int):
    import numpy as np

    from livelayers.toyworld import scenes
    img, _ = scenes.render_scene(scenes.random_scene(np.random.default_rng(0), 1, background="grass"),
                                 size)
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    m = torch.zeros(1, 1, size, size)
    m[..., size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 1
    return x, m


def time_ours(handle, clip, x, m, samples: int, k: int, views: int) -> float:
    """Seconds per step for all samples, via the engine (k steps of a 100-step schedule)."""
    from livelayers.engine.diffusion import blended_diffusion_pixel
    t0 = time.perf_counter()
    blended_diffusion_pixel(handle, clip, x, m, "a red circle", steps=100, start=(100 - k) / 100,
                            samples=samples, views=views, seed=0, guidance=1000.0)
    return (time.perf_counter() - t0) / k


def time_reference(handle, clip, x, m, samples: int, k: int, views: int) -> float:
    """Seconds per step for all samples with the reference design (see module docstring)."""
    from livelayers.engine.diffusion import common, pixel
    from livelayers.engine.text2live.losses import spherical_distance
    ts, abars, prevs = pixel.respaced_schedule(handle.scheduler, 100, (100 - k) / 100)
    text = clip.encode_text(["a red circle"])
    x0 = x * 2 - 1
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for s in range(samples):                       # samples one at a time
        xt = x0 + torch.randn(x0.shape, generator=gen)
        for i, t in enumerate(ts.tolist()):
            a, ap = float(abars[i]), float(prevs[i])
            tt = torch.full((1,), t)
            with torch.no_grad():                  # pass 1: the step itself
                eps = handle.unet(xt, tt).sample
            x0_hat = pixel.predict_x0(eps, xt, a, "epsilon").clamp(-1, 1)
            xg = xt.detach().requires_grad_(True)  # pass 2: again, with grad, for CLIP
            x0_g = pixel.predict_x0(handle.unet(xg, tt).sample, xg, a, "epsilon")
            fac = (1 - a) ** 0.5
            x_in = ((x0_g * fac + xg * (1 - fac)) * m + 1) / 2
            grad = torch.zeros_like(xg)
            for v in range(views):                 # views one at a time
                view = common.augment_views(x_in, 2, gen)[1:] if v else x_in
                d = spherical_distance(clip.encode_image(view), text).sum() * 1000 / views
                grad += torch.autograd.grad(d, xg, retain_graph=v < views - 1)[0]
            mean, var = pixel.posterior(x0_hat, xt, a, ap)
            xt = pixel.blend_step(mean - var * grad + var ** 0.5 * torch.randn_like(xt), x0, m, ap,
                                  torch.randn_like(xt)).detach()
    return (time.perf_counter() - t0) / k


def bench_pixel(args) -> list[tuple]:
    torch.manual_seed(0)
    handle, clip = pixel_handle(scaled_unet_256()), vit_b16_clip()
    x, m = scene(256)
    k, s, v = args.measure_steps, args.samples, 8
    ours = time_ours(handle, clip, x, m, s, k, v)
    ref = time_reference(handle, clip, x, m, s, k, v)
    per = lambda step_s: step_s * 75 / s         # noqa: E731  seconds per sample, 75 steps
    return [("pixel 256², 75 steps, 8 views, ViT-B/16 (random), scaled UNet", per(ref), per(ours))]


def bench_pixel_toy(samples: int, k: int, views: int) -> tuple[float, float]:
    """(reference s/step, ours s/step) with the committed toy DDPM (32 px) and the
    toy CLIP: the same two designs at a size that runs in seconds."""
    from livelayers.engine.models.clip import load_clip
    from livelayers.engine.models.diffusion import load_diffusion
    torch.manual_seed(0)
    handle = load_diffusion(str(ROOT / "tests" / "assets" / "toy_ddpm"), device="cpu", offline=True)
    clip = load_clip(f"local-dir:{ROOT / 'tests' / 'assets' / 'toy_clip'}", device="cpu")
    x, m = scene(handle.sample_size)
    ours = time_ours(handle, clip, x, m, samples, k, views)
    return time_reference(handle, clip, x, m, samples, k, views), ours


def bench_latent(args) -> list[tuple]:
    from livelayers.engine.diffusion import blended_latent_diffusion
    from livelayers.engine.models.diffusion import load_diffusion
    folder = ROOT / "tests" / "assets" / "toy_sd"
    if not folder.is_dir():
        return [("latent toy (missing tests/assets/toy_sd)", float("nan"), float("nan"))]
    handle = load_diffusion(str(folder), device="cpu", offline=True)
    x, m = scene(64)
    steps, s = getattr(args, "latent_steps", 50), max(2, args.samples)
    kw = dict(steps=steps, start=0.25, cfg=7.5)
    # warm-up (first-call costs), so that neither design's time carries them
    blended_latent_diffusion(handle, None, x, m, "a red circle", samples=1, seed=0, steps=4, start=0.25,
                             cfg=7.5)
    t0 = time.perf_counter()
    blended_latent_diffusion(handle, None, x, m, "a red circle", samples=s, seed=0, **kw)
    ours = (time.perf_counter() - t0) / s
    t0 = time.perf_counter()
    for i in range(s):
        blended_latent_diffusion(handle, None, x, m, "a red circle", samples=1, seed=i, **kw)
    ref = (time.perf_counter() - t0) / s
    run = steps - int(steps * 0.25)
    return [(f"latent toy 64², {steps} DDIM ({run} run), CFG, {s} samples", ref, ours)]


def rows(size: str) -> list[dict]:
    """The table rows of ``python -m livelayers bench``; reference = the reference
    design of the module docstring (per sample, two UNet passes, views one at a
    time; latent: one sample at a time). quick: pixel on the toy DDPM (32 px)
    + toy CLIP, 2 samples, 8 views, 1 measured step; latent toy, 20 DDIM steps.
    reference: as docs/diffusion.md (pixel 256², ViT-B/16-sized CLIP, scaled
    UNet, 1 measured step of 75; latent toy, 50 DDIM steps)."""
    quick = check_size(size) == "quick"
    out = []
    if quick:
        ref, ours = bench_pixel_toy(samples=2, k=1, views=8)
        out.append(row("diffusion", "pixel step, toy DDPM 32², toy CLIP, 8 views, 2 samples", "s/step",
                       ours, ref, "one step measured"))
    else:
        (name, ref, ours), = bench_pixel(argparse.Namespace(measure_steps=1, samples=2))
        out.append(row("diffusion", name, "s/sample", ours, ref, "1 step measured, extrapolated to 75"))
    args = argparse.Namespace(samples=2, latent_steps=20 if quick else 50)
    for name, ref, ours in bench_latent(args):
        if ours == ours:  # NaN: tests/assets/toy_sd is missing
            out.append(row("diffusion", name, "s/sample", ours, ref))
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=2)
    p.add_argument("--measure-steps", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-pixel", action="store_true")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    rows = ([] if a.skip_pixel else bench_pixel(a)) + bench_latent(a)
    print(f"\n{'setting':66s} {'reference s/sample':>19s} {'ours s/sample':>14s} {'speed-up':>9s}")
    for name, ref, ours in rows:
        print(f"{name:66s} {ref:19.2f} {ours:14.2f} {ref / ours:8.2f}x")


if __name__ == "__main__":
    main()
