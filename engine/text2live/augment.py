"""Augmentations for Text2LIVE, on tensors, differentiable wrt the image.

Two jobs:

* the *internal dataset* (:func:`training_crop`): one randomly scaled,
  cropped, flipped and (rarely) colour-jittered crop of the image per step;
* the *CLIP views* (:func:`clip_views`): many square views of the composite
  that CLIP sees, each a random crop then flip / affine / perspective /
  colour jitter / grayscale.

Geometry is done kornia-style with the shared warps of ``engine/augment.py``:
every view's crop, flip, rotation, translation and perspective are composed
into one 3x3 matrix that maps output coordinates to source coordinates
(normalised to [-1, 1], ``align_corners=False``, black outside), and all
views are drawn with a single ``grid_sample``. Gradients flow from every
view back to the image. What is drawn, and in which order, is Text2LIVE's
own (the official code's augmentations).

All randomness comes from the ``torch.Generator`` passed in (CPU), so a run
is reproducible from its seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..augment import (affine_matrices, coin, crop_matrices, flip_matrices, perspective_matrices,
                       sample_with_matrices, uniform)


# --------------------------------------------------------------------------- colour

_LUMA = (0.299, 0.587, 0.114)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """``(N, 3, H, W)`` -> luma ``(N, 1, H, W)`` (ITU-R 601 weights, as torchvision)."""
    return _LUMA[0] * x[:, 0:1] + _LUMA[1] * x[:, 1:2] + _LUMA[2] * x[:, 2:3]


def _hue_rotate(x: torch.Tensor, hue: torch.Tensor) -> torch.Tensor:
    """Rotate hue by ``hue`` turns (per image, ``(N,)``) as a rotation in YIQ
    space: smooth (unlike an HSV round trip), so gradients stay useful."""
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                          dtype=x.dtype, device=x.device)
    from_yiq = torch.linalg.inv(to_yiq)
    t = (2 * math.pi * hue).to(x)
    c, s = torch.cos(t), torch.sin(t)
    rot = torch.zeros(len(t), 3, 3, dtype=x.dtype, device=x.device)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = c, -s, s, c
    m = from_yiq @ rot @ to_yiq  # (N, 3, 3)
    return torch.einsum("nij,njhw->nihw", m, x)


def colour_jitter(x: torch.Tensor, gen: torch.Generator, strength: float, apply: torch.Tensor) -> torch.Tensor:
    """torchvision-style ColorJitter(strength, strength, strength, strength) on the
    images where ``apply`` (bool ``(N,)``) is set, in the fixed order
    brightness, contrast, saturation, hue; results clamped to [0,1] like torchvision.

    ``x`` ``(N, 3, H, W)`` -> same shape. Differentiable wrt ``x``.
    """
    n = x.shape[0]
    one = torch.ones(n)
    b = torch.where(apply, uniform(gen, n, 1 - strength, 1 + strength), one)
    c = torch.where(apply, uniform(gen, n, 1 - strength, 1 + strength), one)
    s = torch.where(apply, uniform(gen, n, 1 - strength, 1 + strength), one)
    h = torch.where(apply, uniform(gen, n, -strength, strength), torch.zeros(n))

    def per(v):
        return v.to(x).view(n, 1, 1, 1)
    x = (x * per(b)).clamp(0, 1)
    mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * per(c) + mean).clamp(0, 1)
    g = grayscale(x)
    x = ((x - g) * per(s) + g).clamp(0, 1)
    if apply.any():
        x = torch.where(per(apply.float()) > 0, _hue_rotate(x, h).clamp(0, 1), x)
    return x


def random_grayscale(x: torch.Tensor, apply: torch.Tensor) -> torch.Tensor:
    """Replace the images where ``apply`` is set by their luma on all three channels."""
    if not apply.any():
        return x
    mask = apply.to(x).view(-1, 1, 1, 1)
    return mask * grayscale(x).expand_as(x) + (1 - mask) * x


# --------------------------------------------------------------------------- dataset crops

@dataclass(frozen=True)
class CropSettings:
    """The internal dataset's augmentation (the official code's defaults)."""
    jitter: float = 0.1
    jitter_p: float = 0.1
    flip_p: float = 0.5
    scale: tuple[float, float] = (0.8, 1.2)
    crop: tuple[float, float] = (0.85, 1.0)


def training_crop(image: torch.Tensor, gen: torch.Generator, cfg: CropSettings = CropSettings(),
                  extra: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One training sample: scale U(0.8,1.2), crop sides U(0.85,1), hflip p=.5,
    colour jitter p=.1.

    ``image`` ``(1, 3, H, W)`` -> crop ``(1, 3, h, w)``. ``extra`` ``(1, C, H, W)``
    (a bootstrap mask / relevancy map) gets the same geometry, no colour change.
    Scaling then cropping is one resampling of the source (bilinear).
    """
    _, _, H, W = image.shape
    scale = float(uniform(gen, 1, *cfg.scale))
    fh, fw = uniform(gen, 2, *cfg.crop).tolist()
    sh, sw = H * scale, W * scale                     # the scaled image, in pixels
    h, w = max(8, round(sh * fh)), max(8, round(sw * fw))  # the crop, in pixels
    oy = float(torch.rand(1, generator=gen)) * max(sh - h, 0.0)
    ox = float(torch.rand(1, generator=gen)) * max(sw - w, 0.0)
    flip = coin(gen, 1, cfg.flip_p)
    jitter = coin(gen, 1, cfg.jitter_p)
    # Crop box in the scaled image -> normalised source coordinates.
    cx = torch.tensor([((ox + w / 2) / sw) * 2 - 1])
    cy = torch.tensor([((oy + h / 2) / sh) * 2 - 1])
    m = crop_matrices(cx, cy, torch.tensor([w / sw]), torch.tensor([h / sh])) @ flip_matrices(flip)
    crop = sample_with_matrices(image, m, (h, w))
    crop = colour_jitter(crop, gen, cfg.jitter, jitter) if cfg.jitter > 0 else crop
    extra_crop = sample_with_matrices(extra, m.clone(), (h, w)) if extra is not None else None
    return crop, extra_crop


# --------------------------------------------------------------------------- CLIP views

@dataclass(frozen=True)
class ViewSettings:
    """CLIP view augmentation (the official code's defaults)."""
    crop: tuple[float, float] = (0.6, 1.0)
    flip_p: float = 0.5
    affine_p: float = 0.8
    degrees: float = 15.0
    translate: float = 0.1
    perspective_p: float = 0.5
    distortion: float = 0.4
    jitter: float = 0.1
    jitter_p: float = 0.7
    grayscale_p: float = 0.15


def view_matrices(n_views: int, gen: torch.Generator, cfg: ViewSettings = ViewSettings(),
                  whole_first: bool = True) -> torch.Tensor:
    """``(n_views, 3, 3)`` sampling matrices: view 0 the whole image (when
    ``whole_first``), the others random crops (sides U(0.6,1)) followed by
    hflip, affine and perspective with their probabilities."""
    n = n_views
    sx, sy = uniform(gen, n, *cfg.crop), uniform(gen, n, *cfg.crop)
    cx = (torch.rand(n, generator=gen) * 2 - 1) * (1 - sx)
    cy = (torch.rand(n, generator=gen) * 2 - 1) * (1 - sy)
    flip = coin(gen, n, cfg.flip_p)
    use_aff = coin(gen, n, cfg.affine_p)
    angle = torch.where(use_aff, uniform(gen, n, -cfg.degrees, cfg.degrees), torch.zeros(n))
    tx = torch.where(use_aff, uniform(gen, n, -cfg.translate, cfg.translate), torch.zeros(n))
    ty = torch.where(use_aff, uniform(gen, n, -cfg.translate, cfg.translate), torch.zeros(n))
    use_persp = coin(gen, n, cfg.perspective_p)
    persp = perspective_matrices(gen, n, cfg.distortion)
    persp = torch.where(use_persp.view(n, 1, 1), persp, torch.eye(3).expand(n, 3, 3))
    m = crop_matrices(cx, cy, sx, sy) @ flip_matrices(flip) @ affine_matrices(angle, tx, ty) @ persp
    if whole_first:
        m[0] = torch.eye(3)
    return m


def clip_views(sources: torch.Tensor, n_views: int, size: int, gen: torch.Generator,
               cfg: ViewSettings = ViewSettings(), whole_first: bool = True) -> torch.Tensor:
    """``n_views`` random square views of each source image, in one warp.

    ``sources`` ``(S, 3, H, W)`` -> ``(S * n_views, 3, size, size)``, grouped
    by source (views of source 0 first). View 0 of each source is the whole
    image, unaugmented (squeezed to a square if it is not one). Each source
    gets its own random views. Differentiable wrt ``sources``.
    """
    s, _, h, w = sources.shape
    # Sources much larger than the views alias under bilinear sampling:
    # pre-shrink (antialiased) so a full-side crop maps to ~2 view pixels per source pixel at most.
    if min(h, w) > 2 * size:
        k = 2 * size / min(h, w)
        sources = F.interpolate(sources, size=(round(h * k), round(w * k)), mode="bilinear",
                                antialias=True, align_corners=False)
    mats = torch.cat([view_matrices(n_views, gen, cfg, whole_first) for _ in range(s)])
    batch = sources.repeat_interleave(n_views, dim=0)
    views = sample_with_matrices(batch, mats, (size, size))
    n = views.shape[0]
    jitter = coin(gen, n, cfg.jitter_p)
    gray = coin(gen, n, cfg.grayscale_p)
    if whole_first:  # the whole view stays clean
        jitter[::n_views] = False
        gray[::n_views] = False
    views = colour_jitter(views, gen, cfg.jitter, jitter) if cfg.jitter > 0 else views
    return random_grayscale(views, gray)
