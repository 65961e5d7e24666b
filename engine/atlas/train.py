"""Fit a layered-atlas decomposition to a clip (NLA objective, hash-grid or
positional-encoding fields). Entry point: ``decompose``."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch

from .. import progress as progress_mod
from ..checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from ..device import pick_device
from ..errors import Cancelled, CorruptFileError, InputError
from . import losses
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


def fingerprint(frames: torch.Tensor, masks: torch.Tensor | None, settings: AtlasSettings,
                seed: int) -> str:
    """Identity of a run's inputs, so a run folder is only resumed by the same job."""
    h = hashlib.sha256()
    h.update(frames.detach().cpu().float().contiguous().numpy().tobytes())
    if masks is not None:
        h.update(masks.detach().cpu().float().contiguous().numpy().tobytes())
    h.update(json.dumps(settings.to_dict(), sort_keys=True).encode())
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
    """The clip's tensors, flattened for random pixel batches, on ``device``."""

    def __init__(self, frames, masks, flows, valid, device):
        n, _, h, w = frames.shape
        self.geo = ClipGeometry(n, h, w)
        self.rgb = frames.permute(0, 2, 3, 1).reshape(-1, 3).to(device)
        self.mask = None if masks is None else masks.reshape(-1, 1).to(device)
        self.flow = flows.to(device)      # (N, 2, H, W, 2)
        self.valid = valid.to(device)     # (N, 2, H, W)
        self.device = device

    def pixel(self, t, y, x) -> torch.Tensor:
        return (t * self.geo.height + y) * self.geo.width + x


def training_step(fields: AtlasFields, clip: _Clip, s: AtlasSettings, step: int,
                  gen: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
    """One batch of the NLA objective; returns (loss, numbers)."""
    geo, dev, b = clip.geo, clip.device, s.batch
    n, h, w = geo.n_frames, geo.height, geo.width
    idx = torch.randint(0, n * h * w, (b,), generator=gen)
    direction = torch.randint(0, 2, (b,), generator=gen)
    idx, direction = idx.to(dev), direction.to(dev)
    t, y, x = idx // (h * w), (idx // w) % h, idx % w
    tf, yf, xf = t.float(), y.float(), x.float()
    out = fields(geo.xyt(xf, yf, tf))
    target = clip.rgb[idx]
    a = out["alpha"]
    terms: dict[str, torch.Tensor] = {}
    terms["rgb"] = losses.rgb_loss(out["rgb"], target)
    terms["sparsity"] = losses.sparsity_loss(out["rgb_fg"], a)

    frac = step / max(s.steps, 1)
    w_boot = 0.0
    if clip.mask is not None and frac < s.bootstrap_until:
        w_boot = s.w_bootstrap * (1 - frac / s.bootstrap_until)
        terms["bootstrap"] = losses.bootstrap_loss(a, clip.mask[idx])

    # Gradient and rigidity terms on an eighth of the batch (they need extra evaluations).
    q = max(b // 8, 1)
    sx = torch.where(x[:q] < w - 1, 1, -1)
    sy = torch.where(y[:q] < h - 1, 1, -1)
    rgb_dx = fields(geo.xyt(xf[:q] + sx, yf[:q], tf[:q]))["rgb"]
    rgb_dy = fields(geo.xyt(xf[:q], yf[:q] + sy, tf[:q]))["rgb"]
    terms["grad"] = losses.gradient_loss(out["rgb"][:q], rgb_dx, rgb_dy, target[:q],
                                         clip.rgb[clip.pixel(t[:q], y[:q], x[:q] + sx)],
                                         clip.rgb[clip.pixel(t[:q], y[:q] + sy, x[:q])])
    xyt = geo.xyt(xf[:q], yf[:q], tf[:q])
    rig = {}
    for name, delta_px in (("rigidity", 1.0), ("global", max(2.0, max(h, w) / 8))):
        d = delta_px * geo.unit_per_pixel
        ex, ey = torch.tensor([d, 0.0, 0.0], device=dev), torch.tensor([0.0, d, 0.0], device=dev)
        for layer, mapping in (("fg", fields.uv_fg), ("bg", fields.uv_bg)):
            uv = out[f"uv_{layer}"][:q]
            rig[f"{name}_{layer}"] = losses.rigidity_loss(uv, mapping(xyt + ex), mapping(xyt + ey),
                                                          d, UV_SCALE)
    terms["rigidity"] = rig["rigidity_fg"] + rig["rigidity_bg"]
    global_on = frac < s.global_rigidity_until
    if global_on:
        terms["global_fg"], terms["global_bg"] = rig["global_fg"], rig["global_bg"]

    # Optical-flow consistency on the pixels whose flow passed the fb check.
    ok = clip.valid[t, direction, y, x]
    fl = clip.flow[t[ok], direction[ok], y[ok], x[ok]]
    t2 = tf[ok] + torch.where(direction[ok] == 0, 1.0, -1.0)
    xyt2 = geo.xyt(xf[ok] + fl[:, 0], yf[ok] + fl[:, 1], t2)
    pixels_per_uv = 1 / (geo.unit_per_pixel * UV_SCALE)
    a_ok = a[ok]
    terms["flow"] = (losses.flow_loss(out["uv_fg"][ok], fields.uv_fg(xyt2), a_ok, pixels_per_uv)
                     + losses.flow_loss(out["uv_bg"][ok], fields.uv_bg(xyt2), 1 - a_ok, pixels_per_uv))
    terms["alpha_flow"] = losses.alpha_flow_loss(a_ok, fields.alpha(xyt2))

    weights = {"rgb": s.w_rgb, "sparsity": s.w_sparsity, "bootstrap": w_boot, "grad": s.w_grad,
               "rigidity": s.w_rigidity, "global_fg": s.w_global_rigidity_fg,
               "global_bg": s.w_global_rigidity_bg, "flow": s.w_flow, "alpha_flow": s.w_alpha_flow}
    loss = sum(weights[k] * v for k, v in terms.items())
    numbers = {k: float(v.detach()) for k, v in terms.items()}
    numbers["psnr"] = losses.psnr(numbers["rgb"])
    return loss, numbers


def _save_run(run_dir: Path, fields, opt, gen, step, fp) -> None:
    save_checkpoint(run_dir / CHECKPOINT_NAME, {
        "kind": RUN_KIND, "version": RUN_VERSION, "fingerprint": fp, "step": step,
        "fields": fields.state_dict(), "optimizer": opt.state_dict(), "generator": gen.get_state()})


def _resume(run_dir: Path | None, fields, opt, gen, fp) -> int:
    """Restore the run folder's checkpoint (if any); returns the step to start from."""
    if run_dir is None or not (run_dir / CHECKPOINT_NAME).exists():
        return 0
    state = load_checkpoint(run_dir / CHECKPOINT_NAME, expect={"kind": RUN_KIND, "version": RUN_VERSION})
    if state["fingerprint"] != fp:
        raise CorruptFileError(f"{run_dir / CHECKPOINT_NAME}: this run folder belongs to a different "
                               "clip, masks, settings or seed; use a new run_dir (or delete it)")
    fields.load_state_dict(state["fields"])
    opt.load_state_dict(state["optimizer"])
    gen.set_state(state["generator"])
    return int(state["step"])


@torch.no_grad()
def _preview(fields: AtlasFields, geo: ClipGeometry, device) -> torch.Tensor:
    """Reconstruction of the middle frame, ``(1, 3, H, W)``."""
    rgb = fields(geo.frame_grid(geo.n_frames // 2, device))["rgb"]
    return rgb.T.reshape(1, 3, geo.height, geo.width).cpu()


def decompose(frames: torch.Tensor, masks: torch.Tensor | None = None,
              settings: AtlasSettings | None = None, seed: int = 0, device: str = "auto",
              run_dir: str | Path | None = None, progress: progress_mod.Progress | None = None,
              frame_numbers: list[int] | None = None, node: str = "LL_AtlasDecompose"):
    """Decompose ``frames (N, 3, H, W)`` (sRGB [0,1]) into a foreground and a
    background layered atlas; ``masks (N, 1, H, W)`` bootstrap the opacity.

    Progress reports ``psnr`` (of the current batch's reconstruction) and a
    preview; a stop request saves ``run_dir/checkpoint.pt`` and raises
    ``Cancelled``; the same call resumes from it. Returns an ``Atlas``.
    """
    from .store import Atlas
    progress = progress_mod.ensure(progress, node)
    settings = settings or AtlasSettings()
    settings.validate(node)
    check_clip(frames, masks, node)
    frames = frames.detach().float().cpu()
    masks = None if masks is None else masks.detach().float().cpu()
    dev = pick_device(device)
    run_dir = None if run_dir in (None, "") else Path(run_dir)
    fp = fingerprint(frames, masks, settings, seed)

    flows, valid = clip_flows(frames, settings.flow_fb_threshold, settings.flow_method,
                              settings.raft_weights or None)
    clip = _Clip(frames, masks, flows, valid, dev)
    fields = build_fields(settings, seed).to(dev)
    opt = make_optimizer(fields, settings)
    gen = torch.Generator().manual_seed(seed)
    step = _resume(run_dir, fields, opt, gen, fp)

    numbers: dict[str, float] = {}
    try:
        while step < settings.steps:
            factor = _lr_factor(step, settings.steps, settings.lr_final_ratio)
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * factor
            loss, numbers = training_step(fields, clip, settings, step, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if run_dir is not None and step % settings.checkpoint_every == 0 and step < settings.steps:
                _save_run(run_dir, fields, opt, gen, step, fp)
            info = {"psnr": numbers["psnr"], "loss": float(loss.detach())}
            if progress.wants_preview(step):
                info["preview"] = _preview(fields, clip.geo, dev)
            progress.update(step, settings.steps, **info)
    except (Cancelled, KeyboardInterrupt):
        if run_dir is not None:
            _save_run(run_dir, fields, opt, gen, step, fp)
        raise
    if run_dir is not None:  # finished: the final checkpoint lets a repeat call return at once
        _save_run(run_dir, fields, opt, gen, step, fp)
    fields.eval()
    n = frames.shape[0]
    return Atlas.from_training(fields.cpu(), settings, clip.geo,
                               frame_numbers or list(range(n)), seed=seed,
                               fingerprint=fp, train_psnr=numbers.get("psnr"))
