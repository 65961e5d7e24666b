"""Fit a layered-atlas decomposition to a clip (NLA objective, hash-grid or
positional-encoding fields). Entry point: ``decompose``."""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import progress as progress_mod
from ..checkpoint import CHECKPOINT_NAME, resume_run, save_checkpoint, states
from ..device import pick_device
from ..errors import Cancelled, InputError
from . import losses
from .bootstrap import TextBootstrap, soft_target, text_bootstrap
from .coords import ClipGeometry
from .fields import UV_SCALE, AtlasFields, AtlasSettings
from .flow import clip_flows

RUN_KIND = "livelayers.atlas.run"
RUN_VERSION = 1


def check_clip(frames: torch.Tensor, masks: torch.Tensor | None, node: str) -> None:
    """Frames ``(N, 3, H, W)`` with N ≥ 2; masks ``(N, 1, H, W)`` in [0, 1] if given."""
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise InputError(node, "frames", f"has shape {tuple(frames.shape)}", "(N, 3, H, W) RGB frames")
    n, _, h, w = frames.shape
    if n < 2:
        raise InputError(node, "frames", f"holds {n} frame", "a clip of 2 or more frames")
    if min(h, w) < 8:
        raise InputError(node, "frames", f"is {w}x{h} pixels", "both sides >= 8")
    if masks is not None:
        if masks.ndim != 4 or tuple(masks.shape) != (n, 1, h, w):
            raise InputError(node, "masks", f"has shape {tuple(masks.shape)}",
                             f"one {w}x{h} mask per frame, ({n}, 1, {h}, {w}) (nothing is resized)")
        if masks.min() < 0 or masks.max() > 1:
            raise InputError(node, "masks", "has values outside [0, 1]", "masks in [0, 1]")


# Settings a run folder may change between calls: more steps continue the run
# (as Text2LIVE's do), the schedule then follows the new total.
EXTENDABLE_SETTINGS = ("steps", "checkpoint_every")


def fingerprint(frames: torch.Tensor, masks: torch.Tensor | None, settings: AtlasSettings,
                seed: int, bootstrap: TextBootstrap | None = None, *, run: bool = False) -> str:
    """Identity of a run's inputs, so a saved atlas is only reused by the same
    job (same steps too). ``run=True``: the run folder's identity, which
    leaves out ``EXTENDABLE_SETTINGS``, so asking for more steps resumes the
    folder instead of refusing it. A text bootstrap counts only without masks
    (masks win); it adds its text, model spec, blocks and maps."""
    h = hashlib.sha256()
    h.update(frames.detach().cpu().float().contiguous().numpy().tobytes())
    if masks is not None:
        h.update(masks.detach().cpu().float().contiguous().numpy().tobytes())
    elif bootstrap is not None:
        h.update(b"text-bootstrap")
        h.update(bootstrap.key())
    identity = settings.to_dict()
    if run:
        for key in EXTENDABLE_SETTINGS:
            identity.pop(key)
    h.update(json.dumps(identity, sort_keys=True).encode())
    h.update(str(seed).encode())
    return h.hexdigest()[:32]


def build_fields(settings: AtlasSettings, seed: int) -> AtlasFields:
    """Fields with seed-determined initial weights (global RNG left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AtlasFields(settings)


def _lr_factor(step: int, total: int, final_ratio: float) -> float:
    """Cosine decay from 1 to ``final_ratio``."""
    return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * step / max(total, 1)))


def make_optimizer(fields: AtlasFields, s: AtlasSettings) -> torch.optim.Adam:
    if s.encoding == "hash":
        groups = [{"params": fields.grid_parameters(), "lr": s.lr_grid, "base_lr": s.lr_grid},
                  {"params": fields.mlp_parameters(), "lr": s.lr_mlp, "base_lr": s.lr_mlp}]
    else:
        groups = [{"params": list(fields.parameters()), "lr": s.lr_positional,
                   "base_lr": s.lr_positional}]
    # eps 1e-15 as Instant-NGP: rarely-hit hash rows still move.
    return torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15)


class _Clip:
    """The clip's tensors, flattened for random pixel batches. They stay on
    the CPU whatever the training device, so device memory does not grow with
    the clip's length: each batch is gathered here and only the batch is
    moved to ``device``. ``soft``: the text bootstrap's per-frame
    ``(target, weight)``, each ``(N, 1, H, W)`` (ignored when masks are given)."""

    def __init__(self, frames, masks, flows, valid, device, soft=None):
        n, _, h, w = frames.shape
        self.geo = ClipGeometry(n, h, w)
        self.rgb = frames.detach().float().cpu().permute(0, 2, 3, 1).reshape(-1, 3)
        self.mask = None if masks is None else masks.detach().float().cpu().reshape(-1, 1)
        self.soft = None                  # (target, weight), each (N·H·W, 1)
        if masks is None and soft is not None:
            self.soft = tuple(x.detach().float().cpu().reshape(-1, 1) for x in soft)
        self.flow = flows.cpu()           # (N, 2, H, W, 2)
        self.valid = valid.cpu()          # (N, 2, H, W)
        self.device = torch.device(device)

    def pixel(self, t, y, x) -> torch.Tensor:
        return (t * self.geo.height + y) * self.geo.width + x

    def batch(self, b: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """``b`` random pixels with everything the losses read, gathered on the
        CPU and moved to the device. The first ``b // 8`` also carry their
        right/lower neighbour's colour (``sx``/``sy`` = ±1 stays inside the frame)."""
        n, h, w = self.geo.n_frames, self.geo.height, self.geo.width
        idx = torch.randint(0, n * h * w, (b,), generator=gen)
        direction = torch.randint(0, 2, (b,), generator=gen)
        t, y, x = idx // (h * w), (idx // w) % h, idx % w
        q = max(b // 8, 1)
        sx = torch.where(x[:q] < w - 1, 1, -1)
        sy = torch.where(y[:q] < h - 1, 1, -1)
        ok = self.valid[t, direction, y, x]
        out = {"t": t, "y": y, "x": x, "sx": sx, "sy": sy, "ok": ok, "rgb": self.rgb[idx],
               "rgb_dx": self.rgb[self.pixel(t[:q], y[:q], x[:q] + sx)],
               "rgb_dy": self.rgb[self.pixel(t[:q], y[:q] + sy, x[:q])],
               "flow": self.flow[t[ok], direction[ok], y[ok], x[ok]], "flow_dir": direction[ok]}
        if self.mask is not None:
            out["mask"] = self.mask[idx]
        if self.soft is not None:
            out["soft_target"], out["soft_weight"] = self.soft[0][idx], self.soft[1][idx]
        return {k: v.to(self.device) for k, v in out.items()}


def _bootstrap_term(s: AtlasSettings, bt: dict, a: torch.Tensor, frac: float):
    """(weight, loss) of the opacity bootstrap at training fraction ``frac``:
    masks (hard BCE) win over the text relevancy (soft, confidence-weighted
    BCE); each is annealed linearly to 0 at its own ``*_until`` fraction."""
    if "mask" in bt and frac < s.bootstrap_until:
        return s.w_bootstrap * (1 - frac / s.bootstrap_until), losses.bootstrap_loss(a, bt["mask"])
    if "soft_target" in bt and frac < s.text_bootstrap_until:
        return (s.w_text_bootstrap * (1 - frac / s.text_bootstrap_until),
                losses.soft_bootstrap_loss(a, bt["soft_target"], bt["soft_weight"]))
    return 0.0, None


@dataclass
class _Points:
    """The step's query points, stacked so that each field runs once.

    ``coloured`` = batch (b) + its +x and +y neighbours (2q): the points whose
    colour is rendered; ``offsets`` = per rigidity scale, the mappings' +d in x
    and in y (2q each); ``flow_to`` = where the flow-checked pixels land.
    """
    xyt: torch.Tensor                 # (b, 3)
    coloured: torch.Tensor            # (b + 2q, 3)
    offsets: list[torch.Tensor]       # 2 per scale, (q, 3) each
    flow_to: torch.Tensor             # (n_ok, 3)
    deltas: list[tuple[str, float]]   # rigidity scales: (name, step in pixels)
    b: int
    q: int

    @property
    def k(self) -> int:
        return self.b + 2 * self.q


def _query_points(geo: ClipGeometry, bt: dict, deltas: list[tuple[str, float]]) -> _Points:
    """Stage 1: the batch, its neighbours, the rigidity offsets and the flow targets."""
    q = bt["sx"].shape[0]
    tf, yf, xf = bt["t"].float(), bt["y"].float(), bt["x"].float()
    xyt = geo.xyt(xf, yf, tf)                                         # (b, 3)
    neighbours = [geo.xyt(xf[:q] + bt["sx"], yf[:q], tf[:q]), geo.xyt(xf[:q], yf[:q] + bt["sy"], tf[:q])]
    offsets = []
    for _, delta_px in deltas:
        d = delta_px * geo.unit_per_pixel
        offsets += [xyt[:q] + torch.tensor([d, 0.0, 0.0], device=xyt.device),
                    xyt[:q] + torch.tensor([0.0, d, 0.0], device=xyt.device)]
    # Flow correspondences (pixels whose flow passed the forward–backward check).
    ok, fl = bt["ok"], bt["flow"]
    t2 = tf[ok] + torch.where(bt["flow_dir"] == 0, 1.0, -1.0)
    flow_to = geo.xyt(xf[ok] + fl[:, 0], yf[ok] + fl[:, 1], t2)
    return _Points(xyt, torch.cat([xyt] + neighbours), offsets, flow_to, deltas, xyt.shape[0], q)


def _loss_terms(fields: AtlasFields, pts: _Points, bt: dict, geo: ClipGeometry):
    """Stage 2: every field once on all its points, then the NLA terms (all
    but the bootstrap, which depends on the training fraction). Returns
    (terms, the batch's opacity (b, 1))."""
    b, q, k = pts.b, pts.q, pts.k
    mapped = torch.cat([pts.coloured] + pts.offsets + [pts.flow_to])
    uv_f, uv_b = fields.uv_fg(mapped), fields.uv_bg(mapped)
    alpha = fields.alpha(torch.cat([pts.coloured, pts.flow_to]))
    c_f, c_b = fields.rgb_fg(uv_f[:k]), fields.rgb_bg(uv_b[:k])
    rgb = alpha[:k] * c_f + (1 - alpha[:k]) * c_b
    a, target, ok = alpha[:b], bt["rgb"], bt["ok"]

    terms = {"rgb": losses.rgb_loss(rgb[:b], target), "sparsity": losses.sparsity_loss(c_f[:b], a),
             "grad": losses.gradient_loss(rgb[:q], rgb[b:b + q], rgb[b + q:k], target[:q],
                                          bt["rgb_dx"], bt["rgb_dy"])}
    for i, (name, delta_px) in enumerate(pts.deltas):
        d = delta_px * geo.unit_per_pixel
        lo, mid, hi = k + 2 * i * q, k + (2 * i + 1) * q, k + (2 * i + 2) * q
        rig = {layer: losses.rigidity_loss(uv[:q], uv[lo:mid], uv[mid:hi], d, UV_SCALE)
               for layer, uv in (("fg", uv_f), ("bg", uv_b))}
        if name == "rigidity":
            terms["rigidity"] = rig["fg"] + rig["bg"]
        else:
            terms["global_fg"], terms["global_bg"] = rig["fg"], rig["bg"]
    m = k + 2 * len(pts.deltas) * q                 # flow targets start here
    pixels_per_uv = 1 / (geo.unit_per_pixel * UV_SCALE)
    a_ok = a[ok]
    terms["flow"] = (losses.flow_loss(uv_f[:b][ok], uv_f[m:], a_ok, pixels_per_uv)
                     + losses.flow_loss(uv_b[:b][ok], uv_b[m:], 1 - a_ok, pixels_per_uv))
    terms["alpha_flow"] = losses.alpha_flow_loss(a_ok, alpha[k:])
    return terms, a


def training_step(fields: AtlasFields, clip: _Clip, s: AtlasSettings, step: int,
                  gen: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
    """One batch of the NLA objective; returns (loss, numbers).

    Every field is evaluated once per step on all the points that need it
    (batch, neighbours, rigidity offsets, flow targets): a few large calls
    instead of many small ones.
    """
    geo = clip.geo
    bt = clip.batch(s.batch, gen)
    frac = step / max(s.steps, 1)
    # Rigidity: the mappings at +d in x and in y (1 px; and H/8 px while global rigidity is on).
    deltas = [("rigidity", 1.0)]
    if frac < s.global_rigidity_until:
        deltas.append(("global", max(2.0, max(geo.height, geo.width) / 8)))
    terms, a = _loss_terms(fields, _query_points(geo, bt, deltas), bt, geo)
    w_boot, boot = _bootstrap_term(s, bt, a, frac)
    if boot is not None:
        terms["bootstrap"] = boot

    weights = {"rgb": s.w_rgb, "sparsity": s.w_sparsity, "bootstrap": w_boot, "grad": s.w_grad,
               "rigidity": s.w_rigidity, "global_fg": s.w_global_rigidity_fg,
               "global_bg": s.w_global_rigidity_bg, "flow": s.w_flow, "alpha_flow": s.w_alpha_flow}
    order = [name for name in weights if name in terms]   # summed in this order, as always
    loss = sum(weights[name] * terms[name] for name in order)
    numbers = {name: float(terms[name].detach()) for name in order}
    numbers["psnr"] = losses.psnr(numbers["rgb"])
    return loss, numbers


def _save_run(run_dir: Path, fields, opt, gen, step, fp) -> None:
    save_checkpoint(run_dir / CHECKPOINT_NAME, {
        "kind": RUN_KIND, "version": RUN_VERSION, "fingerprint": fp, "step": step,
        **states({"fields": fields, "optimizer": opt, "generator": gen})})


def _resume(run_dir: Path | None, fields, opt, gen, fp) -> int:
    """Restore the run folder's checkpoint (if any); returns the step to start from."""
    state = resume_run(run_dir, RUN_KIND, RUN_VERSION, fp,
                       {"fields": fields, "optimizer": opt, "generator": gen}, "a different clip, masks, settings or seed")
    return 0 if state is None else int(state["step"])


@torch.no_grad()
def _preview(fields: AtlasFields, geo: ClipGeometry, device, chunk: int = 1 << 16) -> torch.Tensor:
    """Reconstruction of the middle frame, ``(1, 3, H, W)`` (in chunks of points)."""
    xyt = geo.frame_grid(geo.n_frames // 2, device)
    rgb = torch.cat([fields(xyt[s:s + chunk])["rgb"].cpu() for s in range(0, xyt.shape[0], chunk)])
    return rgb.T.reshape(1, 3, geo.height, geo.width)


def _check_bootstrap(bootstrap: TextBootstrap, frames: torch.Tensor, node: str) -> None:
    n, _, h, w = frames.shape
    if tuple(bootstrap.relevancy.shape) != (n, 1, h, w):
        raise InputError(node, "object_text", f"has relevancy maps of shape "
                         f"{tuple(bootstrap.relevancy.shape)}", f"one {w}x{h} map per frame, ({n}, 1, {h}, {w})")


def resolve_bootstrap(frames: torch.Tensor, masks: torch.Tensor | None, object_text: str | None,
                      clip, relevancy_blocks: str = "all", bootstrap: TextBootstrap | None = None,
                      progress: progress_mod.Progress | None = None,
                      node: str = "LL_AtlasDecompose") -> TextBootstrap | None:
    """The text bootstrap a run uses: None when masks are given (they win) or
    no text is set; ``bootstrap`` when precomputed; else the relevancy of
    ``object_text`` per frame under ``clip`` (an InputError naming ``clip``
    when it is missing)."""
    if masks is not None:
        return None
    if bootstrap is None and object_text is not None and object_text.strip():
        bootstrap = text_bootstrap(clip, frames, object_text, relevancy_blocks, progress=progress,
                                   node=node)
    if bootstrap is not None:
        _check_bootstrap(bootstrap, frames, node)
    return bootstrap


def decompose(frames: torch.Tensor, masks: torch.Tensor | None = None,
              settings: AtlasSettings | None = None, seed: int = 0, device: str = "auto",
              run_dir: str | Path | None = None, progress: progress_mod.Progress | None = None,
              frame_numbers: list[int] | None = None, node: str = "LL_AtlasDecompose",
              object_text: str | None = None, clip=None, relevancy_blocks: str = "all",
              bootstrap: TextBootstrap | None = None):
    """Decompose ``frames (N, 3, H, W)`` (sRGB [0,1]) into a foreground and a
    background layered atlas.

    The opacity is bootstrapped by ``masks (N, 1, H, W)`` when given (hard
    BCE); else by the text route: ``object_text`` ("the red circle") and
    ``clip`` (an LL_CLIP handle) give each frame's relevancy map (rollout
    over ``relevancy_blocks``), used as a soft, confidence-weighted target
    (``engine/atlas/bootstrap.py``); ``bootstrap`` passes those maps
    precomputed (``resolve_bootstrap``). With neither, α comes from motion
    alone (slow, unreliable).

    Progress reports ``psnr`` (of the current batch's reconstruction) and a
    preview; a stop request saves ``run_dir/checkpoint.pt`` and raises
    ``Cancelled``; the same call resumes from it. Returns an ``Atlas``.
    The clip (frames, masks, flows, maps) stays in CPU memory; only pixel
    batches and the fields go to ``device``.
    """
    progress = progress_mod.ensure(progress, node)
    settings, frames, masks = _checked_clip(frames, masks, settings, node)
    boot = resolve_bootstrap(frames, masks, object_text, clip, relevancy_blocks, bootstrap, progress, node)
    dev = pick_device(device)
    run_dir = None if run_dir in (None, "") else Path(run_dir)
    fp = fingerprint(frames, masks, settings, seed, boot)
    run_fp = fingerprint(frames, masks, settings, seed, boot, run=True)

    data = _prepare_clip(frames, masks, settings, boot, dev)
    fields = build_fields(settings, seed).to(dev)
    opt = make_optimizer(fields, settings)
    gen = torch.Generator().manual_seed(seed)
    step = _resume(run_dir, fields, opt, gen, run_fp)
    numbers = _train_fields(fields, opt, gen, data, settings, step, run_dir, run_fp, progress, dev)
    return _finish(fields, data, settings, seed, fp, numbers, boot, masks, frame_numbers, dev)


def _checked_clip(frames, masks, settings: AtlasSettings | None, node: str):
    """Refuse bad settings or clips first; the clip as float32 on the CPU."""
    settings = settings or AtlasSettings()
    settings.validate(node)
    check_clip(frames, masks, node)
    frames = frames.detach().float().cpu()
    return settings, frames, None if masks is None else masks.detach().float().cpu()


def _prepare_clip(frames, masks, settings: AtlasSettings, boot, dev) -> "_Clip":
    """Stage 1: optical flow both ways and the text bootstrap's soft target."""
    flows, valid = clip_flows(frames, settings.flow_fb_threshold, settings.flow_method,
                              settings.raft_weights or None, settings.flow_min_side)
    soft = None if boot is None else soft_target(boot.relevancy, frames, boot.grid, settings.text_low,
                                                 settings.text_high, settings.text_refine,
                                                 settings.text_refine_eps)
    return _Clip(frames, masks, flows, valid, dev, soft=soft)


def _train_fields(fields, opt, gen, data, settings: AtlasSettings, step: int, run_dir, run_fp: str,
                  progress, dev) -> dict[str, float]:
    """Stage 2: steps ``step … settings.steps − 1`` (cosine lr, checkpoints,
    progress with previews; a stop saves the run and re-raises). Returns the
    last step's numbers."""
    numbers: dict[str, float] = {}
    try:
        while step < settings.steps:
            factor = _lr_factor(step, settings.steps, settings.lr_final_ratio)
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * factor
            loss, numbers = training_step(fields, data, settings, step, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if run_dir is not None and step % settings.checkpoint_every == 0 and step < settings.steps:
                _save_run(run_dir, fields, opt, gen, step, run_fp)
            info = {"psnr": numbers["psnr"], "loss": float(loss.detach())}
            if progress.wants_preview(step):
                info["preview"] = _preview(fields, data.geo, dev)
            progress.update(step, settings.steps, **info)
    except (Cancelled, KeyboardInterrupt):
        if run_dir is not None:
            _save_run(run_dir, fields, opt, gen, step, run_fp)
        raise
    if run_dir is not None:  # finished: the final checkpoint lets a repeat call return at once
        _save_run(run_dir, fields, opt, gen, step, run_fp)
    return numbers


def _finish(fields, data, settings: AtlasSettings, seed: int, fp: str, numbers, boot, masks,
            frame_numbers, dev):
    """Stage 3: the trained fields as an ``Atlas`` handle on the CPU."""
    from .store import Atlas
    fields.eval()
    n = data.geo.n_frames
    source = {"bootstrap": "masks" if masks is not None else ("text" if boot is not None else "none")}
    if boot is not None:
        source.update(boot.describe())
    # Boxes are measured on the training device (every frame's maps once); the
    # handle then lives on the CPU, its map cache emptied of device-made maps.
    atlas = Atlas.from_training(fields, settings, data.geo, frame_numbers or list(range(n)), seed=seed,
                                fingerprint=fp, train_psnr=numbers.get("psnr"), extra_info=source)
    if dev.type != "cpu":
        atlas.fields = fields.cpu()
        atlas.clear_cache()
    return atlas


def decompose_or_reuse(frames: torch.Tensor, masks: torch.Tensor | None = None,
                       settings: AtlasSettings | None = None, seed: int = 0,
                       atlas_path: str | Path | None = None, *, device: str = "auto",
                       run_dir: str | Path | None = None, progress: progress_mod.Progress | None = None,
                       frame_numbers: list[int] | None = None, node: str = "LL_AtlasDecompose",
                       object_text: str | None = None, clip=None, relevancy_blocks: str = "all"):
    """Decompose a clip once per job: the atlas already saved at ``atlas_path``
    when it was made from the same frames, masks, text bootstrap, settings and
    seed (its fingerprint), else :func:`decompose` and save the result there
    (atomically). ``atlas_path`` None or "" = always decompose, save nothing.

    The arguments are :func:`decompose`'s. The text bootstrap's relevancy is
    computed before the check (it is part of the fingerprint) and passed on,
    so it is computed once either way. Returns an ``Atlas``.
    """
    from .store import load_matching, save_atlas
    # refuse bad inputs before the relevancy or a file is read
    settings, frames, masks = _checked_clip(frames, masks, settings, node)
    progress = progress_mod.ensure(progress, node)
    boot = resolve_bootstrap(frames, masks, object_text, clip, relevancy_blocks, progress=progress,
                             node=node)
    if atlas_path:
        done = load_matching(atlas_path, fingerprint(frames, masks, settings, seed, boot))
        if done is not None:
            return done
    atlas = decompose(frames, masks, settings, seed=seed, device=device, run_dir=run_dir,
                      progress=progress, frame_numbers=frame_numbers, node=node, bootstrap=boot)
    if atlas_path:
        save_atlas(atlas, atlas_path)
    return atlas
