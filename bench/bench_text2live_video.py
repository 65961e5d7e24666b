"""Time one Text2LIVE *video* training step: our batched objective vs the
reference design, at the paper's video settings.

    nice -n 15 python bench/bench_text2live_video.py [--threads 1] [--steps 2]
    python bench/bench_text2live_video.py --quick          # small sizes, seconds (a test runs it)

Both designs run the same space–time crops (same seed: a centre frame and
its neighbours at ±2, the box around the object, the matching atlas crop),
the same generator on the atlas crop and the same sampling back into the
frames (``engine.text2live.video.video_loss_step``); only the objective on
the frames differs:

* ours (``engine.text2live.objective.objective``): every view of every frame
  crop's I_o and I_screen, plus each I_o at CLIP size, in ONE CLIP forward
  with gradient; the I_s side in one forward without; autocast on CUDA;
* reference: the official code's design (its train_video.py runs the image
  losses, util/losses.py, over the list of frame crops): for every frame crop,
  every loss draws and embeds its own views in one batched CLIP forward
  (composition, direction and screen views of I_o / I_screen, direction views
  of I_s), and the structure loss two more forwards per frame; fp32 on a CPU,
  fp16 CLIP on CUDA (the official ``clip.load`` keeps fp16 weights on a GPU).

* official: with ``--official DIR`` (a clone of github.com/omerbt/Text2LIVE,
  never shipped), the official video code's own step, timed on this machine
  by ``bench/official_text2live_video.py`` on the same clip (paper config
  only: its sizes are its config's).

The per-frame relevancy targets are computed once per run in both (that cost
is the setup column, not a step). Settings:

* paper (default): 768×432 frames (5, enough for a ±2 triplet), a ViT-B/32
  open_clip model with random weights (224 px, 12 blocks), 6 views, the
  default generator (7 scales × 128 channels), atlas at 2 atlas pixels per
  frame pixel (the paper's 2000² grid), foreground crops (α ≥ 0.95 + 30 px,
  ≥ 129 px). The clip is a toy circle (radius 86 px) decomposed with its
  masks, 200 steps: enough for the opacity to find the object, so that the
  crops are object boxes (232 px) and not whole frames; the step cost does
  not depend on the decomposition otherwise.
* quick: 96×64 frames, a toy-sized CLIP with random weights, 2 views, a
  3-scale × 8-channel generator.

Each design runs in its own subprocess so its peak memory is its own (max
RSS on the CPU, ``torch.cuda.max_memory_allocated`` during the steps on a
GPU). Whole-atlas steps (every 75th) are not timed. Prints a table and the
ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import check_size, row, run_json  # noqa: E402  bench/_timing.py

CONFIGS = {
    "paper": dict(n_frames=5, height=432, width=768, views=6, clip="ViT-B-32", scales=7, channels=128,
                  atlas_resolution=0, box_margin=30, box_min_size=129, decompose_steps=200),
    "quick": dict(n_frames=5, height=64, width=96, views=2, clip="toy", scales=3, channels=8,
                  atlas_resolution=64, box_margin=4, box_min_size=24, decompose_steps=100),
}
PROMPT, ROI = "blue circle", "red circle"


def make_atlas(cfg: dict, path: Path) -> None:
    """Decompose the bench clip (masks given, few steps) and save it to ``path``."""
    from livelayers.engine.atlas import AtlasSettings, decompose, save_atlas
    clip = plate(cfg)
    atlas = decompose(clip.frames, clip.masks, AtlasSettings(steps=cfg["decompose_steps"]), seed=0,
                      device="cpu")
    save_atlas(atlas, path)


def plate(cfg: dict):
    from livelayers.toyworld.clips import make_toy_clip
    return make_toy_clip(n_frames=cfg["n_frames"], height=cfg["height"], width=cfg["width"], seed=0,
                         shape="circle", colour="red", texture="checkered", size=0.2,
                         velocity=(0.01 * cfg["width"], 0.0))


def build_clip(cfg: dict, device: str):
    """A CLIP handle with random weights: ViT-B/32-sized or toy-sized."""
    import open_clip

    from livelayers.engine.models.clip import handle_from_model
    from livelayers.toyworld.train_clip import build_model
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None) if cfg["clip"] == "ViT-B-32" else build_model()
    return handle_from_model(model, device=device, spec=cfg["clip"])


def reference_objective(clip, frames, sparsity_alpha, texts, s, step, gen):
    """The reference design: per frame and per loss one batched CLIP forward of its views."""
    from livelayers.engine.text2live import losses as L
    from livelayers.engine.text2live.augment import clip_views
    from livelayers.engine.text2live.objective import structure_block, template_subset, to_clip_size
    size, v, block = clip.image_size, s.views, structure_block(clip)

    def embed_each(source, grad=True):
        views = clip_views(source, v, size, gen, s.view_aug)
        with torch.enable_grad() if grad else torch.no_grad():
            return clip.image_forward(views).embedding

    def tokens(x):
        return clip.image_forward(to_clip_size(x, size), tokens_from=(block,)).tokens[block]

    total = 0.0
    for f in frames:
        clip_loss = L.clip_text_loss(embed_each(f.composite), template_subset(texts.target, 0, gen))
        src = embed_each(f.source, grad=False)
        dir_loss = L.direction_loss(embed_each(f.composite), src, texts.target, texts.roi)
        screen = L.clip_text_loss(embed_each(f.screen), texts.screen)
        with torch.no_grad():
            src_tok = tokens(f.source)
        structure = L.structure_loss(tokens(f.composite), src_tok)
        boot = L.bootstrap_loss(to_clip_size(f.alpha, size), to_clip_size(f.target, size))
        w = L.bootstrap_weight(step, s.bootstrap_weight, s.bootstrap_steps)
        total = total + (s.lambda_comp * (clip_loss + dir_loss) + s.lambda_screen * screen
                         + s.lambda_structure * structure + w * boot) / len(frames)
    total = total + s.lambda_sparsity * L.sparsity_loss(sparsity_alpha, s.lambda_l1, s.lambda_l0)
    return total, {"total": float(total.detach())}


def run_design(config: str, design: str, steps: int, atlas_path: str) -> dict:
    """Time ``steps`` crop steps (after one warm-up step) of one design, in this process."""
    from livelayers.engine.atlas import load_atlas
    from livelayers.engine.device import autocast_dtype
    from livelayers.engine.text2live import video as V
    from livelayers.engine.text2live.generator import GeneratorConfig
    from livelayers.engine.text2live.objective import encode_texts, objective
    from livelayers.engine.text2live.settings import VideoSettings
    from livelayers.engine.text2live.trainer import build_generator, make_optimizer

    cfg = CONFIGS[config]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    clip = build_clip(cfg, str(device))
    atlas = load_atlas(atlas_path, device=str(device))
    frames = plate(cfg).frames
    gen_cfg = GeneratorConfig(scales=cfg["scales"], channels_down=cfg["channels"], channels_up=cfg["channels"])
    s = VideoSettings(views=cfg["views"], generator=gen_cfg, atlas_resolution=cfg["atlas_resolution"],
                      box_margin=cfg["box_margin"], box_min_size=cfg["box_min_size"], relevancy_blocks="last")
    if design == "reference":
        # the official code's precision: fp32 on a CPU, fp16 CLIP on CUDA (generator fp32)
        clip.autocast = torch.float16 if device.type == "cuda" else None
    amp = autocast_dtype(device, "auto") if design == "ours" else None
    fn = objective if design == "ours" else reference_objective
    t0 = time.perf_counter()
    targets = V.bootstrap_targets(clip, frames, ROI, None, s.relevancy_blocks)
    data = V.ClipData(atlas, "fg", V.atlas_resolution(atlas, "fg", s.atlas_resolution), targets,
                      s.fg_atlas_margin)
    texts = encode_texts(clip, PROMPT, ROI, None)
    setup = time.perf_counter() - t0
    generator = build_generator(s, 0, device).train()
    opt = make_optimizer(generator, s)
    gen = torch.Generator().manual_seed(0)         # views and templates (drawn differently per design)
    crop_gen = torch.Generator().manual_seed(0)    # crops: the same in both designs
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times, crops = [], []
    for step in range(1, steps + 2):               # step 0 would be a whole-atlas step
        crop = V.choose_crop(data, s, step, crop_gen, generator.multiple)
        if device.type == "cuda":
            torch.cuda.synchronize()
            if step == 2:
                torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        loss, _ = V.video_loss_step(clip, generator, data, crop, texts, s, step, gen, amp, device,
                                    objective_fn=fn)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
        crops.append((crop.atlas_box.width, crop.atlas_box.height, crop.boxes[0].width,
                      crop.boxes[0].height, len(crop.frames)))
    if device.type == "cuda":
        peak, kind = torch.cuda.max_memory_allocated() / 2**20, "cuda max allocated, steps"
    else:
        peak, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "max RSS"
    timed = times[1:]
    return {"design": design, "config": config, "device": str(device), "threads": torch.get_num_threads(),
            "step_s": sum(timed) / len(timed), "first_step_s": times[0], "setup_s": setup,
            "peak_mib": peak, "rss_before_mib": rss_before, "peak_kind": kind, "crops": crops[1:]}


# ``python -m livelayers bench --official text2live_video=DIR`` hands DIR to rows() here
OFFICIAL_ENV = "LIVELAYERS_OFFICIAL_TEXT2LIVE_VIDEO"
HERE = os.path.dirname(os.path.abspath(__file__))


def official_problem(root: str, config: str) -> str | None:
    """Why the official video code cannot be timed from ``root`` in ``config``, or None."""
    from official_text2live_video import checkout_problem
    if config != "paper":
        return "the official code runs at the paper config only (its sizes are its config's)"
    return checkout_problem(root)


def measure(config: str, steps: int, threads: int, decompose_steps: int | None = None,
            official: str | None = None) -> tuple[list[dict], float]:
    """([ours, reference] ``run_design`` dicts (+ the official step's when
    ``official`` is a Text2LIVE clone), seconds of the bench clip's
    decomposition): the atlas is made here (``decompose_steps`` overrides the
    config's), each design trains in its own subprocess (so that its peak
    memory is its own)."""
    cfg = dict(CONFIGS[config], **({"decompose_steps": decompose_steps} if decompose_steps else {}))
    with tempfile.TemporaryDirectory() as tmp:
        atlas_path = Path(tmp) / "bench.atlas.safetensors"
        t0 = time.perf_counter()
        make_atlas(cfg, atlas_path)
        decompose_s = time.perf_counter() - t0
        rows = []
        for design in ("ours", "reference"):
            args = [os.path.abspath(__file__), "--steps", str(steps), "--threads", str(threads),
                    "--design", design, "--atlas", str(atlas_path)]
            rows.append(run_json(args + (["--quick"] if config == "quick" else [])))
    if official:
        # the stand-in atlas at our decomposition's scale (atlas crop / frame crop), so that
        # the official generator sees atlas crops of the size ours does
        scale = sum(aw / fw for aw, _, fw, _, _ in rows[0]["crops"]) / len(rows[0]["crops"])
        rows.append(run_json([os.path.join(HERE, "official_text2live_video.py"), "--root", official,
                              "--steps", str(steps), "--threads", str(threads),
                              "--atlas-scale", f"{scale:.3f}"]))
    return rows, decompose_s


def official_note(off: dict) -> str:
    crop = off["crops"][0]
    return (f"official = {off['code']} @ {off['commit'][:10]}, its own video step timed here {off['date']} "
            f"({off['device']}, {off['steps']} step(s) after 1 warm-up; random ViT-B/32 weights; the clip's "
            f"true atlas at {off['atlas_scale']:.2f} atlas px per frame px for its NLA checkpoint; crops 3 x "
            f"~{crop['frames'][0][1]}x{crop['frames'][0][0]} px -> atlas {crop['atlas'][1]}x{crop['atlas'][0]})")


def rows(size: str) -> list[dict]:
    """The table rows of ``python -m livelayers bench``: quick = the quick config
    with a 30-step decomposition (the crops may then be whole frames: the same
    code, cheaper to set up), 1 timed step; reference = the paper config, 2
    timed steps, as docs/video.md. Threads: this process's torch threads."""
    config, steps, decompose = ("quick", 1, 30) if check_size(size) == "quick" else ("paper", 2, None)
    official = (os.environ.get(OFFICIAL_ENV) or None) if config == "paper" else None
    (ours, ref, *off), _ = measure(config, steps, torch.get_num_threads(), decompose, official)
    cfg = CONFIGS[config]
    where = (f"{config} config ({cfg['width']}x{cfg['height']} frames, CLIP {cfg['clip']} random, "
             f"{cfg['views']} views, generator {cfg['scales']}x{cfg['channels']})")
    crop = ours["crops"][0]
    note = (f"{ours['device']}, {steps} timed crop step(s) after 1 warm-up, crops {crop[4]} x "
            f"{crop[2]}x{crop[3]} px")
    out = [row("text2live_video", f"crop training step, {where}", "s/step", ours["step_s"],
               ref["step_s"], note)]
    if off:
        out.append(row("text2live_video", f"crop training step vs the official code, {where}", "s/step",
                       ours["step_s"], off[0]["step_s"], official_note(off[0])))
        out.append(row("text2live_video", f"peak memory vs the official code, {where}", "MiB",
                       ours["peak_mib"], off[0]["peak_mib"], off[0]["peak_kind"]))
    out.append(row("text2live_video", f"peak memory, {where}", "MiB", ours["peak_mib"], ref["peak_mib"],
                   ours["peak_kind"]))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (seconds), for a test")
    ap.add_argument("--steps", type=int, default=None, help="timed crop steps after one warm-up "
                    "(default: 2 paper, 2 quick)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: a shared machine)")
    ap.add_argument("--official", metavar="DIR", help="also time the official video code's step from "
                    "this clone of github.com/omerbt/Text2LIVE (paper config only)")
    ap.add_argument("--design", choices=("ours", "reference"), help=argparse.SUPPRESS)
    ap.add_argument("--atlas", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    config = "quick" if args.quick else "paper"
    problem = args.official and official_problem(args.official, config)
    if problem:
        ap.error(f"--official {args.official}: {problem}")
    steps = args.steps if args.steps is not None else 2
    torch.set_num_threads(args.threads)
    if args.design:                                # child: one design, JSON on the last line
        print(json.dumps(run_design(config, args.design, steps, args.atlas)))
        return 0
    rows, decompose_s = measure(config, steps, args.threads, official=args.official)
    cfg = CONFIGS[config]
    ours, ref, *official = rows
    print(f"Text2LIVE video step, {config}: {cfg['width']}x{cfg['height']} frames, CLIP {cfg['clip']} "
          f"(random weights), {cfg['views']} views, generator {cfg['scales']}x{cfg['channels']}, "
          f"device={ours['device']}, threads={ours['threads']}, timed steps={steps} (+1 warm-up)")
    crops = ", ".join(f"{k} x {fw}x{fh} -> atlas {aw}x{ah}" for aw, ah, fw, fh, k in ours["crops"])
    print(f"timed crops (frames x frame crop -> atlas crop, px): {crops}; "
          f"bench decomposition {decompose_s:.0f} s, not counted")
    print(f"{'design':<11}{'step s':>10}{'1st step s':>12}{'setup s':>10}{'peak MiB':>11}"
          f"{'before MiB':>12}  ({ours['peak_kind']})")
    for r in rows:
        print(f"{r['design']:<11}{r['step_s']:>10.3f}{r['first_step_s']:>12.3f}{r['setup_s']:>10.3f}"
              f"{r['peak_mib']:>11.0f}{r.get('rss_before_mib', float('nan')):>12.0f}")
    print(f"speed-up (reference step / ours): {ref['step_s'] / ours['step_s']:.2f}x")
    print(f"memory ratio (reference / ours):  {ref['peak_mib'] / ours['peak_mib']:.2f}x")
    if official:
        off = official[0]
        print(f"speed-up (official step / ours):  {off['step_s'] / ours['step_s']:.2f}x  ({official_note(off)})")
        print(f"reference design / official step: {ref['step_s'] / off['step_s']:.2f}x  (1 = calibrated)")
        print(f"memory ratio (official / ours):   {off['peak_mib'] / ours['peak_mib']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
