"""Time one Text2LIVE training step: our batched step vs the reference design.

    python bench/bench_text2live.py [--settings toy|reference] [--steps N] [--threads T]

* ours: ``engine.text2live.trainer.loss_step``: all views of I_o and I_screen
  plus I_o at CLIP size in ONE CLIP forward with gradient, the I_s side in one
  forward without; relevancy computed once per run (not per step); autocast
  on CUDA.
* reference: the official code's design (calibrated against it, below): each
  loss draws and embeds its own 16 views in one batched CLIP forward (the
  composition loss and the direction loss each of I_o, the direction loss also
  of I_s, the screen loss of I_screen), the structure loss two more forwards,
  and the relevancy map of the crop recomputed every step while bootstrapping;
  fp32 on a CPU, fp16 CLIP on CUDA (the official ``clip.load`` keeps fp16
  weights on a GPU).
* official: with ``--official DIR`` (a clone of github.com/omerbt/Text2LIVE,
  never shipped), the official code's own step timed on this machine by
  ``bench/official_text2live.py`` (reference settings only: its generator and
  CLIP are fixed at ViT-B/32 sizes), and again with every CLIP loss weighted 0
  (``--generator-only``): the difference is its CLIP side, compared with ours
  (our step minus the floor's generator part).

Settings: ``toy`` = toy-sized CLIP (64 px, 4 blocks), 128-px image, generator
4 scales x 32 channels; ``reference`` = ViT-B/32-sized CLIP with random
weights, 512-px crop, default generator (7 x 128), 16 views. Each design runs
in its own subprocess so its peak memory (max RSS on CPU,
torch.cuda.max_memory_allocated on GPU) is its own. Prints a table and ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import best_of, check_size, row, run_json  # noqa: E402  bench/_timing.py


def build(settings_name: str):
    """(clip handle, image (1,3,H,W), Text2LIVESettings) for a settings name."""
    import open_clip

    from livelayers.engine.models.clip import handle_from_model
    from livelayers.engine.text2live import GeneratorConfig, Text2LIVESettings
    from livelayers.toyworld import scenes
    from livelayers.toyworld.train_clip import build_model

    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if settings_name == "reference":
        model = open_clip.create_model("ViT-B-32", pretrained=None)
        size, gen_cfg = 512, GeneratorConfig()
    else:
        model = build_model()
        size, gen_cfg = 128, GeneratorConfig(scales=4, channels_down=32, channels_up=32)
    clip = handle_from_model(model, device=device, spec=settings_name)
    rng = __import__("numpy").random.default_rng(0)
    scene = scenes.random_scene(rng, n_objects=2, background="grass")
    img, _ = scenes.render_scene(scene, size, supersample=1)
    image = torch.from_numpy(img).permute(2, 0, 1)[None].to(device)
    settings = Text2LIVESettings(views=16, resolution=0, generator=gen_cfg, relevancy_blocks="last")
    return clip, image, settings


def reference_loss(clip, generator, crop, texts, s, step, gen, roi_text):
    """The official design: one batched CLIP forward per loss, relevancy per step."""
    from livelayers.engine.relevancy import relevancy_map
    from livelayers.engine.text2live import losses as L
    from livelayers.engine.text2live.augment import clip_views
    from livelayers.engine.text2live.generator import split_rgba
    from livelayers.engine.text2live.trainer import _template_subset, _to_clip_size

    size, v, block = clip.image_size, s.views, clip.n_blocks - 2
    colour, alpha = split_rgba(generator(crop))
    comp = L.composite(colour, alpha, crop)
    screen = L.green_screen(colour, alpha)

    def embed_each(source, grad=True):  # one loss's own views, one batched forward
        views = clip_views(source, v, size, gen, s.view_aug)
        ctx = torch.enable_grad() if grad else torch.no_grad()
        with ctx:
            return clip.image_forward(views).embedding

    clip_loss = L.clip_text_loss(embed_each(comp), _template_subset(texts.target, 0, gen))
    src = embed_each(crop, grad=False)
    dir_loss = L.direction_loss(embed_each(comp), src, texts.target, texts.roi)
    screen_loss = L.clip_text_loss(embed_each(screen), texts.screen)
    out_tok = clip.image_forward(_to_clip_size(comp, size), tokens_from=(block,)).tokens[block]
    with torch.no_grad():
        src_tok = clip.image_forward(_to_clip_size(crop, size), tokens_from=(block,)).tokens[block]
    structure = L.structure_loss(out_tok, src_tok)
    target = relevancy_map(clip, crop.detach(), roi_text, blocks="last")
    boot = L.bootstrap_loss(_to_clip_size(alpha, size), _to_clip_size(target, size))
    w = L.bootstrap_weight(step, s.bootstrap_weight, s.bootstrap_steps)
    return (clip_loss + dir_loss + s.lambda_screen * screen_loss + s.lambda_structure * structure
            + s.lambda_sparsity * L.sparsity_loss(alpha) + w * boot)


def floor_parts(clip, generator, image, s, repeat: int) -> dict:
    """The floor of one step: what any implementation of the objective pays.
    The generator's forward + backward at the crop size, the CLIP passes with
    gradient to the input only (every view of I_o and I_screen plus I_o at CLIP
    size, frozen weights: one forward + backward), and the source side without
    gradient (every view of I_s plus I_s at CLIP size). Each part timed alone,
    best of ``repeat``; no augmentation, loss arithmetic or optimiser step."""
    from livelayers.engine.text2live.objective import structure_block, uses
    size, v, use = clip.image_size, s.views, uses(s)
    block = (structure_block(clip),) if use["structure"] else ()
    n_out = v * (2 if use["screen"] else 1) + (1 if use["structure"] else 0)
    n_src = v + (1 if use["structure"] else 0)
    x_out = torch.rand(n_out, 3, size, size, device=image.device)
    x_src = torch.rand(n_src, 3, size, size, device=image.device)

    def sync():
        if image.is_cuda:
            torch.cuda.synchronize()

    def gen_part():
        generator.zero_grad(set_to_none=True)
        generator(image).float().square().mean().backward()
        sync()

    def clip_out():
        x = x_out.clone().requires_grad_(True)
        out = clip.image_forward(x, tokens_from=block)
        loss = out.embedding.square().sum() + sum(t.float().square().mean() for t in out.tokens.values())
        loss.backward()
        sync()

    def clip_src():
        with torch.no_grad():
            clip.image_forward(x_src, tokens_from=block)
        sync()

    parts = {"generator fwd+bwd": best_of(gen_part, repeat), "CLIP output views fwd+bwd": best_of(clip_out, repeat),
             "CLIP source views fwd": best_of(clip_src, repeat)}
    parts["floor"] = sum(parts.values())
    return parts


def run_design(settings_name: str, design: str, steps: int) -> dict:
    """Time ``steps`` training steps (after one warm-up) of one design, in this process."""
    import madgrad

    from livelayers.engine.device import autocast_dtype
    from livelayers.engine.text2live.trainer import (_encode_texts, bootstrap_target, build_generator,
                                                     loss_step)

    clip, image, s = build(settings_name)
    prompt, roi = "blue circle", "red circle"
    if design == "floor":
        generator = build_generator(s, 0, image.device).train()
        parts = floor_parts(clip, generator, image, s, max(steps, 1))
        return {"design": design, "settings": settings_name, "device": str(image.device),
                "step_s": parts["floor"], "parts": parts, "threads": torch.get_num_threads()}
    if design == "reference":  # the official code's precision: fp32 on a CPU, fp16 CLIP on CUDA
        clip.autocast = torch.float16 if image.is_cuda else None
    texts = _encode_texts(clip, prompt, roi, None)
    generator = build_generator(s, 0, image.device).train()
    opt = madgrad.MADGRAD(generator.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    gen = torch.Generator().manual_seed(0)
    amp = autocast_dtype(image.device, "auto")
    t_setup = time.perf_counter()
    target = bootstrap_target(clip, image, roi, None, "last") if design == "ours" else None
    setup = time.perf_counter() - t_setup
    times = []
    for step in range(steps + 1):
        if image.is_cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        if design == "ours":
            loss, _, _ = loss_step(clip, generator, image, target, texts, s, step, gen, amp)
        else:
            loss = reference_loss(clip, generator, image, texts, s, step, gen, roi)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if image.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    if image.is_cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
        peak_kind = "cuda max allocated"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        peak_kind = "max RSS"
    step_times = times[1:] if steps >= 1 else times
    return {"design": design, "settings": settings_name, "device": str(image.device),
            "step_s": sum(step_times) / len(step_times), "first_step_s": times[0],
            "setup_s": setup, "peak_mib": peak, "peak_kind": peak_kind,
            "threads": torch.get_num_threads()}


# ``python -m livelayers bench --official text2live=DIR`` hands DIR to rows() here
OFFICIAL_ENV = "LIVELAYERS_OFFICIAL_TEXT2LIVE"
HERE = os.path.dirname(os.path.abspath(__file__))


def official_problem(root: str, settings_name: str) -> str | None:
    """Why the official code cannot be timed from ``root`` at these settings, or None."""
    from official_text2live import checkout_problem
    if settings_name != "reference":
        return "the official code runs at the reference settings only (its CLIP and generator sizes are fixed)"
    return checkout_problem(root)


def measure(settings_name: str, steps: int, threads: int, official: str | None = None) -> list[dict]:
    """[ours, reference, floor] (+ official, official generator only when
    ``official`` is a Text2LIVE clone): ``run_design``'s dict of each, each
    design in its own subprocess (so that its peak memory is its own)."""
    cmds = [[os.path.abspath(__file__), "--settings", settings_name, "--design", design]
            for design in ("ours", "reference", "floor")]
    if official:
        harness = [os.path.join(HERE, "official_text2live.py"), "--root", official]
        cmds += [harness, [*harness, "--generator-only"]]
    return [run_json([*cmd, "--steps", str(steps), "--threads", str(threads)]) for cmd in cmds]


SETTINGS_TEXT = {"toy": "toy CLIP 64 px, 128 px image, 4x32 generator, 16 views",
                 "reference": "random ViT-B/32, 512 px, 7x128 generator, 16 views"}


def rows(size: str) -> list[dict]:
    """The table rows of ``python -m livelayers bench``: quick = the toy settings,
    1 timed step; reference = toy (3 steps) and reference settings (1 step), as
    docs/text2live.md. Threads: this process's torch threads."""
    plan = [("toy", 1)] if check_size(size) == "quick" else [("toy", 3), ("reference", 1)]
    official = os.environ.get(OFFICIAL_ENV) or None
    out = []
    for settings_name, steps in plan:
        root = official if settings_name == "reference" else None
        ours, ref, floor, *timed_official = measure(settings_name, steps, torch.get_num_threads(), root)
        where = f"{settings_name} settings ({SETTINGS_TEXT[settings_name]})"
        note = f"{ours['device']}, {steps} timed step(s) after 1 warm-up"
        out.append(row("text2live", f"training step, {where}", "s/step", ours["step_s"], ref["step_s"],
                       note))
        if timed_official:
            off, off_gen = timed_official
            out.append(row("text2live", f"training step vs the official code, {where}", "s/step",
                           ours["step_s"], off["step_s"], official_note(off)))
            ours_clip, off_clip = clip_sides(ours, floor, off, off_gen)
            out.append(row("text2live", f"CLIP side of the step vs the official code's, {where}", "s/step",
                           ours_clip, off_clip, "ours - the floor's generator part vs official - official "
                           f"with every CLIP loss weighted 0 ({off_gen['step_s']:.2f} s)"))
        out.append(row("text2live", f"peak memory, {where}", "MiB", ours["peak_mib"], ref["peak_mib"],
                       ours["peak_kind"]))
        parts = ", ".join(f"{k} {v:.3f} s" for k, v in floor["parts"].items() if k != "floor")
        out.append(row("text2live", f"floor of the step, {where}", "s/step", floor["step_s"],
                       note=f"ours / floor = {ours['step_s'] / floor['step_s']:.2f}x; {parts}"))
    return out


def clip_sides(ours: dict, floor: dict, off: dict, off_gen: dict) -> tuple[float, float]:
    """(our step's CLIP side, the official step's): each step minus its generator part."""
    return (ours["step_s"] - floor["parts"]["generator fwd+bwd"], off["step_s"] - off_gen["step_s"])


def official_note(off: dict) -> str:
    return (f"official = {off['code']} @ {off['commit'][:10]}, its own step timed here {off['date']} "
            f"({off['device']}, {off['steps']} step(s) after 1 warm-up; random ViT-B/32 weights)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", choices=("toy", "reference"), default="toy")
    ap.add_argument("--steps", type=int, default=None, help="timed steps after one warm-up "
                    "(default: 3 toy, 1 reference)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--official", metavar="DIR", help="also time the official code's step from this "
                    "clone of github.com/omerbt/Text2LIVE (reference settings only)")
    ap.add_argument("--design", choices=("ours", "reference", "floor"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    steps = args.steps if args.steps is not None else (3 if args.settings == "toy" else 1)
    problem = args.official and official_problem(args.official, args.settings)
    if problem:
        ap.error(f"--official {args.official}: {problem}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.design:  # child process: one design, JSON on the last line
        print(json.dumps(run_design(args.settings, args.design, steps)))
        return
    rows = measure(args.settings, steps, args.threads, args.official)
    print(f"Text2LIVE step, settings={args.settings}, device={rows[0]['device']}, "
          f"threads={rows[0]['threads']}, timed steps={steps} (+1 warm-up)")
    print(f"{'design':<11}{'step s':>10}{'1st step s':>12}{'setup s':>10}{'peak MiB':>11}  ({rows[0]['peak_kind']})")
    ours, ref, floor, *official = rows
    for r in (ours, ref, *official[:1]):
        print(f"{r['design']:<11}{r['step_s']:>10.3f}{r['first_step_s']:>12.3f}{r['setup_s']:>10.3f}"
              f"{r['peak_mib']:>11.0f}")
    print(f"{'floor':<11}{floor['step_s']:>10.3f}   = " + " + ".join(
        f"{k} {v:.3f}" for k, v in floor["parts"].items() if k != "floor"))
    print(f"speed-up (reference step / ours): {ref['step_s'] / ours['step_s']:.2f}x")
    if official:
        off, off_gen = official
        print(f"speed-up (official step / ours):  {off['step_s'] / ours['step_s']:.2f}x  ({official_note(off)})")
        print(f"reference design / official step: {ref['step_s'] / off['step_s']:.2f}x  (1 = calibrated)")
        ours_clip, off_clip = clip_sides(ours, floor, off, off_gen)
        print(f"CLIP side (step - its generator part): ours {ours_clip:.2f} s, official {off_clip:.2f} s "
              f"(official with no CLIP loss: {off_gen['step_s']:.2f} s/step): {off_clip / ours_clip:.2f}x")
    print(f"ours / floor: {ours['step_s'] / floor['step_s']:.2f}x  (the floor: generator fwd+bwd and the "
          "CLIP passes the objective needs, each timed alone)")
    print(f"memory ratio (reference / ours):  {ref['peak_mib'] / ours['peak_mib']:.2f}x")


if __name__ == "__main__":
    main()
