"""Time the official Blended Diffusion code's guided sampling step on this machine.

    python bench/official_blended_diffusion.py --root DIR [--steps N] [--threads T]
        [--channels C] [--res-blocks R] [--samples B] [--views V] [--fp16 auto|as-set|off]
        [--image PNG --mask PNG] [--save-checkpoint PATH]

DIR is a clone of https://github.com/omriav/blended-diffusion (never shipped
with LiveLayers: clone it yourself). Run it with a Python that has the
clone's requirements (kornia, lpips, matplotlib, opencv, tqdm, ftfy, regex,
torch, torchvision; ``bench_diffusion.py --official-python PY`` passes one).
Its ``optimization/image_editor.py`` runs as cloned: ``ImageEditor`` builds
guided-diffusion's UNet with the clone's own ``create_model_and_diffusion``
and the ``model_config`` it sets (256 px, learned sigma, attention at 32, 16
and 8 px, resblock up/down, scale-shift norm, 64 channels per head, 1000
linear steps respaced to ``--timestep_respacing``), loads
``checkpoints/256x256_diffusion_uncond.pt`` from the working folder (a temp
folder here), and ``edit_image_by_prompt`` samples with its own
``p_sample_loop_progressive``: per step a no-grad UNet pass, its ``cond_fn``
(a second UNet pass with grad, the CLIP loss over its kornia augmentations of
all samples in one CLIP batch, the range loss, the gradient to x_t) and its
background blend. The settings are ``optimization/arguments.py``'s defaults
(4 samples, 8 augmentations, 100 respaced steps with 25 skipped, CLIP
guidance 1000, range 50, LPIPS 1000 / L2 10000 but only with
``--background_preservation_loss``, which is off) parsed by its own parser.

What is not the published run, each needed to time it here at all:

- the UNet's width: ``num_channels`` / ``num_res_blocks`` are ``--channels`` /
  ``--res-blocks`` (default 64 / 1: 24.4 M parameters, where the published
  256 / 2 has ~550 M and one step would take many minutes on a CPU core);
  every other entry of its model_config is kept. Its weights are random (seed 0), written
  where the editor loads them (``--save-checkpoint`` keeps a copy, for timing
  our code on the same network).
- its CLIP: a ViT-B/16 with random weights built by the clone's own ``CLIP``
  class, loaded through its own ``clip.load`` from a saved state dict (the
  model hubs are unreachable here; the weights do not change the cost).
- LPIPS: built with a random VGG (``pnet_rand=True``), since torchvision's VGG
  weights are a download; LPIPS enters the loss only with
  ``--background_preservation_loss`` (off by default), so the step is the same.
- precision: ``--fp16 auto`` (default) keeps the config's ``use_fp16: True``
  on CUDA and runs the UNet in fp32 on a CPU, as our code does there (torch's
  half-precision CPU convolutions are a slow fallback: about 170 s per step
  for a 32-channel UNet on 1 sample and 2 views, against about 9 s for our
  fp32 step on the 64-channel one);
  ``as-set`` / ``off`` force fp16 / fp32. Its CLIP is fp32 on a CPU (its
  ``clip.load`` converts it), fp16 on CUDA.

Prints one JSON line: seconds per diffusion step (the mean of ``--steps``
steps after one warm-up step; the editor's own work between steps, its
figures and metrics every 20 steps, is not counted), the commit when DIR is a
git clone, the date, threads, peak memory (this process's resident peak on a
CPU, ``torch.cuda.max_memory_allocated`` on CUDA) and the model config used.
``bench/bench_diffusion.py --official DIR`` runs this beside our code on the
same network.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _official import commit_of, missing_files, now, random_clip_file  # noqa: E402  bench/_official.py

NEEDED = ("main.py", "optimization/image_editor.py", "optimization/arguments.py",
          "optimization/augmentations.py", "optimization/losses.py",
          "guided_diffusion/guided_diffusion/script_util.py",
          "guided_diffusion/guided_diffusion/gaussian_diffusion.py",
          "guided_diffusion/guided_diffusion/unet.py", "CLIP/clip/clip.py", "CLIP/clip/model.py")
# ViT-B/16's published shape: embed_dim, image_resolution, vision_layers,
# vision_width, vision_patch_size, context_length, vocab_size, transformer_width,
# transformer_heads, transformer_layers
VIT_B_16 = (512, 224, 12, 768, 16, 77, 49408, 512, 8, 12)
CHECKPOINT = os.path.join("checkpoints", "256x256_diffusion_uncond.pt")  # the path the editor loads
PROMPT = "a red circle"
# the model_config entries a scaled-down run may change (everything else is ImageEditor's)
SCALED = ("num_channels", "num_res_blocks")


def peak_rss_mib() -> float:
    """This process's own peak resident memory, MiB: VmHWM (Linux), which a new
    program starts afresh, unlike ``ru_maxrss`` (kept across exec, so a process
    started from a big one reports that one's peak); ``ru_maxrss`` elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def checkout_problem(root: str) -> str | None:
    """Why ``root`` is not a usable blended-diffusion clone, or None."""
    return missing_files(root, NEEDED, "blended-diffusion")


def compat_shims() -> None:
    """Names the clone (written for torch 1.9 / numpy 1.x / setuptools of 2021)
    imports that are gone now, given back as what they were, only when missing:
    ``pkg_resources.packaging`` (new setuptools no longer ships pkg_resources; it
    re-exported the ``packaging`` package) and ``numpy.core.shape_base`` (its
    utils/visualization.py imports ``block`` from there; numpy 2 moved it to
    ``numpy._core``)."""
    import importlib
    import types

    import packaging.version
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        sys.modules["pkg_resources"] = types.SimpleNamespace(packaging=packaging)
    try:
        importlib.import_module("numpy.core.shape_base")
    except ImportError:
        import numpy as np
        sys.modules["numpy.core.shape_base"] = types.SimpleNamespace(block=np.block)


def random_lpips() -> None:
    """``lpips.LPIPS(...)`` builds its VGG with random weights (``pnet_rand``):
    the pretrained ones are a torchvision download. Its own linear layers come
    from the lpips package's files. Only used with --background_preservation_loss."""
    import lpips

    original = lpips.LPIPS
    if getattr(original, "_ll_random", False):
        return

    def build(*args, **kwargs):
        kwargs["pnet_rand"] = True
        return original(*args, **kwargs)
    build._ll_random = True
    lpips.LPIPS = build


def route_clip_load(state_path: str) -> None:
    """Make the clone's ``clip.load`` read ``state_path`` whatever model name it
    is given (the editor asks for "ViT-B/16" by name, a download)."""
    from CLIP import clip

    original = clip.load
    clip.load = lambda name, *a, _load=original, **k: _load(state_path, *a, **k)


def scale_model(image_editor, channels: int, res_blocks: int, fp16: bool, used: dict) -> None:
    """Wrap the editor's ``create_model_and_diffusion`` so that the config it
    passes gets ``channels`` / ``res_blocks`` (and, when not ``fp16``, the UNet
    is built with ``use_fp16`` off and its ``convert_to_fp16`` made a no-op),
    and the randomly initialised UNet is saved where the editor then loads it
    from (so it loads the very weights it built). ``used`` receives the config."""
    import torch

    original = image_editor.create_model_and_diffusion

    def create(**config):
        config.update(num_channels=channels, num_res_blocks=res_blocks)
        if not fp16:
            config["use_fp16"] = False
        used.update(config)
        torch.manual_seed(0)
        model, diffusion = original(**config)
        if not fp16:  # the editor converts when ITS config says use_fp16 (it does): a no-op then
            model.convert_to_fp16 = lambda: None
        os.makedirs(os.path.dirname(CHECKPOINT), exist_ok=True)
        torch.save(model.state_dict(), CHECKPOINT)
        return model, diffusion
    image_editor.create_model_and_diffusion = create


def test_inputs(folder: str, size: int = 256) -> tuple[str, str]:
    """A plain test image (a red disc on green) and a centred square mask, as PNGs."""
    import numpy as np
    from PIL import Image

    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 6) ** 2
    img = np.zeros((size, size, 3), np.uint8)
    img[..., 1] = 140
    img[disc] = (200, 30, 30)
    mask = np.zeros((size, size), np.uint8)
    mask[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 255
    paths = os.path.join(folder, "scene.png"), os.path.join(folder, "mask.png")
    Image.fromarray(img).save(paths[0])
    Image.fromarray(mask).save(paths[1])
    return paths


def official_args(image: str, mask: str, samples: int, views: int):
    """optimization/arguments.py's defaults, parsed by its own parser, with this
    bench's inputs, output folder, batch size and augmentation count."""
    from optimization.arguments import get_arguments

    argv = ["main.py", "-p", PROMPT, "-i", image, "--mask", mask, "--output_path", "output",
            "--batch_size", str(samples), "--aug_num", str(views), "--iterations_num", "1"]
    saved, sys.argv = sys.argv, argv
    try:
        return get_arguments()
    finally:
        sys.argv = saved


class _Enough(Exception):
    """Raised inside the sampling loop once the timed steps are done."""


def time_sampling(editor, steps: int, cuda: bool) -> list[float]:
    """Run ``editor.edit_image_by_prompt()`` (the official sampling) for
    ``steps`` + 1 diffusion steps; seconds of each. A step is the time from the
    loop asking for the next sample to the sample being yielded (the editor's
    own work on the previous sample, figures every 20 steps, is left out)."""
    import torch

    original = editor.diffusion.p_sample_loop_progressive
    times: list[float] = []

    def clock():
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def timed(*args, **kwargs):
        t0 = clock()
        for sample in original(*args, **kwargs):
            times.append(clock() - t0)
            if len(times) > steps:
                raise _Enough
            yield sample
            t0 = clock()

    editor.diffusion.p_sample_loop_progressive = timed
    try:
        editor.edit_image_by_prompt()
    except _Enough:
        pass
    if len(times) <= steps:
        raise RuntimeError(f"the official loop ran {len(times)} steps, not {steps + 1}")
    return times


def measure(root: str, steps: int, channels: int, res_blocks: int, samples: int, views: int,
            fp16: bool = True, image: str | None = None, mask: str | None = None,
            save_checkpoint: str | None = None) -> dict:
    """The JSON this script prints (see the module docstring)."""
    import torch

    root = os.path.abspath(root)
    image = image and os.path.abspath(image)
    mask = mask and os.path.abspath(mask)
    os.environ.setdefault("MPLBACKEND", "Agg")  # its figures are written to files, never shown
    sys.path.insert(0, root)  # the clone's packages: optimization, guided_diffusion, CLIP, utils
    compat_shims()
    random_lpips()
    from optimization import image_editor

    used: dict = {}
    cuda = torch.cuda.is_available()
    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="ll-official-bd-") as tmp:
        os.chdir(tmp)  # the editor loads checkpoints/... and writes output/ relative to it
        try:
            route_clip_load(random_clip_file(tmp, VIT_B_16, "ViT-B-16"))
            scale_model(image_editor, channels, res_blocks, fp16, used)
            if not (image and mask):
                image, mask = test_inputs(tmp)
            args = official_args(image, mask, samples, views)
            t_setup = time.perf_counter()
            editor = image_editor.ImageEditor(args)
            setup = time.perf_counter() - t_setup
            times = time_sampling(editor, steps, cuda)
            if save_checkpoint:
                shutil.copyfile(CHECKPOINT, os.path.join(here, save_checkpoint))
        finally:
            os.chdir(here)
    timed = times[1:]
    params = sum(p.numel() for p in editor.model.parameters())
    peak = (torch.cuda.max_memory_allocated() / 2**20 if cuda
            else peak_rss_mib())
    settings = {k: getattr(args, k) for k in ("batch_size", "aug_num", "timestep_respacing", "skip_timesteps",
                                              "clip_guidance_lambda", "range_lambda", "lpips_sim_lambda",
                                              "l2_sim_lambda", "background_preservation_loss", "ddim")}
    return {"design": "official", "code": "omriav/blended-diffusion", "commit": commit_of(root),
            "date": now(), "device": "cuda" if cuda else "cpu", "size": used["image_size"],
            "samples": samples, "views": views, "step_s": sum(timed) / len(timed),
            "first_step_s": times[0], "setup_s": setup, "steps": steps,
            "run_steps": editor.diffusion.num_timesteps - args.skip_timesteps,
            "peak_mib": peak, "peak_kind": "cuda max allocated" if cuda else "max RSS",
            "threads": torch.get_num_threads(), "unet_parameters": params,
            "unet_dtype": str(editor.model.dtype).replace("torch.", ""),
            "clip_dtype": str(editor.clip_model.dtype).replace("torch.", ""),
            "model_config": used, "settings": settings}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="a clone of github.com/omriav/blended-diffusion")
    ap.add_argument("--steps", type=int, default=1, help="timed steps after one warm-up (default 1)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--channels", type=int, default=64,
                    help="the UNet's num_channels (default 64; published: 256)")
    ap.add_argument("--res-blocks", type=int, default=1,
                    help="the UNet's num_res_blocks (default 1; published: 2)")
    ap.add_argument("--samples", type=int, default=4, help="its --batch_size (default: its 4)")
    ap.add_argument("--views", type=int, default=8, help="its --aug_num (default: its 8)")
    ap.add_argument("--fp16", choices=("auto", "as-set", "off"), default="auto",
                    help="as-set: the config's use_fp16 (True); off: an fp32 UNet; auto (default): "
                         "as-set on CUDA, off on a CPU")
    ap.add_argument("--image", help="a 256x256 PNG to edit (default: a plain test image)")
    ap.add_argument("--mask", help="its mask PNG (white = edit; with --image)")
    ap.add_argument("--save-checkpoint", metavar="PATH", help="keep a copy of the random UNet's checkpoint")
    args = ap.parse_args(argv)
    problem = checkout_problem(args.root)
    bad = (f"--root {args.root}: {problem}; allowed: a clone of github.com/omriav/blended-diffusion"
           if problem else next((f"--{k.replace('_', '-')}: allowed: {lo} or more" for k, lo in
                                 (("steps", 1), ("channels", 32), ("res_blocks", 1), ("samples", 1),
                                  ("views", 1)) if getattr(args, k) < lo), None))
    if not bad and args.channels % 32:
        bad = "--channels: allowed: a multiple of 32 (its group norms have 32 groups)"
    if not bad and bool(args.image) != bool(args.mask):
        bad = "--image and --mask: allowed: both or neither"
    if bad:
        print(f"official_blended_diffusion: {bad}", file=sys.stderr)
        return 2
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    fp16 = args.fp16 == "as-set" or (args.fp16 == "auto" and torch.cuda.is_available())
    print(json.dumps(measure(args.root, args.steps, args.channels, args.res_blocks, args.samples, args.views,
                             fp16, args.image, args.mask, args.save_checkpoint)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
