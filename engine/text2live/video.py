"""Text2LIVE for video (Bar-Tal et al., ECCV 2022, the video method).

A generator is trained on ONE layer of a neural layered atlas (the
foreground object or the background scene) so that its RGBA edit, painted on
the atlas and mapped back into the frames, makes the *frames* match the
prompt. Because the edit lives on the atlas, every frame shows the same
paint at the same place on the object: the edit is temporally consistent by
construction.

One training step (``video_loss_step``):

1. **Space–time crop** (``choose_crop``): a random centre frame t and its
   neighbours t ± ``frame_offset`` (clamped to the clip). Foreground: in each
   frame the box around the NLA opacity α ≥ ``box_threshold``, grown by
   ``box_margin`` px, at least ``box_min_size`` px a side
   (``atlas.crops.object_box``). Background: one random 95–100 % crop, the
   same box in the three frames. Every ``whole_every`` steps: whole frames.
2. **Atlas crop**: the part of the discretised atlas image those frame crops
   look at through their UVs (``atlas.crops.atlas_crop_box``), rounded to the
   generator's stride multiple (the whole atlas on whole-frame steps).
3. **Generator on the atlas crop** → colour C and alpha a in atlas space.
4. **Back into the frames**: C, a are sampled (bilinear, premultiplied) at
   each frame pixel's UV (``atlas.crops.sample_atlas_crop``) and combined with
   the opacity exactly as the renderer does (``atlas.render.composite_layers``):
   the foreground edit's frame alpha is α·a, the background's (1 − α)·a.
5. **The frame example** (``frame_example``, on by default, as the official
   code's 4th example): the generator also runs directly on one of the
   frame crops (the layer's own reconstruction there), so the edit it learns
   on the atlas is also the edit it makes of what the frames look like.
6. **The image objective on the frames** (``objective.objective``) with
   I_s = the decomposition's reconstruction of each frame crop:
   composition (+ direction), green screen, structure, sparsity (on the
   atlas-crop alpha a) and the relevancy bootstrap, whose targets are the
   ROI text's relevancy maps computed ONCE per frame on the plate.

After training, the generator runs once on the whole atlas image
(``atlas_edit``): that RGBA atlas edit is what ``LL_AtlasRender`` maps to any
frame range, and what farm chunks read from disk (``save_atlas_edit``).
"""
from __future__ import annotations

import contextlib
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..atlas.crops import AtlasCanvas, Box, atlas_crop_box, object_box, sample_atlas_crop, scaled_box
from ..atlas.fields import UV_SCALE
from ..atlas.products import atlas_image
from ..atlas.render import Edit, composite_layers, render_edit
from ..atlas.store import Atlas
from ..device import autocast_dtype, pick_device
from ..errors import InputError
from ..progress import Progress, ensure
from . import losses as L
from .generator import SkipGenerator, apply_generator, save_generator, split_rgba
from .objective import Frame, encode_texts, objective, uses
from .settings import VIDEO_LAYERS, VideoSettings
from .trainer import GeneratorRun

CHECKPOINT_KIND = "text2live_video"
CHECKPOINT_VERSION = 1
GENERATOR_FILE = "generator.safetensors"
EDIT_FILE = "atlas_edit.png"
ATLAS_PX_PER_FRAME_PX = 2.0   # auto atlas resolution: the paper's 2000² UV grid at 768-px-wide frames


@dataclass
class VideoTrainResult:
    """What ``train_text2live_video`` returns.

    generator: trained ``SkipGenerator``, eval mode, BN statistics of the whole atlas image.
    edit: the atlas edit ``Edit(rgb (1,3,Ha,Wa), alpha (1,1,Ha,Wa))`` of ``layer``.
    resolution: the atlas image's longer side the edit was made at.
    losses: {name: [value per step]} for every name in ``LOSS_NAMES``.
    relevancy: ``(N, 1, H, W)`` per-frame bootstrap targets, or None.
    """
    generator: SkipGenerator
    edit: Edit
    layer: str
    resolution: int
    losses: dict[str, list[float]] = field(default_factory=dict)
    relevancy: torch.Tensor | None = None
    steps: int = 0


# --------------------------------------------------------------------------- the clip's data

def atlas_resolution(atlas: Atlas, layer: str, resolution: int = 0) -> int:
    """The atlas image's longer side: ``resolution``, or for 0 about
    ``ATLAS_PX_PER_FRAME_PX`` atlas pixels per frame pixel (an initial
    mapping puts one frame pixel at ``UV_SCALE·unit_per_pixel`` in UV)."""
    if resolution:
        return int(resolution)
    u0, v0, u1, v1 = atlas.boxes[layer]
    per_px = atlas.geometry.unit_per_pixel * UV_SCALE / ATLAS_PX_PER_FRAME_PX
    return max(16, math.ceil(max(u1 - u0, v1 - v0) / per_px - 1e-6))


class ClipData:
    """Everything a step reads, per frame, computed once and kept on the CPU:
    the layer's UVs ``(2, H, W)``, the opacity ``(1, H, W)``, the
    reconstruction I_s ``(3, H, W)`` and the bootstrap target ``(1, H, W)``.

    The generator's input is the atlas image ``(1, 3, Ha, Wa)`` (the grid of
    ``products.atlas_grid``, what ``LL_AtlasRender`` expects) inside a black
    margin of ``margin`` × its longer side (foreground only): ``atlas_rgb``
    covers ``canvas``, and ``inner`` is the atlas image's box in it.
    """

    def __init__(self, atlas: Atlas, layer: str, resolution: int, targets: torch.Tensor | None,
                 margin: float = 0.0):
        self.atlas, self.layer = atlas, layer
        base = AtlasCanvas.of(atlas, layer, resolution)
        p = round(margin * max(base.height, base.width)) if layer == "fg" else 0
        u0, v0, u1, v1 = base.uv_box
        pu, pv = (u1 - u0) / base.width, (v1 - v0) / base.height
        self.canvas = AtlasCanvas(base.height + 2 * p, base.width + 2 * p,
                                  (u0 - p * pu, v0 - p * pv, u1 + p * pu, v1 + p * pv))
        self.inner = Box(p, p, p + base.width, p + base.height)
        self.atlas_rgb = F.pad(atlas_image(atlas, layer, resolution), (p, p, p, p))
        # The render samples the atlas edit (the inner box only) with border
        # padding: a UV beyond it reads the edge pixel. Clamping UVs to the
        # inner pixel centres makes training read exactly that, never the margin.
        self._uv_lo = torch.tensor([u0 + 0.5 * pu, v0 + 0.5 * pv]).view(2, 1, 1)
        self._uv_hi = torch.tensor([u1 - 0.5 * pu, v1 - 0.5 * pv]).view(2, 1, 1)
        self.targets = targets
        self._sources: dict[int, torch.Tensor] = {}
        self._layer_sources: dict[int, torch.Tensor] = {}

    @property
    def n_frames(self) -> int:
        return self.atlas.n_frames

    @property
    def size(self) -> tuple[int, int]:
        return self.atlas.geometry.height, self.atlas.geometry.width

    def maps(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """UVs of the edited layer ``(2, H, W)``, clamped to the atlas image's
        pixel centres as the renderer's border padding does, and the NLA
        opacity ``(1, H, W)`` of frame t."""
        uv_f, uv_b, a = self.atlas.frame_maps([t])  # cached by the atlas handle
        uv = (uv_f if self.layer == "fg" else uv_b)[0]
        return torch.maximum(torch.minimum(uv, self._uv_hi.to(uv)), self._uv_lo.to(uv)), a[0]

    def source(self, t: int) -> torch.Tensor:
        """The decomposition's reconstruction of frame t ``(3, H, W)`` (I_s)."""
        if t not in self._sources:
            self._sources[t] = self.atlas.reconstruct([t])[0]
        return self._sources[t]

    def layer_source(self, t: int) -> torch.Tensor:
        """The edited layer's own reconstruction in frame t ``(3, H, W)``: α·c_fg
        (the object on black, as the official code's ``original_video · α``) or
        c_bg (its background reconstruction). The input of the frame example."""
        if t not in self._layer_sources:
            uv, a = self.maps(t)
            rgb = self.atlas.fields.rgb_fg if self.layer == "fg" else self.atlas.fields.rgb_bg
            with torch.no_grad():
                c = rgb(uv.permute(1, 2, 0).reshape(-1, 2)).reshape(*uv.shape[1:], 3).permute(2, 0, 1)
            self._layer_sources[t] = (c * a if self.layer == "fg" else c).float().clamp(0, 1)
        return self._layer_sources[t]

    def layer_opacity(self, t: int) -> torch.Tensor:
        """How much of each pixel of frame t the edited layer covers: α (fg) or 1 − α (bg)."""
        a = self.maps(t)[1]
        return a if self.layer == "fg" else 1 - a


# --------------------------------------------------------------------------- space-time crops

@dataclass(frozen=True)
class SpaceTimeCrop:
    """One step's crop: frame indices, a box per frame, the atlas box they look at."""
    frames: tuple[int, ...]
    boxes: tuple[Box, ...]
    atlas_box: Box
    whole: bool = False


def frame_triplet(t: int, n_frames: int, offset: int) -> tuple[int, ...]:
    """The centre frame and its neighbours at ± ``offset``, clamped to the clip,
    without repeats (the clip's ends give two frames)."""
    picks = (max(t - offset, 0), t, min(t + offset, n_frames - 1))
    return tuple(sorted(set(picks)))


def choose_crop(data: ClipData, s: VideoSettings, step: int, gen: torch.Generator,
                multiple: int) -> SpaceTimeCrop:
    """The space–time crop of ``step`` (random draws from ``gen``)."""
    h, w = data.size
    t = int(torch.randint(data.n_frames, (1,), generator=gen))
    frames = frame_triplet(t, data.n_frames, s.frame_offset)
    whole = step % s.whole_every == 0
    if whole:
        boxes = tuple(Box(0, 0, w, h) for _ in frames)
        full = Box(0, 0, data.canvas.width, data.canvas.height)
        return SpaceTimeCrop(frames, boxes, full, whole=True)
    if data.layer == "fg":
        boxes = tuple(object_box(data.maps(f)[1], s.box_threshold, s.box_margin, s.box_min_size)
                      for f in frames)
    else:
        lo, hi = s.bg_crop
        scale = lo + (hi - lo) * float(torch.rand(1, generator=gen))
        ox, oy = torch.rand(2, generator=gen).tolist()
        box = scaled_box(Box(0, 0, w, h), scale, (ox, oy), h, w)
        boxes = tuple(box for _ in frames)
    return SpaceTimeCrop(frames, boxes, _atlas_box(data, frames, boxes, s, multiple))


def _atlas_box(data: ClipData, frames, boxes, s: VideoSettings, multiple: int) -> Box:
    """The atlas crop the frame crops look at (pixels whose layer opacity is
    below ``opacity_threshold`` do not count), rounded for the generator."""
    uvs, weights = [], []
    for f, b in zip(frames, boxes):
        uvs.append(b.crop(data.maps(f)[0]).reshape(2, -1))
        weights.append((b.crop(data.layer_opacity(f)) >= s.opacity_threshold).float().reshape(1, -1))
    uv = torch.cat(uvs, 1)[None, :, None]        # (1, 2, 1, M): the box only needs the points
    weight = torch.cat(weights, 1)[None, :, None]
    return atlas_crop_box(data.canvas, uv, weight, pad=2, multiple=multiple, min_size=2 * multiple)


# --------------------------------------------------------------------------- one step

def frame_layer(prem: torch.Tensor, a: torch.Tensor, opacity: torch.Tensor,
                layer: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The edit as a frame sees it: premultiplied colour ``(K, 3, h, w)`` and
    alpha ``(K, 1, h, w)`` from the sampled atlas edit (``prem``, ``a``) and the
    NLA opacity ``(K, 1, h, w)``, by the renderer's own rule
    (``render.composite_layers``): fg → α·a, bg → (1 − α)·a."""
    sampled = (prem, a)
    zeros = torch.zeros_like(prem)
    _, alpha, premult = composite_layers(opacity, sampled if layer == "fg" else None,
                                         sampled if layer == "bg" else None, zeros)
    return premult, alpha


def video_loss_step(clip, generator: SkipGenerator, data: ClipData, crop: SpaceTimeCrop, texts,
                    s: VideoSettings, step: int, gen: torch.Generator, amp: torch.dtype | None,
                    device: torch.device, objective_fn=objective) -> tuple[torch.Tensor, dict[str, float]]:
    """The Text2LIVE objective on one space–time crop. Returns (loss with graph, {name: float}).

    ``objective_fn`` (same signature as ``objective.objective``) lets the
    bench time the reference design's objective on exactly the same frames."""
    atlas_in = crop.atlas_box.crop(data.atlas_rgb).to(device)
    autocast = torch.autocast(device.type, dtype=amp) if amp else contextlib.nullcontext()
    with autocast:
        colour, a = split_rgba(generator(atlas_in))
    colour, a = colour.float(), a.float()
    green = torch.tensor(L.GREEN_SCREEN, device=device).view(1, 3, 1, 1)
    need_screen = uses(s)["screen"]
    frames = []
    for f, box in zip(crop.frames, crop.boxes):
        uv_layer, opacity = data.maps(f)
        uv = box.crop(uv_layer)[None].to(device)
        prem, alpha = frame_layer(*sample_atlas_crop(colour, a, data.canvas, crop.atlas_box, uv),
                                  box.crop(opacity)[None].to(device), data.layer)
        source = box.crop(data.source(f))[None].to(device)
        target = box.crop(data.targets[f])[None].to(device) if data.targets is not None else None
        frames.append(Frame(composite=prem + (1 - alpha) * source,
                            screen=prem + (1 - alpha) * green if need_screen else None,
                            source=source, alpha=alpha, target=target))
    if s.frame_example:
        frames.append(frame_example(generator, data, crop, gen, autocast, device, green, need_screen))
    return objective_fn(clip, frames, a, texts, s, step, gen)


def frame_example(generator: SkipGenerator, data: ClipData, crop: SpaceTimeCrop, gen: torch.Generator,
                  autocast, device: torch.device, green: torch.Tensor, need_screen: bool) -> Frame:
    """The official code's 4th example of a step: the generator run directly on
    one of the crop's frames (drawn from ``gen``), on the layer's own
    reconstruction there (``ClipData.layer_source``); a foreground edit's alpha
    is multiplied by the NLA opacity, as the official ``multiply_foreground_alpha``."""
    j = int(torch.randint(len(crop.frames), (1,), generator=gen))
    f, box = crop.frames[j], crop.boxes[j]
    raw = box.crop(data.layer_source(f))[None].to(device)
    with autocast:
        colour, a = split_rgba(generator(raw))
    colour, a = colour.float(), a.float()
    if data.layer == "fg":
        a = a * box.crop(data.maps(f)[1])[None].to(device)
    prem = colour * a
    target = box.crop(data.targets[f])[None].to(device) if data.targets is not None else None
    return Frame(composite=prem + (1 - a) * raw, screen=prem + (1 - a) * green if need_screen else None,
                 source=raw, alpha=a, target=target)


# --------------------------------------------------------------------------- inputs

def _validate(clip, atlas, frames, prompt, masks, s: VideoSettings, node: str) -> None:
    if not hasattr(clip, "image_forward"):
        raise InputError(node, "clip", f"is a {type(clip).__name__}", "LL_CLIP from LL_LoadCLIP")
    if not isinstance(atlas, Atlas):
        raise InputError(node, "atlas", f"is a {type(atlas).__name__}",
                         "LL_ATLAS from LL_AtlasDecompose or LL_LoadAtlas")
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[1] != 3:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise InputError(node, "frames", f"has shape {shape}", "the plate's frames (N, 3, H, W)")
    need = s.frame_offset + 1
    if atlas.n_frames < need:
        raise InputError(node, "atlas", f"holds a clip of {atlas.n_frames} frames",
                         f">= {need} frames (a centre frame and its neighbours at ±{s.frame_offset})")
    atlas.check_plate(frames, atlas.n_frames, node, "frames")   # size and count, nothing resized
    h, w = frames.shape[-2:]
    if min(h, w) < 32:
        raise InputError(node, "frames", f"are {w}x{h} pixels", "both sides >= 32")
    if not prompt or not prompt.strip():
        raise InputError(node, "prompt", "is empty", "a text describing the edit, e.g. 'blue circle'")
    if masks is not None and tuple(masks.shape) != (atlas.n_frames, 1, h, w):
        raise InputError(node, "bootstrap_masks", f"has shape {tuple(masks.shape)}",
                         f"one mask per frame ({atlas.n_frames}, 1, {h}, {w}); nothing is resized")


def bootstrap_targets(clip, frames: torch.Tensor, roi_text: str | None, masks: torch.Tensor | None,
                      blocks: str) -> torch.Tensor | None:
    """Per-frame bootstrap targets ``(N, 1, H, W)`` on the CPU: the masks, or the
    relevancy of ``roi_text`` on every frame (once, batched), or None."""
    if masks is not None:
        return masks.float().clamp(0, 1).cpu()
    if not roi_text:
        return None
    from ..relevancy import relevancy_map
    return relevancy_map(clip, frames.to(clip.device), roi_text, blocks=blocks,
                         progress=Progress()).float().clamp(0, 1).cpu()


def _atlas_digest(atlas: Atlas) -> bytes:
    h = hashlib.sha256()
    for name, t in sorted(atlas.fields.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update(repr((sorted(atlas.boxes.items()), atlas.geometry)).encode())
    return h.digest()


def _fingerprint(atlas, frames, masks, prompt, roi_text, screen_text, s, seed) -> str:
    """Identifies a run, so a run_dir is never resumed with different inputs."""
    h = hashlib.sha256(_atlas_digest(atlas))
    h.update(frames.detach().cpu().float().contiguous().numpy().tobytes())
    if masks is not None:
        h.update(masks.detach().cpu().float().contiguous().numpy().tobytes())
    keep = {k: v for k, v in s.__dict__.items() if k not in ("steps", "checkpoint_every", "device")}
    h.update(repr((prompt, roi_text, screen_text, seed, sorted(keep.items(), key=str))).encode())
    return h.hexdigest()


# --------------------------------------------------------------------------- training

def train_text2live_video(clip, atlas: Atlas, frames: torch.Tensor, prompt: str, *,
                          roi_text: str | None = None, screen_text: str | None = None,
                          bootstrap_masks: torch.Tensor | None = None,
                          settings: VideoSettings | None = None, seed: int = 0,
                          run_dir: str | Path | None = None, progress: Progress | None = None,
                          node: str = "LL_Text2LIVEVideo") -> VideoTrainResult:
    """Train a Text2LIVE generator on one atlas layer of a clip.

    clip: a ``CLIPHandle``. atlas: the clip's decomposition (``Atlas``).
    frames: the plate ``(N, 3, H, W)`` in [0,1] sRGB, the atlas's frames and
    size (the relevancy bootstrap runs on it). prompt: the edit text T;
    roi_text: T_ROI (direction origin, relevancy text); screen_text overrides
    the derived green-screen texts; bootstrap_masks ``(N, 1, H, W)`` replace
    the relevancy maps. The layer (fg | bg) and every number are in
    ``settings``. run_dir: ``checkpoint.pt`` every ``checkpoint_every`` steps
    and on ``Cancelled`` (the same call resumes), then
    ``generator.safetensors`` and ``atlas_edit.png``.
    """
    s = settings or VideoSettings()
    try:
        s.validate()
    except ValueError as e:
        raise InputError(node, "settings", str(e)) from e
    _validate(clip, atlas, frames, prompt, bootstrap_masks, s, node)
    progress = ensure(progress, node)
    device = pick_device(s.device) if s.device != "auto" else clip.device
    amp = autocast_dtype(device, s.precision)
    frames = frames.detach().float().cpu()

    resolution = atlas_resolution(atlas, s.layer, s.atlas_resolution)
    targets = None
    if s.bootstrap_weight > 0 and s.bootstrap_steps > 0:
        targets = bootstrap_targets(clip, frames, roi_text, bootstrap_masks, s.relevancy_blocks)
    data = ClipData(atlas, s.layer, resolution, targets, s.fg_atlas_margin)
    texts = encode_texts(clip, prompt, roi_text, screen_text)

    fingerprint = _fingerprint(atlas, frames, bootstrap_masks, prompt, roi_text, screen_text, s, seed)
    run = GeneratorRun.start(s, seed, device, amp, run_dir, fingerprint, node, kind=CHECKPOINT_KIND,
                             version=CHECKPOINT_VERSION, same="atlas, plate")
    generator = run.generator

    def one_step(step: int):
        crop = choose_crop(data, s, step, run.gen, generator.multiple)
        loss, record = video_loss_step(clip, generator, data, crop, texts, s, step, run.gen, amp, device)
        return loss, record, lambda: preview_frame(generator, data, crop.frames[len(crop.frames) // 2])

    run.train(s, one_step, progress)
    run.finish(s, data.atlas_rgb.to(device))
    history = run.history
    edit = atlas_edit(generator, data.atlas_rgb, data.inner)
    if run_dir is not None:
        meta = {"prompt": prompt, "roi_text": roi_text, "seed": seed, "steps": s.steps,
                "layer": s.layer, "atlas_resolution": resolution}
        save_generator(generator, Path(run_dir) / GENERATOR_FILE, metadata=meta)
        save_atlas_edit(edit, Path(run_dir) / EDIT_FILE)
    return VideoTrainResult(generator.eval(), edit, s.layer, resolution, history, targets, s.steps)


@torch.no_grad()
def preview_frame(generator: SkipGenerator, data: ClipData, t: int) -> torch.Tensor:
    """Frame t rendered with the generator as it is now: ``(1, 3, H, W)``.

    Eval mode (BN running statistics, which train-mode steps never read and
    the final calibration replaces), so a preview changes nothing in the run."""
    edit = atlas_edit(generator, data.atlas_rgb, data.inner)   # apply_generator restores train mode
    fg, bg = (edit, None) if data.layer == "fg" else (None, edit)
    return render_edit(data.atlas, [t], fg=fg, bg=bg, plate=data.source(t)[None],
                       progress=Progress())[2]


# --------------------------------------------------------------------------- render and files

def atlas_edit(generator: SkipGenerator, atlas_rgb: torch.Tensor, inner: Box | None = None,
               tile: int | None = None) -> Edit:
    """The generator once on the whole (margined) atlas image ``(1, 3, H', W')``
    → the RGBA atlas edit on the atlas image's own grid (``inner``; default all of it)."""
    colour, alpha = apply_generator(generator, atlas_rgb, tile=tile, progress=Progress())  # no bar of its own
    if inner is not None:
        colour, alpha = inner.crop(colour), inner.crop(alpha)
    return Edit(colour.cpu().contiguous(), alpha.cpu().contiguous())


def render_video(atlas: Atlas, edit: Edit, layer: str, indices: list[int],
                 plate: torch.Tensor | None = None, node: str = "LL_AtlasRender",
                 progress: Progress | None = None):
    """The atlas edit of ``layer`` rendered to frames ``indices`` (any subset):
    (layer colour ``(K,3,H,W)``, layer alpha ``(K,1,H,W)``, composite ``(K,3,H,W)``)."""
    if layer not in VIDEO_LAYERS:
        raise InputError(node, "layer", f"is {layer!r}", " | ".join(VIDEO_LAYERS))
    fg, bg = (edit, None) if layer == "fg" else (None, edit)
    return render_edit(atlas, indices, fg=fg, bg=bg, plate=plate, node=node,
                       progress=progress or Progress())


def save_atlas_edit(edit: Edit, path: str | Path) -> Path:
    """Write the atlas edit as a 16-bit RGBA PNG (straight colour, sRGB), atomically:
    the file farm render chunks read (``LL_LoadImage`` gives colour + alpha back)."""
    import numpy as np
    import OpenImageIO as oiio

    from ..atomic import atomic_path
    rgba = torch.cat([edit.rgb, edit.alpha], 1)[0].permute(1, 2, 0).clamp(0, 1)
    pixels = np.ascontiguousarray(rgba.detach().cpu().numpy().astype(np.float32))
    spec = oiio.ImageSpec(pixels.shape[1], pixels.shape[0], 4, "uint16")
    spec.attribute("oiio:UnassociatedAlpha", 1)   # the colour is straight: store it as it is
    path = Path(path)
    with atomic_path(path) as tmp:
        out = oiio.ImageOutput.create(str(tmp))
        if out is None or not out.open(str(tmp), spec):
            raise OSError(f"cannot write {path}: {oiio.geterror()}")
        ok = out.write_image(pixels)
        out.close()
        if not ok:
            raise OSError(f"cannot write {path}: {oiio.geterror()}")
    return path


def load_atlas_edit(path: str | Path) -> Edit:
    """Read a file written by ``save_atlas_edit`` (through the io loader, as ``LL_LoadImage`` does)."""
    from ..io import load_image
    plate = load_image(str(path))
    if plate.alpha is None:
        raise InputError("load_atlas_edit", "path", f"'{path}' has no alpha channel",
                         "an RGBA atlas edit written by LL_Text2LIVEVideo")
    return Edit(plate.rgb[:1], plate.alpha[:1])


__all__ = ["VideoTrainResult", "ClipData", "SpaceTimeCrop", "train_text2live_video", "video_loss_step",
           "choose_crop", "frame_triplet", "frame_layer", "atlas_resolution", "bootstrap_targets",
           "atlas_edit", "render_video", "preview_frame", "save_atlas_edit", "load_atlas_edit",
           "GENERATOR_FILE", "EDIT_FILE", "CHECKPOINT_KIND"]
