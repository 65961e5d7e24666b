"""Atlas bench: time to reach a reconstruction PSNR with hash-grid fields vs
the original positional-encoding MLPs, and edit-render speed at 1080p.

    nice -n 10 python bench/bench_atlas.py [--cap 120] [--threads 2]

The same toy clip (8 frames, 64×64, known motion, masks given), the same
batch and objective for both encodings; only the fields differ. PSNR is over
the whole clip, measured every few steps with the clock stopped. A target
not reached within ``--cap`` seconds is reported as such.

Times are the process's CPU seconds (``time.process_time``) with ``--threads``
torch threads (default 1): on a shared machine, wall-clock time measures the
neighbours, CPU time measures the method. With 1 thread the two agree on an
idle machine.
"""
from __future__ import annotations

import argparse
import time

import torch

from livelayers.engine.atlas import AtlasSettings
from livelayers.engine.atlas import train
from livelayers.engine.atlas.coords import ClipGeometry
from livelayers.engine.atlas.flow import clip_flows
from livelayers.engine.atlas.render import Edit, render_maps
from livelayers.engine.atlas.synthetic import make_toy_clip

TARGETS = (25.0, 30.0)


@torch.no_grad()
def clip_psnr(fields, geo: ClipGeometry, frames: torch.Tensor) -> float:
    mse = 0.0
    for t in range(geo.n_frames):
        rgb = fields(geo.frame_grid(t))["rgb"].T.reshape(3, geo.height, geo.width)
        mse += float(((rgb - frames[t]) ** 2).mean())
    return float(-10 * torch.log10(torch.tensor(mse / geo.n_frames)))


def time_to_psnr(encoding: str, clip, cap_s: float, eval_every: int) -> dict:
    s = AtlasSettings(encoding=encoding, steps=100000)
    flows, valid = clip_flows(clip.frames)
    data = train._Clip(clip.frames, clip.masks, flows, valid, torch.device("cpu"))
    fields = train.build_fields(s, 0)
    opt = train.make_optimizer(fields, s)
    gen = torch.Generator().manual_seed(0)
    # A fixed schedule for both: bootstrap/global rigidity over the first 1000 steps.
    s.bootstrap_until = s.global_rigidity_until = 1000 / s.steps
    reached: dict[float, tuple[float, int] | None] = {t: None for t in TARGETS}
    clock, step, best = 0.0, 0, 0.0
    while clock < cap_s and any(v is None for v in reached.values()):
        t0 = time.process_time()
        for _ in range(eval_every):
            loss, _ = train.training_step(fields, data, s, step, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        clock += time.process_time() - t0
        p = clip_psnr(fields, data.geo, clip.frames)
        best = max(best, p)
        for target in TARGETS:
            if reached[target] is None and p >= target:
                reached[target] = (clock, step)
    return {"reached": reached, "steps": step, "seconds": clock, "best": best,
            "s_per_step": clock / max(step, 1)}


def render_fps(n_frames: int = 4, atlas_res: int = 1024) -> float:
    """Edit rendering (grid-sample of fg + bg edits, composite) at 1920×1080,
    given the per-frame maps; frames per second."""
    g = torch.Generator().manual_seed(0)
    h, w = 1080, 1920
    uv = torch.rand(n_frames, 2, h, w, generator=g) * 1.6 - 0.8
    alpha = torch.rand(n_frames, 1, h, w, generator=g)
    plate = torch.rand(n_frames, 3, h, w, generator=g)
    edit = Edit(torch.rand(1, 3, atlas_res, atlas_res, generator=g), torch.rand(1, 1, atlas_res, atlas_res, generator=g))
    box = (-1.0, -1.0, 1.0, 1.0)
    render_maps(uv[:1], uv[:1], alpha[:1], plate[:1], edit, edit, box, box)  # warm-up
    t0 = time.process_time()
    render_maps(uv, uv, alpha, plate, edit, edit, box, box)
    return n_frames / (time.process_time() - t0) * torch.get_num_threads()


def field_seconds_per_1080p_frame(encoding: str) -> float:
    """Evaluating the mappings + opacity for one 1080p frame (what a render
    does once per frame before the grid-sample)."""
    fields = train.build_fields(AtlasSettings(encoding=encoding), 0).eval()
    geo = ClipGeometry(2, 1080, 1920)
    xyt = geo.frame_grid(0)[: 1 << 18]              # a quarter-million pixels, scaled up
    t0 = time.process_time()
    with torch.no_grad():
        for s in range(0, xyt.shape[0], 1 << 16):
            p = xyt[s:s + (1 << 16)]
            fields.uv_fg(p), fields.uv_bg(p), fields.alpha(p)
    return (time.process_time() - t0) / torch.get_num_threads() * (1080 * 1920) / xyt.shape[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cap", type=float, default=120.0, help="seconds of training per encoding")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval-every", type=int, default=25)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    clip = make_toy_clip(n_frames=8, height=64, width=64, seed=0)
    print(f"clip: 8 frames 64x64, masks given; batch {AtlasSettings().batch} px/step; "
          f"cap {args.cap:.0f} CPU s per encoding; {args.threads} thread(s); times in CPU seconds")
    results = {enc: time_to_psnr(enc, clip, args.cap, args.eval_every) for enc in ("hash", "positional")}
    print(f"\n{'encoding':<11} {'s/step':>7} {'steps':>6} {'best dB':>8} " +
          " ".join(f"{'t(' + str(int(t)) + ' dB)':>14}" for t in TARGETS))
    for enc, r in results.items():
        cells = []
        for t in TARGETS:
            got = r["reached"][t]
            cells.append(f"{got[0]:7.1f}s@{got[1]:<5d}" if got else f"{'not in ' + str(int(r['seconds'])) + 's':>14}")
        print(f"{enc:<11} {r['s_per_step']:7.3f} {r['steps']:6d} {r['best']:8.2f} " + " ".join(cells))
    h, p = results["hash"], results["positional"]
    print(f"\nper-step cost ratio positional/hash: {p['s_per_step'] / h['s_per_step']:.1f}x")
    for t in TARGETS:
        th, tp = h["reached"][t], p["reached"][t]
        if th and tp:
            print(f"time-to-{t:.0f} dB ratio positional/hash: {tp[0] / th[0]:.1f}x")
        elif th:
            print(f"time-to-{t:.0f} dB ratio positional/hash: > {p['seconds'] / th[0]:.1f}x "
                  f"(positional did not reach it in {p['seconds']:.0f} s)")
    fps = render_fps()
    print(f"\nedit render at 1920x1080 (grid-sample fg+bg, composite), maps given: {fps:.2f} fps "
          f"(CPU-time based, ~ fps on {args.threads} idle core(s))")
    for enc in ("hash", "positional"):
        print(f"field evaluation per 1080p frame ({enc}): {field_seconds_per_1080p_frame(enc):.2f} s")


if __name__ == "__main__":
    main()
