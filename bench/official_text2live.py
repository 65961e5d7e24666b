"""Time the official Text2LIVE code's image training step on this machine.

    python bench/official_text2live.py --root DIR [--steps N] [--threads T] [--size PX]
                                       [--generator-only]

DIR is a clone of https://github.com/omerbt/Text2LIVE (never shipped with
LiveLayers: clone it yourself). Model hubs may be unreachable, so its CLIP
(``CLIP.clip`` for the losses and ``CLIP.clip_explainability`` for the
relevancy) is loaded through its own ``clip.load`` from a state dict of a
randomly initialised ViT-B/32 built by its own ``build_model``: the same
architecture, the same code path, only the weights differ (the step's cost
does not depend on them). Everything else is the official code as cloned:
``configs/image_config.yaml`` (512 px, 16 views, bootstrapping on, MADGRAD;
its crops made the whole image, as ours), its dataset, ``Model``,
``ClipExtractor`` and ``LossG``; the
loop is the body of ``train_image.train_model`` without its logging (which
needs imageio/wandb and runs every 50 steps only).

Prints one JSON line: seconds per step (the mean of ``--steps`` steps after one
warm-up step, which also embeds the full image: the dataset adds it every 75
steps), the commit when DIR is a git clone, the date, torch threads and peak
memory (max RSS on a CPU). ``bench/bench_text2live.py --official DIR`` runs
this beside our step and the reference design.

``--generator-only`` sets every CLIP loss's weight to 0 (composition, screen,
structure, bootstrapping: its LossG then skips them and never builds the
relevancy model), leaving the same loop with the generator's forward +
backward, the crops and the sparsity term: the step minus it is the official
code's CLIP side, to compare with ours (our step minus the generator's part of
its floor).
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

NEEDED = ("train_image.py", "configs/image_config.yaml", "models/clip_extractor.py",
          "models/clip_relevancy.py", "util/losses.py", "CLIP/clip/clip.py")
# ViT-B/32's published shape: embed_dim, image_resolution, vision_layers,
# vision_width, vision_patch_size, context_length, vocab_size, transformer_width,
# transformer_heads, transformer_layers
VIT_B_32 = (512, 224, 12, 768, 32, 77, 49408, 512, 8, 12)


def checkout_problem(root: str) -> str | None:
    """Why ``root`` is not a usable Text2LIVE clone, or None."""
    return missing_files(root, NEEDED, "Text2LIVE")


def compat_shims() -> None:
    """Two names the clone (written for torch 1.10) imports that are gone now,
    given back as what they were: ``pkg_resources.packaging`` (new setuptools no
    longer ships pkg_resources; it re-exported the ``packaging`` package) and
    ``torch.nn.functional._pad`` (the old name of ``F.pad``)."""
    import types

    import packaging.version
    import torch.nn.functional as F
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        sys.modules["pkg_resources"] = types.SimpleNamespace(packaging=packaging)
    if not hasattr(F, "_pad"):
        F._pad = F.pad


def route_clip_loads(state_path: str) -> None:
    """Make both of the clone's ``clip.load`` read ``state_path`` whatever model
    name they are given (the relevancy module asks for "ViT-B/32" by name)."""
    from CLIP import clip, clip_explainability

    for module in (clip, clip_explainability):
        original = module.load
        module.load = lambda name, *a, _load=original, **k: _load(state_path, *a, **k)


def test_image(folder: str, size: int) -> str:
    """The bench's own 512-px toy scene (bench_text2live.build), as a PNG."""
    import numpy as np
    from PIL import Image

    from livelayers.toyworld import scenes

    rng = np.random.default_rng(0)
    img, _ = scenes.render_scene(scenes.random_scene(rng, n_objects=2, background="grass"), size,
                                 supersample=1)
    path = os.path.join(folder, "scene.png")
    Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8)).save(path)
    return path


def official_config(root: str, image_path: str, size: int, device: str, generator_only: bool) -> dict:
    """configs/image_config.yaml as cloned, with this bench's image and texts
    (and no CLIP loss with ``generator_only``). Its crops are made the whole
    image (scale 1, cover 1), as ours at the bench's settings (resolution 0):
    its random crops (scale 0.8-1.2, cover >= 0.85) would change the
    generator's cost from step to step and make the two steps incomparable."""
    import yaml

    with open(os.path.join(root, "configs", "image_config.yaml")) as f:
        cfg = yaml.safe_load(f)
    cfg.update({"image_path": image_path, "resize_input": size, "device": device, "seed": 0,
                "screen_text": "blue circle", "comp_text": "blue circle", "src_text": "red circle",
                "bootstrap_text": "red circle", "bootstrap_epoch": 1000, "use_wandb": False,
                "scale_min": 1.0, "scale_max": 1.0, "crops_min_cover": 1.0})
    if generator_only:
        cfg.update({"lambda_composition": 0, "lambda_screen": 0, "lambda_structure": 0, "lambda_bootstrap": 0})
    return cfg


def time_steps(cfg: dict, steps: int) -> tuple[float, list[float]]:
    """(seconds to build the model and losses, seconds of each of ``steps`` + 1
    training steps): ``train_image.train_model``'s setup and loop body."""
    import torch
    from datasets.image_dataset import SingleImageDataset
    from models.clip_extractor import ClipExtractor
    from models.image_model import Model
    from util.losses import LossG
    from util.util import get_optimizer

    t_setup = time.perf_counter()
    dataset = SingleImageDataset(cfg)
    model = Model(cfg)
    criterion = LossG(cfg, ClipExtractor(cfg))
    optimizer = get_optimizer(cfg, model.parameters())
    setup = time.perf_counter() - t_setup
    cuda = cfg["device"] == "cuda"
    times = []
    for _ in range(steps + 1):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        inputs = dataset[0]
        for key in inputs:
            if key != "step":
                inputs[key] = inputs[key].to(cfg["device"])
        optimizer.zero_grad()
        outputs = model(inputs)
        for key in inputs:
            if key != "step":
                inputs[key] = [inputs[key][0]]
        loss = criterion(outputs, inputs)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.param_groups[0]["lr"] = max(cfg["min_lr"], cfg["gamma"] * optimizer.param_groups[0]["lr"])
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return setup, times


def measure(root: str, steps: int, size: int, generator_only: bool = False) -> dict:
    """The JSON this script prints (see the module docstring)."""
    import torch

    root = os.path.abspath(root)
    sys.path.insert(0, root)  # the clone's packages: CLIP, models, util, datasets
    compat_shims()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory(prefix="ll-official-t2l-") as tmp:
        route_clip_loads(random_clip_file(tmp, VIT_B_32, "ViT-B-32"))
        cfg = official_config(root, test_image(tmp, size), size, device, generator_only)
        setup, times = time_steps(cfg, steps)
    timed = times[1:] if steps >= 1 else times
    peak, peak_kind = peak_memory(device)
    return {"design": "official generator only" if generator_only else "official", "code": "omerbt/Text2LIVE", "commit": commit_of(root),
            "date": now(),
            "device": device, "size": size, "views": cfg["n_aug"], "step_s": sum(timed) / len(timed),
            "first_step_s": times[0], "setup_s": setup, "steps": steps, "peak_mib": peak,
            "peak_kind": peak_kind,
            "threads": torch.get_num_threads()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="a clone of github.com/omerbt/Text2LIVE")
    ap.add_argument("--steps", type=int, default=1, help="timed steps after one warm-up (default 1)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--size", type=int, default=512, help="the config's resize_input (default 512)")
    ap.add_argument("--generator-only", action="store_true", help="every CLIP loss weighted 0")
    args = ap.parse_args(argv)
    problem = checkout_problem(args.root)
    if problem or args.steps < 1 or args.size < 64:
        why = (f"--root {args.root}: {problem}; allowed: a clone of github.com/omerbt/Text2LIVE"
               if problem else "--steps: allowed: 1 or more; --size: allowed: 64 or more")
        print(f"official_text2live: {why}", file=sys.stderr)
        return 2
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    print(json.dumps(measure(args.root, args.steps, args.size, args.generator_only)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
