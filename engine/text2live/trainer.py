"""Text2LIVE image training: one generator per (image, prompt).

``train_text2live(clip, image, prompt, roi_text=...)`` trains a
``SkipGenerator`` so that its RGBA edit layer, composited over the image,
matches the prompt (CLIP), keeps the image's structure, stays sparse, and
(early on) sits where the ROI text's relevancy map (or a user mask) says.

One step:

1. a training crop I_s of the (resized) image (``augment.training_crop``);
   every ``whole_every`` steps the whole image, unaugmented;
2. the generator gives colour C and alpha α; I_o = α·C + (1−α)·I_s,
   I_screen = α·C + (1−α)·G;
3. ONE CLIP forward with gradient for all views of I_o and I_screen plus
   I_o at CLIP size (its tokens feed the structure loss); ONE forward
   without gradient for the views of I_s plus I_s at CLIP size;
4. the weighted loss (``losses.py``), MADGRAD step, lr decay.

Steps 3–4 are ``objective.objective``, which the video trainer
(``video.py``) shares.
"""
from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..checkpoint import (CHECKPOINT_NAME, load_checkpoint, load_states, rng_state, save_checkpoint,
                          set_rng_state, states)
from ..device import autocast_dtype, pick_device
from ..errors import Cancelled, InputError
from ..progress import Progress, ensure
from . import losses as L
from .augment import training_crop
from .generator import SkipGenerator, save_generator, split_rgba
from .objective import (LOSS_NAMES, Frame, Texts, encode_each, encode_texts, objective,
                        screen_texts, template_subset, to_clip_size, uses)
from .settings import Text2LIVESettings

CHECKPOINT_KIND = "text2live"
CHECKPOINT_VERSION = 1
GENERATOR_FILE = "generator.safetensors"


@dataclass
class TrainResult:
    """What ``train_text2live`` returns.

    generator: trained ``SkipGenerator`` in eval mode (BN statistics of the whole image).
    losses: {name: [value per step]} for every name in ``LOSS_NAMES``.
    relevancy: (1, 1, H, W) the bootstrap target at the input's size (relevancy
        map or the user mask), or None when bootstrapping was off.
    steps: the number of steps trained in total (including resumed ones).
    """
    generator: SkipGenerator
    losses: dict[str, list[float]] = field(default_factory=dict)
    relevancy: torch.Tensor | None = None
    steps: int = 0


# The objective's helpers under the names this module has always exported.
_Texts = Texts
_encode_texts = encode_texts
_encode_each = encode_each
_template_subset = template_subset
_to_clip_size = to_clip_size


# --------------------------------------------------------------------------- preparation

def training_image(image: torch.Tensor, resolution: int) -> torch.Tensor:
    """The image the internal dataset draws from: short side -> ``resolution``
    (antialiased bilinear; 0 keeps the input). ``(1, 3, H, W)`` -> ``(1, 3, h, w)``."""
    if resolution <= 0:
        return image
    h, w = image.shape[-2:]
    k = resolution / min(h, w)
    size = (max(1, round(h * k)), max(1, round(w * k)))
    if size == (h, w):
        return image
    return F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False)


def bootstrap_target(clip, image: torch.Tensor, roi_text: str | None, mask: torch.Tensor | None,
                     blocks: str) -> torch.Tensor | None:
    """The bootstrap target at ``image``'s size ``(1, 1, h, w)``: the user mask
    (resized to the training image) or the relevancy map of ``roi_text`` on the image."""
    h, w = image.shape[-2:]
    if mask is not None:
        target = mask.float()
    elif roi_text:
        from ..relevancy import relevancy_map
        target = relevancy_map(clip, image.to(clip.device), roi_text, blocks=blocks,
                               progress=Progress()).float().cpu()  # no bar of its own
    else:
        return None
    if tuple(target.shape[-2:]) != (h, w):
        target = F.interpolate(target, size=(h, w), mode="bilinear", align_corners=False)
    return target.clamp(0, 1)


def _fingerprint(image, mask, prompt, roi_text, screen_text, settings, seed) -> str:
    """Identifies a run, so a run_dir is never resumed with different inputs."""
    h = hashlib.sha256()
    h.update(image.detach().cpu().float().contiguous().numpy().tobytes())
    if mask is not None:
        h.update(mask.detach().cpu().float().contiguous().numpy().tobytes())
    keep = {k: v for k, v in settings.__dict__.items() if k not in ("steps", "checkpoint_every",
                                                                    "device")}
    h.update(repr((prompt, roi_text, screen_text, seed, sorted(keep.items(), key=str))).encode())
    return h.hexdigest()


# --------------------------------------------------------------------------- one step

def loss_step(clip, generator: SkipGenerator, crop: torch.Tensor, target: torch.Tensor | None,
              texts: Texts, settings: Text2LIVESettings, step: int, gen: torch.Generator,
              amp: torch.dtype | None = None) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
    """The Text2LIVE objective on one crop (``objective.objective`` with one frame).

    crop ``(1, 3, h, w)``; target ``(1, 1, h, w)`` bootstrap target or None.
    Returns (loss scalar with graph, {name: float}, composite ``(1, 3, h, w)``).
    """
    autocast = torch.autocast(crop.device.type, dtype=amp) if amp else contextlib.nullcontext()
    with autocast:
        colour, alpha = split_rgba(generator(crop))
    colour, alpha = colour.float(), alpha.float()
    comp = L.composite(colour, alpha, crop)
    screen = L.green_screen(colour, alpha) if uses(settings)["screen"] else None
    frame = Frame(composite=comp, screen=screen, source=crop, alpha=alpha, target=target)
    total, record = objective(clip, [frame], alpha, texts, settings, step, gen)
    return total, record, comp.detach()


# --------------------------------------------------------------------------- training

def _lr_at(step: int, s: Text2LIVESettings) -> float:
    """lr ← max(min_lr, decay·lr) after every step: the value used at ``step``."""
    return max(s.min_lr, s.lr * s.lr_decay ** step)


def _validate(image: torch.Tensor, prompt: str, mask: torch.Tensor | None, node: str) -> None:
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[:2] != (1, 3):
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise InputError(node, "image", f"has shape {shape}", "one RGB image (1, 3, H, W)")
    h, w = image.shape[-2:]
    if min(h, w) < 32:
        raise InputError(node, "image", f"is {w}x{h} pixels", "both sides >= 32")
    if not prompt or not prompt.strip():
        raise InputError(node, "prompt", "is empty", "a text describing the edit, e.g. 'blue circle'")
    if mask is not None and tuple(mask.shape) != (1, 1, h, w):
        raise InputError(node, "bootstrap_mask", f"has shape {tuple(mask.shape)}",
                         f"one mask of the image's size (1, 1, {h}, {w}); nothing is resized silently")


def build_generator(settings: Text2LIVESettings, seed: int, device: torch.device) -> SkipGenerator:
    """A freshly initialised generator; the init is seeded without touching global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = SkipGenerator(settings.generator)
    return gen.to(device)


def make_optimizer(generator: SkipGenerator, s):
    """MADGRAD with the settings' lr, momentum and weight decay (the official optimiser)."""
    import madgrad
    return madgrad.MADGRAD(generator.parameters(), lr=s.lr, momentum=s.momentum,
                           weight_decay=s.weight_decay)


def optimiser_step(opt, scaler, loss: torch.Tensor, record: dict, history: dict) -> None:
    """One (grad-scaled) update from ``loss``, and the step's loss terms appended to ``history``."""
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    for k in LOSS_NAMES:
        history[k].append(record[k])


@torch.no_grad()
def calibrate_batchnorm(generator: SkipGenerator, image: torch.Tensor) -> None:
    """Set every BN layer's running statistics to those of ``image`` ``(1, 3, H, W)``.

    The generator trains in train mode (per-crop statistics). Calibrating
    on the whole image makes eval mode reproduce a train-mode pass over the
    whole image exactly, and keeps tiled inference consistent with untiled.
    """
    bns = [m for m in generator.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: one pass = exactly this image's stats
    generator.train()
    generator(image)
    for m, mom in zip(bns, saved):
        m.momentum = mom
    generator.eval()


@dataclass
class GeneratorRun:
    """One generator training's state, shared by the image and video trainers:
    the generator, its optimiser and grad scaler, the crop/view sampler, the
    loss history, and where its checkpoint goes (``ckpt_path`` None: no run
    folder). Stages: ``start`` (build, or resume from the run folder),
    ``train`` (the step loop: lr schedule, update, checkpoints, progress,
    checkpoint on ``Cancelled``), ``finish`` (BN statistics, final checkpoint).
    """
    generator: SkipGenerator
    opt: object
    scaler: torch.amp.GradScaler
    gen: torch.Generator
    history: dict[str, list[float]]
    ckpt_path: Path | None
    fingerprint: str
    kind: str
    version: int
    step: int = 0

    @classmethod
    def start(cls, s, seed: int, device: torch.device, amp, run_dir, fingerprint: str, node: str,
              kind: str = CHECKPOINT_KIND, version: int = CHECKPOINT_VERSION,
              same: str = "image") -> "GeneratorRun":
        """A seeded generator, optimiser and sampler; resumed from
        ``run_dir/checkpoint.pt`` when it holds this run (refused when it holds another)."""
        generator = build_generator(s, seed, device)
        run = cls(generator, make_optimizer(generator, s),
                  torch.amp.GradScaler(device.type, enabled=amp == torch.float16),
                  torch.Generator().manual_seed(seed), {k: [] for k in LOSS_NAMES},
                  Path(run_dir) / CHECKPOINT_NAME if run_dir is not None else None,
                  fingerprint, kind, version)
        if run.ckpt_path is not None and run.ckpt_path.is_file():
            run.step = _resume(run.ckpt_path, fingerprint, run.objects(), run.history, node,
                               kind=kind, version=version, same=same)
        return run

    def objects(self) -> dict:
        """The checkpointed objects by their checkpoint keys."""
        return {"generator": self.generator, "optimizer": self.opt, "scaler": self.scaler,
                "sampler": self.gen}

    def save(self, step: int) -> None:
        """Write the checkpoint of ``step`` (atomically; nothing without a run folder)."""
        if self.ckpt_path is not None:
            save_checkpoint(self.ckpt_path, {
                "kind": self.kind, "version": self.version, "fingerprint": self.fingerprint,
                "step": step, **states(self.objects()), "rng": rng_state(), "losses": self.history})

    def train(self, s, one_step, progress: Progress) -> None:
        """Steps ``self.step … s.steps − 1``. ``one_step(step)`` returns the
        loss (with graph), its record of terms, and a callable making the
        preview (called only when the front end wants one)."""
        self.generator.train()
        try:
            for step in range(self.step, s.steps):
                for group in self.opt.param_groups:
                    group["lr"] = _lr_at(step, s)
                loss, record, preview = one_step(step)
                optimiser_step(self.opt, self.scaler, loss, record, self.history)
                done = step + 1
                if done % s.checkpoint_every == 0 and done < s.steps:
                    self.save(done)
                info = {"loss": record["total"]}
                if progress.wants_preview(done):
                    info["preview"] = preview()
                progress.update(done, s.steps, **info)
        except Cancelled:
            self.save(len(self.history["total"]))
            raise

    def finish(self, s, calibration_image: torch.Tensor) -> None:
        """BatchNorm statistics of ``calibration_image``, then the final checkpoint."""
        calibrate_batchnorm(self.generator, calibration_image)
        self.save(s.steps)


def train_text2live(clip, image: torch.Tensor, prompt: str, *, roi_text: str | None = None,
                    screen_text: str | None = None, bootstrap_mask: torch.Tensor | None = None,
                    settings: Text2LIVESettings | None = None, seed: int = 0,
                    run_dir: str | Path | None = None, progress: Progress | None = None,
                    node: str = "LL_Text2LIVE") -> TrainResult:
    """Train a Text2LIVE generator for one image.

    clip: a ``CLIPHandle``. image: ``(1, 3, H, W)`` in [0,1] sRGB.
    prompt: the edit text T ("blue circle"). roi_text: the text of the region to
    edit (T_ROI: the direction loss's origin and the relevancy bootstrap text).
    screen_text: overrides the derived "{T} over a green screen." texts.
    bootstrap_mask: ``(1, 1, H, W)`` replaces the relevancy map as bootstrap target.
    run_dir: checkpoints go to ``run_dir/checkpoint.pt`` (every
    ``settings.checkpoint_every`` steps and on ``Cancelled``); calling again with
    the same run_dir resumes; the final generator is written to
    ``run_dir/generator.safetensors``.
    """
    s = settings or Text2LIVESettings()
    try:
        s.validate()
    except ValueError as e:
        raise InputError(node, "settings", str(e)) from e
    _validate(image, prompt, bootstrap_mask, node)
    progress = ensure(progress, node)
    device = pick_device(s.device) if s.device != "auto" else clip.device
    amp = autocast_dtype(device, s.precision)

    image = image.detach().float().cpu()
    train_img = training_image(image, s.resolution)
    mask_small = None
    if bootstrap_mask is not None:
        mask_small = F.interpolate(bootstrap_mask.float().cpu(), size=train_img.shape[-2:],
                                   mode="bilinear", align_corners=False)
    target = None
    if s.bootstrap_weight > 0 and s.bootstrap_steps > 0:
        target = bootstrap_target(clip, train_img, roi_text, mask_small, s.relevancy_blocks)
    texts = _encode_texts(clip, prompt, roi_text, screen_text)

    fingerprint = _fingerprint(image, bootstrap_mask, prompt, roi_text, screen_text, s, seed)
    run = GeneratorRun.start(s, seed, device, amp, run_dir, fingerprint, node)
    generator = run.generator
    train_dev = train_img.to(device)
    target_dev = target.to(device) if target is not None else None

    def one_step(step: int):
        if step % s.whole_every == 0:
            crop, crop_target = train_dev, target_dev
        else:
            crop, crop_target = training_crop(train_dev, run.gen, s.crop_aug, extra=target_dev)
        loss, record, comp = loss_step(clip, generator, crop, crop_target, texts, s, step, run.gen, amp)
        return loss, record, lambda: comp

    run.train(s, one_step, progress)
    run.finish(s, train_dev)
    history = run.history
    if run_dir is not None:
        save_generator(generator, Path(run_dir) / GENERATOR_FILE,
                       metadata={"prompt": prompt, "roi_text": roi_text, "seed": seed, "steps": s.steps})
    relevancy = None
    if target is not None:
        relevancy = F.interpolate(target, size=image.shape[-2:], mode="bilinear", align_corners=False)
    return TrainResult(generator.eval(), history, relevancy, s.steps)


def _resume(path: Path, fingerprint: str, objects: dict, history, node: str,
            kind: str = CHECKPOINT_KIND, version: int = CHECKPOINT_VERSION,
            same: str = "image") -> int:
    """Load a checkpoint into the run's objects; returns the step to continue from.
    (Shared with the video trainer, which passes its own ``kind``.)"""
    state = load_checkpoint(path, expect={"kind": kind, "version": version})
    if state.get("fingerprint") != fingerprint:
        raise InputError(node, "run_dir", f"holds a checkpoint of a different run ({path})",
                         f"an empty folder, or the folder of this same {same}, prompt, seed and settings")
    load_states(state, objects)
    set_rng_state(state["rng"])
    for k in LOSS_NAMES:
        history[k][:] = list(state["losses"].get(k, []))
    return int(state["step"])


def render(generator: SkipGenerator, image: torch.Tensor, tile: int | None = None,
           progress: Progress | None = None) -> dict[str, torch.Tensor]:
    """Full-resolution outputs of a trained generator on ``image`` ``(N, 3, H, W)``:
    {"colour", "alpha", "composite", "greenscreen"} (NCHW / N1HW); ``progress``
    gets an update per image."""
    from .generator import apply_generator
    colour, alpha = apply_generator(generator, image, tile=tile, progress=progress)
    return {"colour": colour, "alpha": alpha,
            "composite": L.composite(colour, alpha, image.to(colour)),
            "greenscreen": L.green_screen(colour, alpha)}


__all__ = ["TrainResult", "train_text2live", "loss_step", "render", "calibrate_batchnorm", "make_optimizer",
           "training_image", "bootstrap_target", "screen_texts", "GENERATOR_FILE", "LOSS_NAMES"]
