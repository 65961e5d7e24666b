"""CLIP views of a stylised object crop.

Per frame crop the trainer takes

* ``n_global`` views covering most of the crop (area fraction U(0.9, 1)),
* ``n_local`` views of small parts (area U(0.1, 0.5)), each redrawn until at
  least a third of it is object (mean opacity in the view),

all with aspect (width / height) in [0.8, 1.2], squashed to CLIP's square
input, then a random perspective warp (p = .5, corners moved inward by
U(.1, .5) of the half side) and, for half of them, the background replaced
by black (the object alone).

Geometry uses the shared warps (``engine/augment.py``): every view is
one 3x3 matrix mapping view coordinates to crop coordinates (normalised,
``align_corners=False``) and all views of a crop are drawn with one
``grid_sample``, differentiably. Randomness comes only from the generator
passed in.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..augment import coin, crop_matrices, perspective_matrices, sample_with_matrices, uniform


def resized_crop_matrices(gen: torch.Generator, n: int, scale: tuple[float, float],
                          aspect: tuple[float, float], height: int, width: int) -> torch.Tensor:
    """``(n, 3, 3)`` random crops of an ``height × width`` image, as
    torchvision's RandomResizedCrop draws them: area fraction U(scale), aspect
    log-uniform in ``aspect``; a crop larger than the image in one direction is
    clipped to it; the position is uniform over where the crop fits."""
    area = uniform(gen, n, *scale) * height * width
    ratio = torch.exp(uniform(gen, n, math.log(aspect[0]), math.log(aspect[1])))
    cw = torch.sqrt(area * ratio).clamp(max=width)
    ch = torch.sqrt(area / ratio).clamp(max=height)
    sx, sy = cw / width, ch / height                 # half sizes in normalised units
    cx = (torch.rand(n, generator=gen) * 2 - 1) * (1 - sx)
    cy = (torch.rand(n, generator=gen) * 2 - 1) * (1 - sy)
    return crop_matrices(cx, cy, sx, sy)


def object_fraction(alpha: torch.Tensor, matrices: torch.Tensor, size: int = 16) -> torch.Tensor:
    """Mean opacity inside each view: ``alpha`` ``(1, 1, h, w)``, ``matrices``
    ``(n, 3, 3)`` -> ``(n,)`` (on a ``size²`` sample grid: only a count)."""
    a = sample_with_matrices(alpha.expand(matrices.shape[0], -1, -1, -1), matrices, (size, size))
    return a.mean(dim=(1, 2, 3)).cpu()


def local_matrices(gen: torch.Generator, n: int, alpha: torch.Tensor, scale: tuple[float, float],
                   aspect: tuple[float, float], min_object: float, tries: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` local crops of the crop whose opacity is ``alpha`` ``(1, 1, h, w)``.

    Each view is the first of ``tries`` candidates with mean opacity ≥
    ``min_object`` (the paper resamples until one is); when none is, the
    candidate with the most object. Returns matrices ``(n, 3, 3)`` and their
    object fractions ``(n,)``. All candidates are drawn at once, so the
    generator advances by the same amount whatever the outcome.
    """
    h, w = alpha.shape[-2:]
    cand = resized_crop_matrices(gen, n * tries, scale, aspect, h, w)
    frac = object_fraction(alpha, cand).view(n, tries)
    ok = frac >= min_object
    pick = torch.where(ok.any(dim=1), ok.float().argmax(dim=1), frac.argmax(dim=1))
    rows = torch.arange(n)
    return cand.view(n, tries, 3, 3)[rows, pick], frac[rows, pick]


def with_perspective(gen: torch.Generator, matrices: torch.Tensor, p: float,
                     distortion: tuple[float, float]) -> torch.Tensor:
    """Follow each view by a random perspective warp with probability ``p``
    (distortion U(distortion) per view): ``(n, 3, 3)`` -> ``(n, 3, 3)``."""
    n = matrices.shape[0]
    use = coin(gen, n, p)
    strength = uniform(gen, n, *distortion).view(n, 1, 1)
    persp = perspective_matrices(gen, n, strength)   # per-view strength broadcasts
    persp = torch.where(use.view(n, 1, 1), persp, torch.eye(3).expand(n, 3, 3))
    return matrices @ persp


def render_views(object_part: torch.Tensor, background_part: torch.Tensor, matrices: torch.Tensor,
                 remove_background: torch.Tensor, size: int) -> torch.Tensor:
    """Draw the views of one crop.

    ``object_part`` ``(1, 3, h, w)`` = α·c (premultiplied stylised object),
    ``background_part`` ``(1, 3, h, w)`` = (1 − α)·background, so the crop is
    their sum; ``matrices`` ``(n, 3, 3)``; ``remove_background`` bool ``(n,)``:
    those views show the object over black. Returns ``(n, 3, size, size)``,
    differentiable wrt ``object_part``.
    """
    src = torch.cat([object_part, background_part], dim=1)
    h, w = src.shape[-2:]
    if min(h, w) > 2 * size:  # bilinear sampling aliases far below the source size
        k = 2 * size / min(h, w)
        src = F.interpolate(src, size=(round(h * k), round(w * k)), mode="bilinear",
                            antialias=True, align_corners=False)
    n = matrices.shape[0]
    out = sample_with_matrices(src.expand(n, -1, -1, -1), matrices, (size, size))
    keep = (~remove_background).to(out).view(n, 1, 1, 1)
    return out[:, :3] + keep * out[:, 3:]


def sample_views(gen: torch.Generator, object_part: torch.Tensor, background_part: torch.Tensor,
                 alpha: torch.Tensor, n_global: int, n_local: int, size: int, s) -> torch.Tensor:
    """The global then the local views of one crop, augmented:
    ``(n_global + n_local, 3, size, size)``. ``s``: ``StyliseSettings``."""
    h, w = alpha.shape[-2:]
    mats = []
    if n_global:
        mats.append(resized_crop_matrices(gen, n_global, s.global_scale, s.aspect, h, w))
    if n_local:
        mats.append(local_matrices(gen, n_local, alpha, s.local_scale, s.aspect, s.min_object,
                                   s.local_tries)[0])
    m = with_perspective(gen, torch.cat(mats), s.perspective_p, s.distortion)
    remove = coin(gen, m.shape[0], s.bg_removal_p)
    return render_views(object_part, background_part, m, remove, size)
