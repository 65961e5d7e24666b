"""Time the official Neural Layered Atlases code's training step on this machine.

    python bench/official_nla.py --root DIR [--python PY] [--steps N] [--threads T]
                                 [--frames 8] [--size 64] [--batch 10000]

DIR is a clone of https://github.com/ykasten/layered-neural-atlases (never
shipped with LiveLayers: clone it yourself). Its ``train.py`` runs unchanged,
as its README says (``python train.py config.json``), under ``--python`` (an
environment with its requirements: opencv, imageio + imageio-ffmpeg, matplotlib,
scikit-image, scipy, tensorboard, torch; default: this Python). Only its inputs
are made here: ``config/config.json`` as cloned (the published MLP sizes, the
batch of 10000 points, every loss term) with the data folder, the frame size,
the frame count and the iteration count changed (and the mappings'
pre-training before the loop cut from 100 iterations to 1: it is not timed,
and at 1 thread it takes many minutes), and a data folder in its
layout (frames, ``<clip>_flow/<a>_<b>.npy`` flows both ways, ``<clip>_maskrcnn``
masks) holding the toy clip bench_atlas.py trains on: the engine's own DIS
flow and the clip's true masks stand in for RAFT and Mask R-CNN, whose cost is
preprocessing, not the training step.

``train.py`` prints the iteration number when each iteration starts; the time
between two of those lines is one step (the mapping pre-training before the
loop and the first, warm-up step are left out). Prints one JSON line: seconds
per step, the commit when DIR is a git clone, the date, threads, batch.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _official import commit_of, missing_files, now  # noqa: E402  bench/_official.py

NEEDED = ("train.py", "config/config.json", "implicit_neural_networks.py", "loss_utils.py",
          "unwrap_utils.py", "evaluate.py")
ITERATION = re.compile(r"^\d+$")   # train.py's print(i) at the start of iteration i
CLIP_NAME = "toy"


def checkout_problem(root: str) -> str | None:
    """Why ``root`` is not a usable layered-neural-atlases clone, or None."""
    return missing_files(root, NEEDED, "layered-neural-atlases")


def write_clip(folder: str, n_frames: int, size: int) -> str:
    """The toy clip of bench_atlas.py in NLA's data layout; the clip's folder."""
    import numpy as np
    from PIL import Image

    from livelayers.engine.atlas.flow import clip_flows
    from livelayers.toyworld.clips import make_toy_clip

    clip = make_toy_clip(n_frames=n_frames, height=size, width=size, seed=0)
    flow, _ = clip_flows(clip.frames, min_side=256)   # AtlasSettings().flow_min_side
    frames_dir = os.path.join(folder, CLIP_NAME)
    for sub in (CLIP_NAME, f"{CLIP_NAME}_flow", f"{CLIP_NAME}_maskrcnn"):
        os.makedirs(os.path.join(folder, sub))
    names = [f"{t:05d}.png" for t in range(n_frames)]
    for t, name in enumerate(names):
        rgb = clip.frames[t].permute(1, 2, 0).clamp(0, 1).numpy()
        Image.fromarray((rgb * 255).round().astype(np.uint8)).save(os.path.join(frames_dir, name))
        mask = (clip.masks[t, 0].numpy() > 0.5).astype(np.uint8) * 255
        Image.fromarray(mask).save(os.path.join(folder, f"{CLIP_NAME}_maskrcnn", name))
    for t in range(n_frames - 1):  # (H, W, 2) in pixels (dx, dy), as its RAFT step saves them
        a, b = names[t], names[t + 1]
        np.save(os.path.join(folder, f"{CLIP_NAME}_flow", f"{a}_{b}.npy"), flow[t, 0].numpy())
        np.save(os.path.join(folder, f"{CLIP_NAME}_flow", f"{b}_{a}.npy"), flow[t + 1, 1].numpy())
    return frames_dir


def write_config(root: str, folder: str, clip_dir: str, n_frames: int, size: int, steps: int,
                 batch: int) -> str:
    """config/config.json as cloned, pointed at the toy clip; its path."""
    with open(os.path.join(root, "config", "config.json")) as f:
        cfg = json.load(f)
    cfg.update({"data_folder": clip_dir, "resx": size, "resy": size, "maximum_number_of_frames": n_frames,
                "samples_batch": batch, "iters_num": steps + 2, "evaluate_every": 10 ** 9,
                "results_folder_name": "results", "load_checkpoint": False,
                "pretrain_iter_number": 1})   # set-up before the loop, not timed: kept short
    path = os.path.join(folder, "config.json")
    with open(path, "w") as f:
        json.dump(cfg, f, indent=1)
    return path


def iteration_starts(cmd: list[str], cwd: str, env: dict) -> list[float]:
    """Run ``cmd``; the clock time of each iteration-number line it prints."""
    starts, tail = [], []
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    for line in proc.stdout:
        if ITERATION.match(line.strip()):
            starts.append(time.perf_counter())
        tail = (tail + [line.rstrip()])[-20:]
    if proc.wait() != 0:
        raise RuntimeError(f"train.py exited {proc.returncode}: " + " | ".join(tail[-5:]))
    return starts


def measure(root: str, python: str, steps: int, threads: int, n_frames: int, size: int,
            batch: int) -> dict:
    """The JSON this script prints (see the module docstring)."""
    root = os.path.abspath(root)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with tempfile.TemporaryDirectory(prefix="ll-official-nla-") as tmp:
        clip_dir = write_clip(tmp, n_frames, size)
        config = write_config(root, tmp, clip_dir, n_frames, size, steps, batch)
        starts = iteration_starts([python, "-u", os.path.join(root, "train.py"), config], tmp, env)
    if len(starts) < steps + 2:
        raise RuntimeError(f"train.py printed {len(starts)} iteration numbers, not {steps + 2}")
    per_step = [b - a for a, b in zip(starts[1:], starts[2:])]   # iteration 0 is the warm-up
    return {"design": "official", "code": "ykasten/layered-neural-atlases", "commit": commit_of(root),
            "date": now(),
            "s_per_step": sum(per_step) / len(per_step), "first_step_s": starts[1] - starts[0],
            "steps": len(per_step), "batch": batch, "frames": n_frames, "size": size,
            "threads": threads or "default", "clock": "wall"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="a clone of github.com/ykasten/layered-neural-atlases")
    ap.add_argument("--python", default=sys.executable, help="the Python of its environment")
    ap.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up (default 5)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=64, help="frame width = height (default 64)")
    ap.add_argument("--batch", type=int, default=10000, help="points per step (default: the paper's 10000)")
    args = ap.parse_args(argv)
    problem = checkout_problem(args.root)
    bad = (f"--root {args.root}: {problem}; allowed: a clone of github.com/ykasten/layered-neural-atlases"
           if problem else next((f"--{k}: allowed: {lo} or more" for k, lo in
                                 (("steps", 1), ("frames", 2), ("size", 16), ("batch", 16))
                                 if getattr(args, k) < lo), None))
    if bad:
        print(f"official_nla: {bad}", file=sys.stderr)
        return 2
    print(json.dumps(measure(args.root, args.python, args.steps, args.threads, args.frames, args.size,
                             args.batch)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
