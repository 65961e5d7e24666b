"""Diffusion models for blended diffusion: one loader, one small handle.

    handle = load_diffusion("toy-ddpm")                      # pixel DDPM (UNet2DModel + scheduler)
    handle = load_diffusion("tests/assets/toy_sd", "latent")  # a Stable Diffusion pipeline folder
    handle = load_diffusion("stabilityai/stable-diffusion-2-inpainting", "latent-inpaint")

kinds:
- ``pixel``: a diffusers folder/repo holding a ``UNet2DModel`` (in ``unet/`` or
  at the top) and a DDPM/DDIM scheduler config (``scheduler/`` or
  ``scheduler_config.json``; a linear-beta DDPM schedule when absent).
- ``latent``: any ``StableDiffusionPipeline`` folder/repo (VAE, CLIP text
  encoder + tokenizer, 4-channel ``UNet2DConditionModel``, scheduler).
- ``latent-inpaint``: a ``StableDiffusionInpaintPipeline`` (9-channel UNet:
  noisy latent + mask + masked-image latent).
- ``auto``: read ``model_index.json`` / the UNet config and decide.

Weights load from safetensors only (``use_safetensors=True``): no pickle.
Offline (``HF_HUB_OFFLINE=1``) nothing is downloaded (``local_files_only``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..device import autocast_dtype, pick_device
from ..errors import InputError, LiveLayersError, ModelNotFoundError

KINDS = ("auto", "pixel", "latent", "latent-inpaint")
NODE = "LL_LoadDiffusion"


@dataclass
class DiffusionHandle:
    """A loaded diffusion model, whichever kind.

    kind:            "pixel" | "latent" | "latent-inpaint".
    unet:            UNet2DModel (pixel) or UNet2DConditionModel (latent), frozen, eval.
    scheduler:       a diffusers scheduler (DDPMScheduler for pixel, the pipeline's
                     own for latent); edit code copies it with ``from_config``
                     and never mutates this one.
    sample_size:     the size (pixels for pixel models, latents for latent ones)
                     the UNet was trained at.
    in_channels / out_channels: of the UNet (9 in for an inpainting UNet).
    prediction_type: "epsilon" | "v_prediction" | "sample".
    vae, text_encoder, tokenizer: latent kinds only (else None).
    vae_scale_factor: pixels per latent (8 for SD, 4 for the toy pipeline); 1 for pixel.
    dtype:           weights' dtype (fp16 only when asked on a GPU).
    spec, source:    what was asked for and where it was loaded from.
    """
    kind: str
    unet: Any
    scheduler: Any
    sample_size: int
    in_channels: int
    out_channels: int
    prediction_type: str
    device: torch.device
    dtype: torch.dtype = torch.float32
    vae: Any = None
    text_encoder: Any = None
    tokenizer: Any = None
    vae_scale_factor: int = 1
    spec: str = ""
    source: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def pixel_multiple(self) -> int:
        """Image sides must be a multiple of this (the UNet's total downsampling)."""
        down = 2 ** (len(self.unet.config.block_out_channels) - 1)
        return down * self.vae_scale_factor

    def __repr__(self) -> str:
        return (f"DiffusionHandle({self.kind!r}, spec={self.spec!r}, sample_size={self.sample_size}, "
                f"in={self.in_channels}, pred={self.prediction_type}, device={self.device})")


# ---------------------------------------------------------------- resolution

def _resolve(spec: str, kind: str, offline: bool | None, search_dirs) -> str:
    """A local folder/file or a hub id for ``spec``, through the one resolver
    (engine/models/resolve.py); ``auto`` searches both diffusion kinds' folders."""
    from .resolve import FETCH_COMMAND, resolve
    kinds = {"pixel": ("diffusion-pixel",), "latent": ("diffusion-latent",),
             "latent-inpaint": ("diffusion-latent",),
             "auto": ("diffusion-latent", "diffusion-pixel")}[kind]
    try:
        found = resolve(spec, kinds, offline=offline, search_dirs=search_dirs)
    except ValueError as e:  # a spec that cannot name a model (our own errors pass as they are)
        if isinstance(e, LiveLayersError):
            raise
        raise InputError(NODE, "spec", f"is {spec!r}: {e}",
                         "a folder, a hub repo id (org/repo) or a catalogue id") from e
    if found.path is not None:
        return found.path
    if found.hub and found.hub.startswith(("http://", "https://")):
        # a single-file checkpoint (guided-diffusion): diffusers cannot download it
        fetch = f"`{FETCH_COMMAND} {found.entry['id']}`" if found.entry else f"download {found.hub}"
        raise ModelNotFoundError(f"diffusion model '{spec}' is not on this machine: {fetch} "
                                 f"(it lands in $LIVELAYERS_MODELS/diffusion-pixel/), then load it again")
    return found.hub or found.spec


def _read_json(source: str, name: str, offline: bool) -> dict | None:
    """``name`` (e.g. "model_index.json", "unet/config.json") from a folder or repo, or None."""
    p = Path(source)
    if p.is_dir():
        f = p / name
        return json.loads(f.read_text()) if f.is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError
    try:
        return json.loads(Path(hf_hub_download(source, name, local_files_only=offline)).read_text())
    except EntryNotFoundError:  # the repo has no such file (or, offline, it is not cached)
        return None


def detect_kind(source: str, offline: bool = True) -> str:
    """Decide pixel / latent / latent-inpaint from a folder's (or repo's) configs."""
    index = _read_json(source, "model_index.json", offline)
    if index is not None:
        cls = index.get("_class_name", "")
        if "vae" in index and "text_encoder" in index:
            unet_cfg = _read_json(source, "unet/config.json", offline) or {}
            return "latent-inpaint" if ("Inpaint" in cls or unet_cfg.get("in_channels") == 9) else "latent"
        if "unet" in index:
            return "pixel"
    for name in ("unet/config.json", "config.json"):
        cfg = _read_json(source, name, offline)
        if cfg and cfg.get("_class_name") == "UNet2DModel":
            return "pixel"
    raise InputError(NODE, "spec", f"'{source}' is not a diffusers model folder this loader knows "
                     "(no model_index.json with a UNet, no UNet2DModel config)",
                     "a pixel DDPM folder (UNet2DModel + scheduler) or a Stable Diffusion "
                     "(inpainting) pipeline folder or repo id")


# ---------------------------------------------------------------- loading

def load_diffusion(spec: str, kind: str = "auto", device: str | torch.device = "auto",
                   precision: str = "auto", offline: bool | None = None,
                   search_dirs=()) -> DiffusionHandle:
    """Load a diffusion model for blended diffusion.

    spec: folder path, ``local-dir:/path``, hub repo id (``org/repo``) or a
    catalogue id (``toy-ddpm``, ``toy-sd``). kind: see ``KINDS``.
    precision: "auto"/"fp32" keep fp32 weights; "fp16"/"bf16" load half weights
    on a GPU (on the CPU weights stay fp32: half convolutions there are slow
    and not bit-deterministic).
    Raises ``InputError`` for a bad kind or a folder of the wrong kind,
    ``ModelNotFoundError`` when the weights are nowhere (offline).
    """
    from .resolve import is_offline
    if kind not in KINDS:
        raise InputError(NODE, "kind", f"is {kind!r}", ", ".join(KINDS))
    spec = str(spec).strip()
    if not spec:
        raise InputError(NODE, "spec", "is empty", "a folder, a hub repo id or a catalogue id "
                         "such as 'toy-ddpm' or 'toy-sd'")
    dev = device if isinstance(device, torch.device) else pick_device(device)
    autocast_dtype(dev, precision)  # validates the name
    dtype = torch.float32
    if dev.type != "cpu" and precision in ("fp16", "bf16"):
        dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    off = is_offline(offline)
    source = _resolve(spec, kind, offline, search_dirs)
    guided = _guided_checkpoint(source)
    found = "pixel" if guided is not None else detect_kind(source, off)
    if kind == "auto":
        kind = found
    elif (kind == "pixel") != (found == "pixel"):
        raise InputError(NODE, "kind", f"is '{kind}' but '{spec}' holds a {found} model",
                         f"'{found}' or 'auto' for this model")
    elif kind == "latent" and found == "latent-inpaint":
        kind = "latent-inpaint"  # a 9-channel UNet can only be driven as inpainting
    if guided is not None:
        handle = _load_guided(guided, dev, dtype)
    elif kind == "pixel":
        handle = _load_pixel(source, dev, dtype, off)
    else:
        handle = _load_latent(source, kind, dev, dtype, off)
    handle.spec, handle.source = spec, source
    return handle


def _freeze(module, dev, dtype):
    module = module.to(device=dev, dtype=dtype).eval()
    module.requires_grad_(False)
    return module


def _load_pixel(source: str, dev, dtype, offline: bool) -> DiffusionHandle:
    from diffusers import DDPMScheduler, UNet2DModel
    sub = "unet" if _read_json(source, "unet/config.json", offline) else None
    unet = UNet2DModel.from_pretrained(source, subfolder=sub, use_safetensors=True,
                                       local_files_only=offline, dtype=torch.float32)
    sched_sub = "scheduler" if _read_json(source, "scheduler/scheduler_config.json", offline) else None
    if sched_sub or _read_json(source, "scheduler_config.json", offline):
        # DDPM maths (posterior variance) on whatever DDPM/DDIM config was saved
        cfg = DDPMScheduler.load_config(source, subfolder=sched_sub, local_files_only=offline)
        scheduler = DDPMScheduler.from_config(cfg)
    else:
        scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    c = unet.config
    size = c.sample_size if isinstance(c.sample_size, int) else int(c.sample_size[0])
    return DiffusionHandle("pixel", _freeze(unet, dev, dtype), scheduler, size, c.in_channels,
                           c.out_channels, scheduler.config.prediction_type, dev, dtype)


def _guided_checkpoint(source: str) -> Path | None:
    """A guided-diffusion checkpoint: the file itself, or the one ``.pt`` in a
    folder without diffusers configs (as ``models fetch`` leaves it)."""
    from .guided_diffusion import CHECKPOINT_SUFFIXES, checkpoint_in
    p = Path(source)
    if p.is_file():
        if p.suffix in CHECKPOINT_SUFFIXES:
            return p
        raise InputError(NODE, "spec", f"is the file '{p}'", "a diffusers folder, or a "
                         f"guided-diffusion checkpoint ({', '.join(CHECKPOINT_SUFFIXES)})")
    diffusers_files = ("model_index.json", "config.json", "unet/config.json")
    if p.is_dir() and not any((p / f).is_file() for f in diffusers_files):
        return checkpoint_in(p)
    return None


def _load_guided(path: Path, dev, dtype) -> DiffusionHandle:
    """guided-diffusion's UNet converted to a UNet2DModel (engine/models/guided_diffusion.py);
    its 6 output channels are ε and the learned variance (the edit uses ε)."""
    from . import guided_diffusion
    unet = guided_diffusion.load_unet(path)
    scheduler = guided_diffusion.scheduler()
    c = unet.config
    return DiffusionHandle("pixel", _freeze(unet, dev, dtype), scheduler, int(c.sample_size),
                           c.in_channels, c.out_channels, "epsilon", dev, dtype,
                           extra={"format": "guided-diffusion"})


def _load_latent(source: str, kind: str, dev, dtype, offline: bool) -> DiffusionHandle:
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline
    cls = StableDiffusionInpaintPipeline if kind == "latent-inpaint" else StableDiffusionPipeline
    try:
        # no safety checker or image processor: neither is used here, and
        # `models fetch` does not download them (SD 2.x lists a feature_extractor)
        pipe = cls.from_pretrained(source, use_safetensors=True, local_files_only=offline,
                                   dtype=torch.float32, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    except (OSError, EnvironmentError) as e:
        raise ModelNotFoundError(f"could not load the {kind} pipeline from '{source}': {e}. "
                                 "It needs safetensors weights for vae, text_encoder and unet "
                                 "(diffusers folder layout).") from e
    unet = pipe.unet
    c = unet.config
    if kind == "latent" and c.in_channels != 4:
        raise InputError(NODE, "kind", f"is 'latent' but the UNet takes {c.in_channels} channels",
                         "'latent-inpaint' for a 9-channel inpainting UNet")
    size = c.sample_size if isinstance(c.sample_size, int) else int(c.sample_size[0])
    return DiffusionHandle(
        kind, _freeze(unet, dev, dtype), pipe.scheduler, size, c.in_channels, c.out_channels,
        pipe.scheduler.config.prediction_type, dev, dtype,
        vae=_freeze(pipe.vae, dev, dtype), text_encoder=_freeze(pipe.text_encoder, dev, dtype),
        tokenizer=pipe.tokenizer, vae_scale_factor=2 ** (len(pipe.vae.config.block_out_channels) - 1))


__all__ = ["DiffusionHandle", "KINDS", "detect_kind", "load_diffusion"]
