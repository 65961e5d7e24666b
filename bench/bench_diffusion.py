"""Blended diffusion speed: our design vs the reference design, on this CPU.

    nice -n 10 python bench/bench_diffusion.py [--samples 2] [--measure-steps 1] [--threads 1]
    python bench/bench_diffusion.py --only official --official DIR [--official-python PY]
                                    [--measure-steps 1] [--threads 1]

Pixel variant at the reference settings: 256x256, 75 of 100 respaced steps,
8 CLIP views, a ViT-B/16-sized CLIP with random weights
(``open_clip.create_model("ViT-B-16", pretrained=None)``). guided-diffusion's
256² UNet (~550 M parameters) is far too slow on a CPU, so a scaled-down
``UNet2DModel`` at 256² is used (6 levels, channels 32..256, attention at
32/16/8 px) — the ratio, not the absolute time, is what carries over.
A few steps are measured (after one warm-up step) and extrapolated to 75.

- ours: one UNet pass per step with autograd through it, x̂0 taken from it
  for the CLIP gradient; all samples and all views in one batch
  (``engine.diffusion.blended_diffusion_pixel``, the real code).
- reference design: the official code's structure, read from it and timed
  against it (below): per step a no-grad UNet pass on all samples for the step
  and a second UNet pass with grad, on all samples, for the CLIP gradient; the
  views of all samples in one CLIP batch (its ``ImageAugmentations`` tiles
  them). Until 2026-12-02 this design ran the samples and the views one at a
  time, which the official code does not do.
- official: with ``--official DIR`` (a clone of github.com/omriav/blended-diffusion,
  never shipped), the official ``ImageEditor``'s own sampling step timed by
  ``bench/official_blended_diffusion.py`` under ``--official-python`` (an
  environment with its requirements) on its own guided-diffusion UNet, scaled
  down (64 channels, 1 res block, random weights) at its default settings
  (4 samples, 8 augmentations); ours and the reference design are then timed
  on that same network, its checkpoint loaded by our converter
  (``load_diffusion``), with the same samples, views and guidance.

Latent variant on the toy pipeline (an SD-sized UNet does not fit a useful
CPU budget): ours (all samples x CFG in one UNet batch) vs one sample at a time.
Timings go here, never into tests.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
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


class _Stop(Exception):
    """Raised from the progress callback once the timed steps are done."""


def ours_step_times(handle, clip, x, m, samples: int, k: int, views: int) -> list[float]:
    """Seconds of each of 1 + ``k`` steps (the first: the warm-up, with the text
    embedding) of ``engine.diffusion.blended_diffusion_pixel`` on a 100-step
    schedule with 25 skipped (75 run), stopped after them."""
    from livelayers.engine.diffusion import blended_diffusion_pixel
    from livelayers.engine.progress import Cancelled, Progress
    stamps = [time.perf_counter()]

    def tick(step, total, info):
        stamps.append(time.perf_counter())
    progress = Progress(tick, should_stop=lambda: len(stamps) > k + 1)
    try:
        blended_diffusion_pixel(handle, clip, x, m, "a red circle", steps=100, start=0.25,
                                samples=samples, views=views, seed=0, guidance=1000.0, progress=progress)
    except Cancelled:
        pass
    return [b - a for a, b in zip(stamps, stamps[1:])][: k + 1]


def reference_step_times(handle, clip, x, m, samples: int, k: int, views: int) -> list[float]:
    """Seconds of each of 1 + ``k`` steps of the reference design (the module
    docstring): the official code's structure, on the same engine pieces."""
    from livelayers.engine.diffusion import common, pixel
    from livelayers.engine.text2live.losses import spherical_distance
    ts, abars, prevs = pixel.respaced_schedule(handle.scheduler, 100, 0.25)
    x0 = x * 2 - 1
    gen = torch.Generator().manual_seed(0)
    times = []
    t0 = time.perf_counter()
    text = clip.encode_text(["a red circle"])
    xt = x0 + torch.randn((samples, *x0.shape[1:]), generator=gen)
    for i, t in enumerate(ts.tolist()[: k + 1]):
        a, ap = float(abars[i]), float(prevs[i])
        tt = torch.full((samples,), t)
        with torch.no_grad():                      # pass 1: the step itself, all samples
            eps = handle.unet(xt, tt).sample[:, :3]
        x0_hat = pixel.predict_x0(eps, xt, a, "epsilon")
        xg = xt.detach().requires_grad_(True)      # pass 2: again, with grad, for CLIP
        x0_g = pixel.predict_x0(handle.unet(xg, tt).sample[:, :3], xg, a, "epsilon")
        fac = (1 - a) ** 0.5
        x_in = x0_g * fac + xg * (1 - fac)
        views_in = common.augment_views((x_in * m + 1) / 2, views, gen)   # all samples x views
        d = spherical_distance(clip.encode_image(views_in), text).view(views, samples).mean(0)
        loss = (1000 * d + 50 * (x0_g - x0_g.clamp(-1, 1)).pow(2).mean((1, 2, 3))).sum()
        grad = torch.autograd.grad(loss, xg)[0]
        mean, var = pixel.posterior(x0_hat, xt, a, ap)
        xt = pixel.blend_step(mean - var * grad + var ** 0.5 * torch.randn_like(xt), x0, m, ap,
                              torch.randn_like(xt)).detach()
        times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
    return times


def mean_after_warmup(times: list[float]) -> float:
    """Mean seconds per step without the first (warm-up) step."""
    timed = times[1:] or times
    return sum(timed) / len(timed)


def time_ours(handle, clip, x, m, samples: int, k: int, views: int) -> float:
    """Seconds per step for all samples, via the engine (k steps after a warm-up)."""
    return mean_after_warmup(ours_step_times(handle, clip, x, m, samples, k, views))


def time_reference(handle, clip, x, m, samples: int, k: int, views: int) -> float:
    """Seconds per step for all samples with the reference design (see module docstring)."""
    return mean_after_warmup(reference_step_times(handle, clip, x, m, samples, k, views))


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


# ---------------------------------------------------------------- against the official code

# ``python -m livelayers bench --official diffusion=DIR`` hands DIR (and the Python
# of its environment, --official-python diffusion=PY) to rows() here
OFFICIAL_ENV, OFFICIAL_PYTHON_ENV = "LIVELAYERS_OFFICIAL_DIFFUSION", "LIVELAYERS_OFFICIAL_DIFFUSION_PYTHON"
HERE = Path(__file__).resolve().parent
# the official run: its UNet scaled to 64 channels x 1 res block (published 256 x 2),
# its defaults otherwise (arguments.py: 4 samples, 8 augmentations)
OFFICIAL_RUN = {"channels": 64, "res_blocks": 1, "samples": 4, "views": 8}


def official_problem(root: str, python: str | None = None) -> str | None:
    """Why the official code cannot be timed from ``root`` (under ``python``), or None."""
    from official_blended_diffusion import checkout_problem
    problem = checkout_problem(root)
    if problem:
        return f"{problem}; allowed: a clone of github.com/omriav/blended-diffusion"
    if python and not (os.path.isfile(python) and os.access(python, os.X_OK)):
        return f"--official-python {python}: not an executable file"
    return None


def json_of(cmd: list[str], env: dict | None = None) -> dict:
    """Run ``cmd``; the JSON object on the last line of its stdout (its stderr's
    tail in the error when it fails)."""
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        tail = " | ".join(res.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"{Path(cmd[1]).name} exited {res.returncode}: {tail}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def write_scene(folder: str) -> tuple[str, str]:
    """The bench's 256² scene and mask (``scene``) as PNGs, for the official editor."""
    import numpy as np
    from PIL import Image
    x, m = scene(256)
    paths = os.path.join(folder, "scene.png"), os.path.join(folder, "mask.png")
    Image.fromarray((x[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)).save(paths[0])
    Image.fromarray((m[0, 0].numpy() * 255).astype(np.uint8)).save(paths[1])
    return paths


def design_on_checkpoint(design: str, checkpoint: str, samples: int, views: int, k: int) -> dict:
    """One design (ours / reference) on a guided-diffusion checkpoint loaded by our
    converter, in this process: seconds per step after a warm-up, peak memory."""
    from livelayers.engine.models.diffusion import load_diffusion
    from official_blended_diffusion import peak_rss_mib
    torch.manual_seed(0)
    handle = load_diffusion(checkpoint, device="cpu", offline=True)
    clip = vit_b16_clip()
    x, m = scene(256)
    step_times = ours_step_times if design == "ours" else reference_step_times
    times = step_times(handle, clip, x, m, samples, k, views)
    return {"design": design, "step_s": mean_after_warmup(times), "first_step_s": times[0],
            "steps": len(times) - 1, "samples": samples, "views": views, "peak_mib": peak_rss_mib(),
            "peak_kind": "max RSS", "threads": torch.get_num_threads(), "device": "cpu",
            "unet_parameters": sum(p.numel() for p in handle.unet.parameters())}


def official_comparison(root: str, python: str | None, k: int, threads: int) -> tuple[dict, dict, dict]:
    """(official, ours, reference design): each in its own process, on the CPU,
    on one network: the official run's random UNet, saved and loaded by ours."""
    with tempfile.TemporaryDirectory(prefix="ll-bench-bd-") as tmp:
        image, mask = write_scene(tmp)
        ckpt = os.path.join(tmp, "256x256_diffusion_uncond.pt")   # our loader reads the size from the name
        run = OFFICIAL_RUN
        common_args = ["--samples", str(run["samples"]), "--views", str(run["views"]),
                       "--threads", str(threads)]
        harness = [python or sys.executable, str(HERE / "official_blended_diffusion.py"), "--root", root,
                   "--steps", str(k), "--channels", str(run["channels"]), "--res-blocks", str(run["res_blocks"]),
                   "--image", image, "--mask", mask, "--save-checkpoint", ckpt, *common_args]
        # on the CPU, as ours here: the editor would pick CUDA by itself
        off = json_of(harness, env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
        ours, ref = (json_of([sys.executable, str(Path(__file__).resolve()), "--design", design,
                              "--checkpoint", ckpt, "--measure-steps", str(k), *common_args])
                     for design in ("ours", "reference"))
    return off, ours, ref


def official_where(off: dict) -> str:
    cfg = off["model_config"]
    return (f"256², official guided-diffusion UNet {cfg['num_channels']} ch x {cfg['num_res_blocks']} res "
            f"block(s) (random, {off['unet_parameters'] / 1e6:.1f} M), {off['samples']} samples, "
            f"{off['views']} views, ViT-B/16 (random)")


def official_note(off: dict) -> str:
    return (f"official = {off['code']} @ {off['commit'][:10]}, its ImageEditor's sampling timed here "
            f"{off['date']} ({off['device']}, UNet {off['unet_dtype']}, {off['steps']} step(s) after 1 warm-up)")


def official_rows(root: str, python: str | None, k: int = 1) -> list[dict]:
    """Rows: ours vs the official step, the reference design vs ours on the same
    network (its note: reference design / official), peak memory."""
    off, ours, ref = official_comparison(root, python, k, torch.get_num_threads())
    where = official_where(off)
    calib = ref["step_s"] / off["step_s"]
    return [row("diffusion", f"pixel step vs the official code, {where}", "s/step", ours["step_s"],
                off["step_s"], official_note(off)),
            row("diffusion", f"pixel step, reference design on the official network, {where}", "s/step",
                ours["step_s"], ref["step_s"], f"reference design / official = {calib:.2f}x (1 = calibrated)"),
            row("diffusion", f"peak memory vs the official code, {where}", "MiB", ours["peak_mib"],
                off["peak_mib"], f"max RSS of each process; reference design {ref['peak_mib']:.0f} MiB")]


def rows(size: str) -> list[dict]:
    """The table rows of ``python -m livelayers bench``; reference = the reference
    design of the module docstring (two UNet passes per step, all samples and
    views batched; latent: one sample at a time). quick: pixel on the toy DDPM
    (32 px) + toy CLIP, 2 samples, 8 views, 1 step measured after a warm-up;
    latent toy, 20 DDIM steps. reference: as docs/diffusion.md (pixel 256²,
    ViT-B/16-sized CLIP, scaled UNet, 1 measured step of 75; latent toy, 50
    DDIM steps), and with an official clone (``OFFICIAL_ENV``) the rows of
    ``official_rows``."""
    quick = check_size(size) == "quick"
    out = []
    if quick:
        ref, ours = bench_pixel_toy(samples=2, k=1, views=8)
        out.append(row("diffusion", "pixel step, toy DDPM 32², toy CLIP, 8 views, 2 samples", "s/step",
                       ours, ref, "one step measured after a warm-up step"))
    else:
        official = os.environ.get(OFFICIAL_ENV)
        if official:  # first, while this process is small (nothing else bears on its numbers)
            out += official_rows(official, os.environ.get(OFFICIAL_PYTHON_ENV) or None)
        (name, ref, ours), = bench_pixel(argparse.Namespace(measure_steps=1, samples=2))
        out.append(row("diffusion", name, "s/sample", ours, ref,
                       "1 step measured after a warm-up, extrapolated to 75"))
    args = argparse.Namespace(samples=2, latent_steps=20 if quick else 50)
    for name, ref, ours in bench_latent(args):
        if ours == ours:  # NaN: tests/assets/toy_sd is missing
            out.append(row("diffusion", name, "s/sample", ours, ref))
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=2)
    p.add_argument("--measure-steps", type=int, default=1, help="timed steps after one warm-up step")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-pixel", action="store_true")
    p.add_argument("--only", choices=("all", "official"), default="all",
                   help="official: only the comparison with --official")
    p.add_argument("--official", metavar="DIR", help="also time the official code's sampling step from "
                   "this clone of github.com/omriav/blended-diffusion, and ours on its network")
    p.add_argument("--official-python", metavar="PY", help="the Python of its environment (default: this one)")
    p.add_argument("--design", choices=("ours", "reference"), help=argparse.SUPPRESS)
    p.add_argument("--checkpoint", help=argparse.SUPPRESS)
    p.add_argument("--views", type=int, default=8, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.official:
        problem = official_problem(a.official, a.official_python)
        if problem:
            p.error(f"--official {a.official}: {problem}")
    elif a.only == "official":
        p.error("--only official needs --official DIR")
    elif a.official_python:
        p.error("--official-python needs --official DIR")
    if a.measure_steps < 1:
        p.error("--measure-steps: allowed: 1 or more")
    torch.set_num_threads(a.threads)
    if a.design:  # child process: one design on a checkpoint, JSON on the last line
        print(json.dumps(design_on_checkpoint(a.design, a.checkpoint, a.samples, a.views, a.measure_steps)))
        return
    if a.official:
        off, ours, ref = official_comparison(a.official, a.official_python, a.measure_steps, a.threads)
        print(f"Against the official code: {official_where(off)}\n  {official_note(off)}")
        print(f"{'design':<18}{'s/step':>10}{'1st step s':>12}{'peak MiB':>10}  (max RSS, each its own process)")
        for r in (off, ours, ref):
            print(f"{r['design']:<18}{r['step_s']:>10.2f}{r['first_step_s']:>12.2f}{r['peak_mib']:>10.0f}")
        print(f"speed-up (official step / ours):      {off['step_s'] / ours['step_s']:.2f}x")
        print(f"reference design / official step:     {ref['step_s'] / off['step_s']:.2f}x  (1 = calibrated)")
        print(f"memory (official / ours):             {off['peak_mib'] / ours['peak_mib']:.2f}x\n")
        if a.only == "official":
            return
    rows = ([] if a.skip_pixel else bench_pixel(a)) + bench_latent(a)
    print(f"\n{'setting':66s} {'reference s/sample':>19s} {'ours s/sample':>14s} {'speed-up':>9s}")
    for name, ref, ours in rows:
        print(f"{name:66s} {ref:19.2f} {ours:14.2f} {ref / ours:8.2f}x")


if __name__ == "__main__":
    main()
