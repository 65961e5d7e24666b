"""Atlas bench: time to reach a reconstruction PSNR with hash-grid fields vs
the original positional-encoding MLPs, edit-render speed at 1080p, the
per-frame UV/opacity maps at 1080p (the hash encoding's level-by-level path
vs the direct all-corners gather it replaced), and memory vs clip length.

    nice -n 10 python bench/bench_atlas.py [--cap 120] [--threads 2]
    python bench/bench_atlas.py --only maps      # 1080p maps before/after
    python bench/bench_atlas.py --only memory [--device cuda]
    python bench/bench_atlas.py --only official --official DIR [--official-python PY]

The same toy clip (8 frames, 64×64, known motion, masks given), the same
batch and objective for both encodings; only the fields differ. PSNR is over
the whole clip, measured every few steps with the clock stopped. A target
not reached within ``--cap`` seconds is reported as such.

Times are the process's CPU seconds (``time.process_time``) with ``--threads``
torch threads (default 1): on a shared machine, wall-clock time measures the
neighbours, CPU time measures the method. With 1 thread the two agree on an
idle machine.

``--official DIR`` (a clone of github.com/ykasten/layered-neural-atlases, never
shipped) also times the published code's own training step on the same clip
(bench/official_nla.py, its ``train.py`` under ``--official-python``) beside
ours and the positional reference design, all three at its batch of 10000
points: the reference design's calibration against the code it stands for.
"""
from __future__ import annotations

import argparse
import os
import time

import torch

import contextlib
import resource

from livelayers.engine.atlas import AtlasSettings
from livelayers.engine.atlas import train
from livelayers.engine.atlas.coords import ClipGeometry
from livelayers.engine.atlas.encoding import HashGrid
from livelayers.engine.atlas.store import Atlas
from livelayers.engine.atlas.flow import clip_flows
from livelayers.engine.atlas.render import Edit, render_maps
from livelayers.toyworld.clips import make_toy_clip

from _timing import check_size, row, run_json  # bench/_timing.py

TARGETS = (25.0, 30.0)
# ``python -m livelayers bench --official atlas=DIR`` hands DIR (and the Python
# of its environment, --official-python atlas=PY) to rows() here
OFFICIAL_ENV, OFFICIAL_PYTHON_ENV = "LIVELAYERS_OFFICIAL_ATLAS", "LIVELAYERS_OFFICIAL_ATLAS_PYTHON"
NLA_BATCH = 10000   # the published samples_batch


def optimise(fields, data, s, step: int, gen, opt) -> None:
    """One training step of the NLA objective (the trainer's own ``training_step``)."""
    loss, _ = train.training_step(fields, data, s, step, gen)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


@torch.no_grad()
def clip_psnr(fields, geo: ClipGeometry, frames: torch.Tensor) -> float:
    mse = 0.0
    for t in range(geo.n_frames):
        rgb = fields(geo.frame_grid(t))["rgb"].T.reshape(3, geo.height, geo.width)
        mse += float(((rgb - frames[t]) ** 2).mean())
    return float(-10 * torch.log10(torch.tensor(mse / geo.n_frames)))


def time_to_psnr(encoding: str, clip, cap_s: float, eval_every: int, max_steps: int | None = None,
                 batch: int | None = None) -> dict:
    s = AtlasSettings(encoding=encoding, steps=100000)
    if batch:
        s.batch = batch
    flows, valid = clip_flows(clip.frames, min_side=AtlasSettings().flow_min_side)
    data = train._Clip(clip.frames, clip.masks, flows, valid, torch.device("cpu"))
    fields = train.build_fields(s, 0)
    opt = train.make_optimizer(fields, s)
    gen = torch.Generator().manual_seed(0)
    # A fixed schedule for both: bootstrap/global rigidity over the first 1000 steps.
    s.bootstrap_until = s.global_rigidity_until = 1000 / s.steps
    reached: dict[float, tuple[float, int] | None] = {t: None for t in TARGETS}
    clock, step, best = 0.0, 0, 0.0
    while (clock < cap_s and any(v is None for v in reached.values())
           and (max_steps is None or step < max_steps)):
        t0 = time.process_time()
        for _ in range(eval_every):
            optimise(fields, data, s, step, gen, opt)
            step += 1
        clock += time.process_time() - t0
        p = clip_psnr(fields, data.geo, clip.frames)
        best = max(best, p)
        for target in TARGETS:
            if reached[target] is None and p >= target:
                reached[target] = (clock, step)
    return {"reached": reached, "steps": step, "seconds": clock, "best": best,
            "s_per_step": clock / max(step, 1)}


def official_step(root: str, python: str | None, steps: int) -> dict:
    """bench/official_nla.py's JSON: the published code's step on this bench's clip."""
    here = os.path.dirname(os.path.abspath(__file__))
    args = [os.path.join(here, "official_nla.py"), "--root", root, "--steps", str(steps),
            "--threads", str(torch.get_num_threads()), "--batch", str(NLA_BATCH)]
    return run_json(args + (["--python", python] if python else []))


def official_rows(clip, root: str, python: str | None, steps: int = 3) -> list[dict]:
    """Ours (hash) and the reference design (positional) at NLA's batch vs the
    published code's own step, on the same clip."""
    off = official_step(root, python, steps)
    hash_r = time_to_psnr("hash", clip, 600.0, steps, max_steps=steps, batch=NLA_BATCH)
    pos_r = time_to_psnr("positional", clip, 600.0, steps, max_steps=steps, batch=NLA_BATCH)
    where = f"8 frames 64², batch {NLA_BATCH} (NLA's)"
    note = (f"official = {off['code']} @ {off['commit'][:10]}, its train.py timed here {off['date']} "
            f"(wall s, {off['steps']} steps after 1 warm-up); ours: CPU s")
    calibration = (f"reference design (positional MLPs) {pos_r['s_per_step']:.3f} s/step = "
                   f"{pos_r['s_per_step'] / off['s_per_step']:.2f}x the official step")
    return [row("atlas", f"training step vs the official NLA code, hash grids (ours), {where}", "s/step",
                hash_r["s_per_step"], off["s_per_step"], note),
            row("atlas", f"training step vs the official NLA code, positional MLPs (reference design), "
                f"{where}", "s/step", pos_r["s_per_step"], off["s_per_step"], calibration)]


def render_fps(n_frames: int = 4, atlas_res: int = 1024, h: int = 1080, w: int = 1920) -> float:
    """Edit rendering (grid-sample of fg + bg edits, composite) at ``w``×``h``
    (default 1920×1080), given the per-frame maps; frames per second."""
    g = torch.Generator().manual_seed(0)
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


@contextlib.contextmanager
def reference_encoding():
    """Evaluate hash grids with the direct all-levels gather (the path before the
    level-by-level forward), for the 'before' column."""
    fast = HashGrid.forward
    HashGrid.forward = HashGrid.forward_reference
    try:
        yield
    finally:
        HashGrid.forward = fast


def frame_maps_seconds(height: int = 1080, width: int = 1920, chunk: int = 1 << 16,
                       reference: bool = False) -> tuple[float, torch.Tensor]:
    """CPU seconds (per thread) of one full frame's UV + opacity maps
    (``Atlas.frame_maps`` without the cache), and the maps (5, H, W)."""
    s = AtlasSettings()
    fields = train.build_fields(s, 0).eval()
    with torch.no_grad():  # untrained fields are flat (mappings exactly 0.8·xy): give them structure
        g = torch.Generator().manual_seed(1)
        for p in fields.grid_parameters():
            p.uniform_(-0.5, 0.5, generator=g)
        for m in (fields.map_fg, fields.map_bg):
            m.net.out.weight.normal_(0, 0.1, generator=g)
    atlas = Atlas(fields, s, ClipGeometry(2, height, width), [0, 1], boxes={})
    with reference_encoding() if reference else contextlib.nullcontext():
        t0 = time.process_time()
        maps = atlas._evaluate_frame(0, chunk)
        seconds = (time.process_time() - t0) / torch.get_num_threads()
    return seconds, torch.cat(maps)


def bench_maps() -> None:
    print("\nUV/opacity maps of one 1920x1080 frame (hash encoding, CPU s per thread):")
    new_s, new = frame_maps_seconds()
    big_s, _ = frame_maps_seconds(chunk=1 << 18)
    old_s, old = frame_maps_seconds(reference=True)
    diff = float((new - old).abs().max())
    print(f"{'path':<44} {'s/frame':>8}")
    print(f"{'before: all-corners gather (forward_reference)':<44} {old_s:8.2f}")
    print(f"{'after: level by level, chunk 65536':<44} {new_s:8.2f}")
    print(f"{'after: level by level, chunk 262144':<44} {big_s:8.2f}")
    print(f"speed-up before/after: {old_s / new_s:.1f}x; max |after - before| = {diff:.2e}")


def _tensor_bytes(*tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def train_memory(n_frames: int, height: int, width: int, steps: int, device: str) -> dict:
    """A few training steps on a toy clip: host bytes of the clip's tensors
    (frames, flows, fb masks; kept on the CPU) and the device's peak bytes."""
    from livelayers.engine.atlas.flow import clip_flows
    from livelayers.toyworld.clips import make_toy_clip
    dev = torch.device(device)
    # Big frames: a quarter-size toy clip upsampled (drawing 1080p toy frames
    # directly supersamples 4x4 and takes gigabytes).
    up = 4 if min(height, width) >= 512 else 1
    clip = make_toy_clip(n_frames=n_frames, height=height // up, width=width // up, seed=0,
                         velocity=(20.0 / n_frames, 5.0 / n_frames), pan=(0, 0))
    if up > 1:
        clip.frames = torch.nn.functional.interpolate(clip.frames, scale_factor=up, mode="bilinear")
        clip.masks = torch.nn.functional.interpolate(clip.masks, scale_factor=up, mode="bilinear")
    s = AtlasSettings(steps=steps)
    t0 = time.perf_counter()
    flows, valid = clip_flows(clip.frames, min_side=s.flow_min_side)
    flow_s = time.perf_counter() - t0
    data = train._Clip(clip.frames, clip.masks, flows, valid, dev)
    fields = train.build_fields(s, 0).to(dev)
    opt = train.make_optimizer(fields, s)
    gen = torch.Generator().manual_seed(0)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for step in range(steps):
        optimise(fields, data, s, step, gen, opt)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    step_s = (time.perf_counter() - t0) / steps
    peak = torch.cuda.max_memory_allocated() if dev.type == "cuda" else None
    host = _tensor_bytes(data.rgb, data.mask, data.flow, data.valid)
    return {"frames": n_frames, "size": f"{width}x{height}", "host_mb": host / 2 ** 20,
            "device_peak_mb": None if peak is None else peak / 2 ** 20, "s_per_step": step_s,
            "flow_s": flow_s}


def bench_memory(device: str, steps: int) -> None:
    print(f"\ntraining memory vs clip length ({steps} steps, batch {AtlasSettings().batch}, "
          f"device {device}; the clip stays on the CPU, batches go to the device):")
    print(f"{'frames':>6} {'size':>10} {'clip on CPU MB':>15} {'device peak MB':>15} "
          f"{'s/step':>7} {'flow s':>7}")
    for n, h, w in ((8, 64, 64), (50, 64, 64), (200, 64, 64), (3, 1080, 1920)):
        r = train_memory(n, h, w, steps, device)
        peak = "n/a (cpu)" if r["device_peak_mb"] is None else f"{r['device_peak_mb']:.1f}"
        print(f"{r['frames']:6d} {r['size']:>10} {r['host_mb']:15.1f} {peak:>15} "
              f"{r['s_per_step']:7.3f} {r['flow_s']:7.1f}")
    print(f"process peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


def rows(size: str) -> list[dict]:
    """The table rows of ``python -m livelayers bench``. Reference design: the
    original NLA fields (positional-encoding MLPs) for training, the direct
    all-corners hash gather (``forward_reference``) for the frame maps.
    quick: 2 training steps each, maps and render of one 240x136 frame;
    reference: as docs/atlas.md (time to PSNR with a 30 s cap, 1080p maps and
    render, the long-clip memory table). CPU seconds."""
    quick = check_size(size) == "quick"
    out = []
    clip = make_toy_clip(n_frames=8, height=64, width=64, seed=0)
    cap, steps = (60.0, 2) if quick else (30.0, None)
    hash_r = time_to_psnr("hash", clip, cap, 2 if quick else 25, max_steps=steps)
    pos_r = time_to_psnr("positional", clip, cap, 2 if quick else 25, max_steps=steps)
    out.append(row("atlas", "training step, 8 frames 64², hash grids (ours) vs positional MLPs (NLA)",
                   "CPU s/step", hash_r["s_per_step"], pos_r["s_per_step"],
                   f"mean of {hash_r['steps']} / {pos_r['steps']} steps"))
    if not quick:
        for target in TARGETS:
            th, tp = hash_r["reached"][target], pos_r["reached"][target]
            if th is None:  # the cap as a lower bound, said so
                out.append(row("atlas", f"time to {target:.0f} dB, 8 frames 64², hash vs positional (NLA)",
                               "CPU s", hash_r["seconds"], note="hash did not reach it: a lower bound"))
                continue
            note = "" if tp else (f"positional not reached in {pos_r['seconds']:.0f} s: "
                                  f"ratio > {pos_r['seconds'] / th[0]:.1f}x")
            out.append(row("atlas", f"time to {target:.0f} dB, 8 frames 64², hash vs positional (NLA)",
                           "CPU s", th[0], tp[0] if tp else None, note))
    h, w = (136, 240) if quick else (1080, 1920)
    new_s, new = frame_maps_seconds(h, w)
    old_s, old = frame_maps_seconds(h, w, reference=True)
    out.append(row("atlas", f"UV/opacity maps of one {w}x{h} frame, level by level vs all-corners gather",
                   "CPU s/frame", new_s, old_s, f"max |after - before| {float((new - old).abs().max()):.1e}"))
    fps = render_fps(1 if quick else 4, 1024, h, w)
    out.append(row("atlas", f"edit render {w}x{h}, maps given (grid-sample fg+bg, composite)",
                   "CPU s/frame", 1 / fps))
    official = os.environ.get(OFFICIAL_ENV)
    if official:
        out += official_rows(clip, official, os.environ.get(OFFICIAL_PYTHON_ENV) or None)
    if not quick:
        for n, fh, fw in ((8, 64, 64), (50, 64, 64), (200, 64, 64), (3, 1080, 1920)):
            r = train_memory(n, fh, fw, 5, "cpu")
            out.append(row("atlas", f"clip data on the CPU, {n} frames {fw}x{fh}", "MB", r["host_mb"],
                           note=f"{r['s_per_step']:.3f} s/step, flow {r['flow_s']:.1f} s (wall)"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cap", type=float, default=120.0, help="seconds of training per encoding")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval-every", type=int, default=25)
    ap.add_argument("--only", choices=("all", "train", "maps", "memory", "official"), default="all",
                    help="run one part: train = time-to-PSNR + render fps; official = vs --official")
    ap.add_argument("--official", metavar="DIR", help="a clone of github.com/ykasten/layered-neural-atlases "
                    "to time beside ours (never shipped)")
    ap.add_argument("--official-python", metavar="PY", help="the Python of its environment (default: this one)")
    ap.add_argument("--device", default="cpu", help="device of the memory part (cpu | cuda)")
    ap.add_argument("--memory-steps", type=int, default=5)
    args = ap.parse_args()
    if args.official:
        from official_nla import checkout_problem
        problem = checkout_problem(args.official)
        if problem:
            ap.error(f"--official {args.official}: {problem}")
    elif args.only == "official":
        ap.error("--only official needs --official DIR")
    torch.set_num_threads(args.threads)
    if args.official and args.only in ("all", "official"):
        clip = make_toy_clip(n_frames=8, height=64, width=64, seed=0)
        for r in official_rows(clip, args.official, args.official_python):
            print(f"{r['case']}: ours {r['ours']:.3f} s/step, official {r['reference']:.3f} s/step, "
                  f"official / ours {r['ratio']:.2f}x\n  {r['note']}")
    if args.only in ("all", "maps"):
        bench_maps()
    if args.only in ("all", "memory"):
        bench_memory(args.device, args.memory_steps)
    if args.only in ("all", "train"):
        bench_training(args)


def bench_training(args) -> None:
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
        print(f"field evaluation per 1080p frame ({enc}, quarter frame scaled): "
              f"{field_seconds_per_1080p_frame(enc):.2f} s")


if __name__ == "__main__":
    main()
