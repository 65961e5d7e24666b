"""The Text2LIVE paper's two video baselines, and the measures we compare
them with (bench/text2live_video_quality.py, tests/test_text2live_video_quality.py).

* **atlas baseline**: the *image* method trained on the atlas image itself
  (the atlas is treated as a photo), its edit rendered to the frames through
  the UVs. CLIP never sees a frame; the atlas may not look like the object.
* **frames baseline**: the image method trained on all the frames (each step
  a crop of a random frame), then applied to every frame on its own. Nothing
  ties one frame's edit to the next, so the edit can flicker.

Measures on a clip with known object masks and track (``edit_measures``):
per-frame IoU of the layer alpha (> 0.5) with the object, the mean change
outside the object, and flicker — how much the edited frames' colour at
fixed points on the object (following its true track) varies across frames.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..atlas.products import atlas_image
from ..atlas.render import Edit
from ..progress import Progress
from .generator import SkipGenerator, apply_generator
from .objective import LOSS_NAMES, encode_texts
from .settings import Text2LIVESettings
from .trainer import (_lr_at, build_generator, calibrate_batchnorm, loss_step, make_optimizer,
                      train_text2live)
from .augment import training_crop
from .settings import VideoSettings
from .video import atlas_resolution, bootstrap_targets, render_video, train_text2live_video


def atlas_baseline(clip, atlas, prompt: str, roi_text: str | None, layer: str, resolution: int,
                   settings: Text2LIVESettings, seed: int = 0) -> tuple[SkipGenerator, Edit]:
    """The image method on the ``layer`` atlas image at ``resolution``: (generator, atlas edit)."""
    image = atlas_image(atlas, layer, resolution)
    result = train_text2live(clip, image, prompt, roi_text=roi_text, settings=settings, seed=seed)
    colour, alpha = apply_generator(result.generator, image)
    return result.generator, Edit(colour, alpha)


def frames_baseline(clip, frames: torch.Tensor, prompt: str, roi_text: str | None,
                    settings: Text2LIVESettings, seed: int = 0,
                    progress: Progress | None = None) -> SkipGenerator:
    """The image method trained on all ``frames`` ``(N, 3, H, W)``: every step a
    training crop of a random frame (the whole frame every ``whole_every``
    steps), bootstrapped by that frame's relevancy map. Returns the generator
    (BN statistics of all frames), to be applied to each frame."""
    s = settings
    s.validate()
    frames = frames.detach().float().cpu()
    targets = None
    if s.bootstrap_weight > 0 and s.bootstrap_steps > 0:
        targets = bootstrap_targets(clip, frames, roi_text, None, s.relevancy_blocks)
    texts = encode_texts(clip, prompt, roi_text, None)
    device = clip.device
    generator = build_generator(s, seed, device).train()
    opt = make_optimizer(generator, s)
    gen = torch.Generator().manual_seed(seed)
    history: dict[str, list[float]] = {k: [] for k in LOSS_NAMES}
    for step in range(s.steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, s)
        t = int(torch.randint(frames.shape[0], (1,), generator=gen))
        image = frames[t:t + 1].to(device)
        target = targets[t:t + 1].to(device) if targets is not None else None
        if step % s.whole_every == 0:
            crop, crop_target = image, target
        else:
            crop, crop_target = training_crop(image, gen, s.crop_aug, extra=target)
        loss, record, _ = loss_step(clip, generator, crop, crop_target, texts, s, step, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        for k in LOSS_NAMES:
            history[k].append(record[k])
        if progress is not None:
            progress.update(step + 1, s.steps, loss=record["total"])
    calibrate_batchnorm(generator, frames.to(device))   # statistics of every frame together
    generator.losses = history
    return generator.eval()


def apply_per_frame(generator: SkipGenerator, frames: torch.Tensor):
    """The frames baseline's output: (colour, alpha, composite), each frame on its own."""
    colour, alpha = apply_generator(generator, frames)
    return colour, alpha, alpha * colour + (1 - alpha) * frames


def render_atlas_edit(atlas, edit: Edit, layer: str, plate: torch.Tensor):
    """An atlas edit rendered to every frame over ``plate``: (colour, alpha, composite)."""
    return render_video(atlas, edit, layer, list(range(atlas.n_frames)), plate=plate)


# --------------------------------------------------------------------------- measures

@dataclass
class EditMeasures:
    """Per-clip measures of an edit: IoU per frame, outside change per frame, flicker."""
    iou: list[float]
    outside: list[float]
    flicker: float

    @property
    def min_iou(self) -> float:
        return min(self.iou)

    @property
    def max_outside(self) -> float:
        return max(self.outside)

    def row(self) -> str:
        return (f"IoU min {self.min_iou:.3f} mean {np.mean(self.iou):.3f} | outside max "
                f"{self.max_outside:.4f} | flicker {self.flicker:.4f}")


def track_points(centres: np.ndarray, radius: float, spread: float = 0.5, n: int = 5) -> np.ndarray:
    """Points fixed on the object, following its true track: ``(N, P, 2)`` pixel
    positions (centres at +0.5) on an ``n``×``n`` grid within ``spread``·radius of the centre."""
    offs = np.linspace(-spread * radius, spread * radius, n)
    ox, oy = np.meshgrid(offs, offs)
    keep = ox ** 2 + oy ** 2 <= (spread * radius) ** 2 + 1e-9
    grid = np.stack([ox[keep], oy[keep]], -1)                 # (P, 2)
    return centres[:, None, :] + grid[None]


def sample_points(images: torch.Tensor, points: np.ndarray) -> torch.Tensor:
    """Bilinear colour of ``images`` ``(N, C, H, W)`` at ``points`` ``(N, P, 2)`` → ``(N, P, C)``."""
    h, w = images.shape[-2:]
    p = torch.as_tensor(points, dtype=torch.float32)
    grid = torch.stack([p[..., 0] / w * 2 - 1, p[..., 1] / h * 2 - 1], -1)[:, :, None]  # (N,P,1,2)
    out = F.grid_sample(images.float(), grid, mode="bilinear", align_corners=False)   # (N,C,P,1)
    return out[..., 0].permute(0, 2, 1)


def edit_measures(alpha: torch.Tensor, composite: torch.Tensor, plate: torch.Tensor,
                  masks: torch.Tensor, centres: np.ndarray, margin: int = 2) -> EditMeasures:
    """IoU of ``alpha`` ``(N,1,H,W)`` > 0.5 with ``masks`` > 0.5 per frame; mean
    |composite − plate| more than ``margin`` px away from the object per frame;
    flicker = mean over points fixed on the object (``track_points`` on its
    true track, radius from the mask area) of the standard deviation across
    frames of the composite colour there: what a viewer sees of the edit at
    one place on the object. It has a floor: the frames are pixel grids
    sampled at moving sub-pixel points, so even the unedited plate scores
    above 0 (``track_flicker`` of the plate)."""
    pred, true = alpha[:, 0] > 0.5, masks[:, 0] > 0.5
    iou = ((pred & true).flatten(1).sum(1) / (pred | true).flatten(1).sum(1).clamp_min(1)).tolist()
    k = 2 * margin + 1
    near = F.max_pool2d(masks.float(), k, stride=1, padding=margin)[:, 0] > 0.01
    diff = (composite - plate).abs().mean(1)                  # (N, H, W)
    outside = [float(diff[i][~near[i]].mean()) for i in range(diff.shape[0])]
    return EditMeasures(iou, outside, track_flicker(composite, masks, centres))


def track_flicker(images: torch.Tensor, masks: torch.Tensor, centres: np.ndarray) -> float:
    """The flicker measure of ``images`` ``(N, C, H, W)``: the mean over points
    fixed on the object (``track_points``) of the colour's standard deviation
    across frames. Of the plate itself, it is the measure's floor."""
    radius = float(np.sqrt(masks[0, 0].sum().item() / np.pi))
    colour = sample_points(images, track_points(centres, radius))   # (N, P, C)
    return float(colour.std(dim=0).mean())


# --------------------------------------------------------------------------- the comparison

METHODS = ("ours", "atlas baseline", "frames baseline")


@dataclass
class MethodResult:
    """One method's edit of a clip: layer alpha ``(N,1,H,W)``, composite
    ``(N,3,H,W)``, the measures and the wall time of training + render."""
    alpha: torch.Tensor
    composite: torch.Tensor
    measures: EditMeasures
    seconds: float


def compare(clip, atlas, frames: torch.Tensor, masks: torch.Tensor, centres: np.ndarray, prompt: str,
            roi_text: str, video: VideoSettings, image: Text2LIVESettings, seed: int = 0,
            methods: tuple[str, ...] = METHODS) -> dict[str, MethodResult]:
    """Edit the ``video.layer`` of a clip with known object ``masks`` ``(N,1,H,W)``
    and track ``centres`` ``(N, 2)`` by each of ``methods`` and measure them.

    ours = ``train_text2live_video`` (what LL_Text2LIVEVideo runs) with
    ``video``; the baselines run the image method with ``image`` (the atlas
    baseline on the atlas image at ours' atlas resolution). Every method
    renders over the plate ``frames``."""
    import time
    out = {}
    resolution = atlas_resolution(atlas, video.layer, video.atlas_resolution)
    for name in methods:
        t0 = time.perf_counter()
        if name == "ours":
            r = train_text2live_video(clip, atlas, frames, prompt, roi_text=roi_text, settings=video,
                                      seed=seed)
            _, alpha, comp = render_atlas_edit(atlas, r.edit, video.layer, frames)
        elif name == "atlas baseline":
            _, edit = atlas_baseline(clip, atlas, prompt, roi_text, video.layer, resolution, image, seed)
            _, alpha, comp = render_atlas_edit(atlas, edit, video.layer, frames)
        elif name == "frames baseline":
            g = frames_baseline(clip, frames, prompt, roi_text, image, seed)
            _, alpha, comp = apply_per_frame(g, frames)
        else:
            raise ValueError(f"unknown method {name!r}; one of {', '.join(METHODS)}")
        seconds = time.perf_counter() - t0
        out[name] = MethodResult(alpha, comp, edit_measures(alpha, comp, frames, masks, centres), seconds)
    return out


__all__ = ["METHODS", "MethodResult", "compare", "atlas_baseline", "frames_baseline", "apply_per_frame", "render_atlas_edit",
           "EditMeasures", "edit_measures", "track_flicker", "track_points", "sample_points"]
