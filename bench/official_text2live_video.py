"""Time the official Text2LIVE code's *video* training step on this machine.

    python bench/official_text2live_video.py --root DIR [--steps N] [--threads T]

DIR is a clone of https://github.com/omerbt/Text2LIVE (never shipped with
LiveLayers: clone it yourself). What runs is the official code as cloned:
``configs/video_config.yaml`` (768×432 frames, 6 views, the 7-scale × 128
generator, MADGRAD, crops of the foreground box ≥ 95 % of α ≥ 0.95 + 30 px,
the 2000² atlas grid), its ``AtlasDataset``, ``VideoModel`` and ``AtlasLoss``;
the loop is the body of ``train_video.train_model`` without its logger (which
only detaches the losses, and renders the video every 500 steps). It edits
the foreground layer ("blue circle" on the red circle) of the clip that
``bench/bench_text2live_video.py`` times ours on (5 frames, a checkered red
circle of radius 86 px).

Changes, each needed to run it here:

* its CLIP is a ViT-B/32 with random weights, built by its own ``build_model``
  and loaded by its own ``clip.load`` (as ``official_text2live.py``: the hubs
  are unreachable; the weights do not change the cost);
* the pretrained NLA checkpoint it loads (five MLPs trained for hours per
  clip) is replaced by the clip's exact decomposition written as functions
  with the same interface (``true_atlas``): the foreground mapping puts the
  object's centre at the same atlas point in every frame, ``--atlas-scale``
  atlas pixels per frame pixel on the 2000² grid (default 2, the nominal
  scale of the published 768-px checkpoints; ``bench_text2live_video.py``
  passes the scale of our own decomposition of the clip, so that both
  generators see atlas crops of the same size); the opacity is the true
  mask; the atlas colour samples the first frame. The step only reads these
  through the dataset's precomputed UVs, opacity and atlas grid (setup, not
  timed), and its crop sizes follow the opacity, so it costs what it costs
  on a trained atlas of this clip;
* ``scipy``, which it imports for a visualisation its config turns off, is
  stood in for where it is not installed (``scipy_shim``).

The config's ``bootstrap_text`` is empty as cloned (no relevancy bootstrap in
its video runs); ours bootstraps from a relevancy target computed once
before training, so our step carries one BCE more.

Prints one JSON line: seconds per step (the mean of ``--steps`` steps after
one warm-up step), the crop sizes, the commit when DIR is a git clone, the
date, torch threads and peak memory (max RSS on a CPU).
``bench/bench_text2live_video.py --official DIR`` runs this beside ours.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _official import commit_of, missing_files, now, peak_memory, random_clip_file  # noqa: E402  bench/_official.py

NEEDED = ("train_video.py", "configs/video_config.yaml", "datasets/video_dataset.py",
          "models/video_model.py", "util/atlas_loss.py", "util/atlas_utils.py", "CLIP/clip/clip.py")
CLIP_NAME = "toy"           # data/videos/<name>, data/pretrained_nla_models/<name>/checkpoint
DEFAULT_ATLAS_SCALE = 2.0   # atlas pixels per frame pixel
MAX_OUT = 0.9               # the mappings' outputs stay inside (-1, 1), as NLA's tanh outputs


def checkout_problem(root: str) -> str | None:
    """Why ``root`` is not a usable Text2LIVE clone, or None."""
    return missing_files(root, NEEDED, "Text2LIVE")


def bench_clip():
    """The clip bench_text2live_video.py's paper config times ours on."""
    from bench_text2live_video import CONFIGS, plate
    return plate(CONFIGS["paper"])


def true_atlas(clip, grid: int, scale: float = DEFAULT_ATLAS_SCALE):
    """The clip's exact decomposition as the five networks the official code
    loads from an NLA checkpoint: (foreground mapping, background mapping,
    atlas colour (one network for both layers, as NLA's), the same again,
    opacity). Each takes NLA's inputs, ``(P, 3)`` pixel coordinates normalised
    by half the longer frame side and half the frame count minus 1
    (``(x, y, t)``) or ``(P, 2)`` atlas UVs, and gives NLA's outputs in
    [-1, 1] (``grid``: the config's grid_atlas_resolution; ``scale``: atlas
    pixels per frame pixel)."""
    import torch
    import torch.nn.functional as F

    n, _, h, w = clip.frames.shape
    half = max(h, w) / 2
    k = 2 * scale / grid                          # NLA output units per frame pixel
    centres = torch.as_tensor([[float(c[0]), float(c[1])] for c in clip.centres])

    def pixels(xyt):
        x, y = (xyt[:, 0] + 1) * half, (xyt[:, 1] + 1) * half
        t = ((xyt[:, 2] + 1) * n / 2).round().long().clamp(0, n - 1)
        return x, y, t

    class ForegroundMapping(torch.nn.Module):
        def forward(self, xyt):
            x, y, t = pixels(xyt)
            c = centres[t]
            return (torch.stack([x - c[:, 0], y - c[:, 1]], 1) * k).clamp(-MAX_OUT, MAX_OUT)

    class BackgroundMapping(torch.nn.Module):
        def forward(self, xyt):
            x, y, _ = pixels(xyt)
            return (torch.stack([x - w / 2, y - h / 2], 1) * k).clamp(-MAX_OUT, MAX_OUT)

    class Opacity(torch.nn.Module):
        def forward(self, xyt):
            x, y, t = pixels(xyt)
            col, row = x.round().long().clamp(0, w - 1), y.round().long().clamp(0, h - 1)  # NLA feeds pixel indices
            return clip.masks[t, 0, row, col][:, None] * 2 - 1

    class AtlasColour(torch.nn.Module):
        """Foreground UVs in [0, 1]², background in [-1, 0]² (NLA's one atlas):
        atlas pixel p = (uv + shift)·grid, frame pixel = centre + (p − grid/2)·frame px per atlas px."""
        def forward(self, uv):
            fg = uv.sum(1) >= 0
            centre = torch.where(fg[:, None], centres[0], torch.tensor([w / 2, h / 2]))
            p = (uv + (~fg).float()[:, None]) * grid
            xy = centre + (p - grid / 2) / scale
            g = torch.stack([xy[:, 0] / w * 2 - 1, xy[:, 1] / h * 2 - 1], 1).view(1, 1, -1, 2)
            rgb = F.grid_sample(clip.frames[:1], g, align_corners=False, padding_mode="border")
            return rgb[0, :, 0].T * 2 - 1

    colour = AtlasColour()
    return ForegroundMapping(), BackgroundMapping(), colour, colour, Opacity()


def scipy_shim() -> None:
    """``util/atlas_utils.py`` imports ``scipy.interpolate`` at the top but uses it
    only for ``return_atlas_alpha`` (a visualisation the config turns off); scipy
    is no LiveLayers requirement, so where it is missing a stand-in that fails
    loudly on any use takes its place."""
    import importlib.util
    import types
    if importlib.util.find_spec("scipy") is not None:
        return

    def unavailable(name):
        raise AttributeError(f"scipy is not installed (scipy.interpolate.{name} was asked for)")
    interpolate = types.ModuleType("scipy.interpolate")
    interpolate.__getattr__ = unavailable
    scipy = types.ModuleType("scipy")
    scipy.interpolate = interpolate
    sys.modules.update({"scipy": scipy, "scipy.interpolate": interpolate})


def official_config(root: str, device: str, n_frames: int, height: int, width: int) -> dict:
    """configs/video_config.yaml as cloned, with this bench's clip, texts and a
    foreground edit (the layout of its example configs)."""
    import yaml

    with open(os.path.join(root, "configs", "video_config.yaml")) as f:
        cfg = yaml.safe_load(f)
    cfg.update({"finetune_foreground": True, "finetune_background": False, "device": device, "seed": 0,
                "checkpoint_path": f"data/pretrained_nla_models/{CLIP_NAME}/checkpoint",
                "maximum_number_of_frames": n_frames, "resx": width, "resy": height,
                "screen_text": ["blue circle"], "comp_text": ["blue circle"], "src_text": ["red circle"],
                "use_wandb": False})
    return cfg


def write_frames(folder: str, clip) -> None:
    """The clip's frames where the official dataset reads them (data/videos/<name>)."""
    import numpy as np
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    for t, frame in enumerate(clip.frames):
        rgb = (frame.permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(rgb).save(os.path.join(folder, f"{t:05d}.png"))


def time_steps(cfg: dict, networks, steps: int) -> tuple[float, list[float], list]:
    """(setup seconds, seconds of each of ``steps`` + 1 steps, crop sizes of each):
    ``train_video.train_model``'s setup and loop body, in the current folder."""
    import torch
    import datasets.video_dataset as video_dataset
    from models.video_model import VideoModel
    from util.atlas_loss import AtlasLoss
    from util.util import get_optimizer

    video_dataset.load_neural_atlases_models = lambda config: networks
    t_setup = time.perf_counter()
    dataset = video_dataset.AtlasDataset(cfg)
    model = VideoModel(cfg)
    criterion = AtlasLoss(cfg)
    optimizer = get_optimizer(cfg, model.parameters())
    setup = time.perf_counter() - t_setup
    cuda = cfg["device"] == "cuda"
    times, crops = [], []
    for _ in range(steps + 1):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        inputs = dataset[0]
        optimizer.zero_grad()
        outputs = model(inputs)
        loss = criterion(outputs, inputs)["foreground"]["loss"]
        loss.backward()
        optimizer.step()
        optimizer.param_groups[0]["lr"] = max(cfg["min_lr"], cfg["gamma"] * optimizer.param_groups[0]["lr"])
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        g = inputs["global_crops"]
        crops.append({"atlas": list(g["foreground_atlas_crops"][0].shape[-2:]),
                      "frames": [list(c.shape[-2:]) for c in g["original_foreground_crops"]]})
    return setup, times, crops


def measure(root: str, steps: int, scale: float = DEFAULT_ATLAS_SCALE) -> dict:
    """The JSON this script prints (see the module docstring)."""
    import torch

    from official_text2live import VIT_B_32, compat_shims, route_clip_loads

    root = os.path.abspath(root)
    clip = bench_clip()
    sys.path.insert(0, root)  # the clone's packages: CLIP, models, util, datasets
    compat_shims()
    scipy_shim()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    n, _, h, w = clip.frames.shape
    cfg = official_config(root, device, n, h, w)
    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="ll-official-t2lv-") as tmp:
        route_clip_loads(random_clip_file(tmp, VIT_B_32, "ViT-B-32"))
        write_frames(os.path.join(tmp, "data", "videos", CLIP_NAME), clip)
        os.chdir(tmp)          # the official dataset reads data/videos/<name> relative to here
        try:
            networks = true_atlas(clip, cfg["grid_atlas_resolution"], scale)
            setup, times, crops = time_steps(cfg, networks, steps)
        finally:
            os.chdir(here)
    timed = times[1:]
    peak, peak_kind = peak_memory(device)
    return {"design": "official", "code": "omerbt/Text2LIVE", "commit": commit_of(root), "date": now(),
            "device": device, "frames": f"{w}x{h}", "views": cfg["n_aug"], "step_s": sum(timed) / len(timed),
            "first_step_s": times[0], "setup_s": setup, "steps": steps, "crops": crops[1:], "atlas_scale": scale,
            "peak_mib": peak, "peak_kind": peak_kind,
            "threads": torch.get_num_threads()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="a clone of github.com/omerbt/Text2LIVE")
    ap.add_argument("--steps", type=int, default=1, help="timed steps after one warm-up (default 1)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--atlas-scale", type=float, default=DEFAULT_ATLAS_SCALE,
                    help="atlas pixels per frame pixel of the stand-in atlas (default 2)")
    args = ap.parse_args(argv)
    problem = checkout_problem(args.root)
    if problem or args.steps < 1 or not 0.25 <= args.atlas_scale <= 4:
        why = (f"--root {args.root}: {problem}; allowed: a clone of github.com/omerbt/Text2LIVE"
               if problem else "--steps: allowed: 1 or more; --atlas-scale: allowed: 0.25 to 4")
        print(f"official_text2live_video: {why}", file=sys.stderr)
        return 2
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    print(json.dumps(measure(args.root, args.steps, args.atlas_scale)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
