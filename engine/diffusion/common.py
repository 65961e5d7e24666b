"""Pieces both blended-diffusion variants share: input checks, the result
type, seeded noise, CLIP views and distances, feathered background paste.

Tensors follow the engine convention: images (N, 3, H, W) in [0, 1] sRGB,
masks (N, 1, H, W) in [0, 1] with 1 = edit here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..augment import SQUARE, affine_matrices, homography, inward_corners, sample_with_matrices
from ..errors import InputError


@dataclass
class EditResult:
    """What an edit returns.

    images:      (S, 3, H, W) [0,1], the S samples, best first.
    scores:      (S,) CLIP cosine similarity of each sample's masked image to the
                 prompt (higher is better; the ranking key). NaN when no CLIP
                 was given (latent variant), then samples keep their seed order.
    layer_rgb:   (1, 3, H, W) straight colour of the best sample.
    layer_alpha: (1, 1, H, W) the (feathered) mask: composite =
                 layer_rgb * alpha + image * (1 - alpha) = images[0] (pixel paste).
    seeds:       the seed of each returned sample, in the returned order.
    """
    images: torch.Tensor
    scores: torch.Tensor
    layer_rgb: torch.Tensor
    layer_alpha: torch.Tensor
    seeds: list[int]


def check_inputs(node: str, image: torch.Tensor, mask: torch.Tensor, multiple: int,
                 base: int | None = None) -> None:
    """Raise ``InputError`` for inputs an edit cannot take (nothing is resized).

    image (1, 3, H, W) in [0,1]; mask (1, 1, H, W) in [0,1], not empty.
    Sides must be multiples of ``multiple`` and, when ``base`` is given (pixel
    models), multiples of the model's sample size ``base``.
    """
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[:2] != (1, 3):
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise InputError(node, "image", f"has shape {shape}", "one RGB image, (1, 3, H, W)")
    h, w = image.shape[-2:]
    if not isinstance(mask, torch.Tensor) or mask.ndim != 4 or mask.shape[:2] != (1, 1):
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise InputError(node, "mask", f"has shape {shape}", "one mask, (1, 1, H, W)")
    if tuple(mask.shape[-2:]) != (h, w):
        raise InputError(node, "mask", f"is {mask.shape[-1]}x{mask.shape[-2]} pixels",
                         f"the image's size, {w}x{h} (nothing is resized silently)")
    if float(image.min()) < 0 or float(image.max()) > 1:
        raise InputError(node, "image", "has values outside [0, 1]", "an sRGB image in [0, 1]")
    if float(mask.min()) < 0 or float(mask.max()) > 1:
        raise InputError(node, "mask", "has values outside [0, 1]", "a mask in [0, 1]")
    if float(mask.max()) <= 0:
        raise InputError(node, "mask", "is empty (all zero)",
                         "a mask with the region to edit set to 1")
    step = base if base else multiple
    if h % step or w % step or (base and multiple and (h % multiple or w % multiple)):
        what = (f"multiples of the model's sample size {base} px (the UNet is convolutional, "
                f"so 1x, 2x, ... its training size)" if base
                else f"multiples of {multiple} px (VAE x UNet downsampling)")
        raise InputError(node, "image", f"is {w}x{h} pixels", f"both sides {what}; "
                         "resize or crop it first, nothing is resized silently")


def check_settings(node: str, steps: int, start: float, samples: int) -> None:
    if not isinstance(steps, int) or steps < 1:
        raise InputError(node, "steps", f"is {steps!r}", "an integer >= 1")
    if not (0.0 <= start < 1.0):
        raise InputError(node, "start", f"is {start!r}",
                         "a fraction in [0, 1): the share of the schedule skipped (0.25 = skip 25 %)")
    if int(steps * (1 - start)) < 1:
        raise InputError(node, "start", f"leaves no step to run with {steps} steps",
                         "a smaller start fraction or more steps")
    if not isinstance(samples, int) or samples < 1:
        raise InputError(node, "samples", f"is {samples!r}", "an integer >= 1")


def seeded_noise(shape: tuple[int, ...], seeds: list[int], device, dtype=torch.float32,
                 gens: list[torch.Generator] | None = None) -> torch.Tensor:
    """(len(seeds), *shape) standard normal noise, sample i drawn from its own
    generator, so sample i is the same whether it runs alone or in a batch."""
    gens = gens or [torch.Generator().manual_seed(int(s)) for s in seeds]
    return torch.stack([torch.randn(shape, generator=g) for g in gens]).to(device, dtype)


def generators(seeds: list[int]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(int(s)) for s in seeds]


# ------------------------------------------------------------------ CLIP

def masked_for_clip(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Grey out everything outside the mask: (N, 3, H, W) [0,1], (1|N, 1, H, W) → (N, 3, H, W).

    Grey 0.5 is 0 in the diffusion model's [-1, 1] space (the reference masks
    with 0 there), so CLIP judges only the edited region.
    """
    return x * mask + 0.5 * (1 - mask)


def view_homographies(n: int, gen: torch.Generator, degrees=15.0, translate=0.1, affine_p=0.7,
                      distortion=0.7, perspective_p=0.7) -> torch.Tensor:
    """(n, 3, 3) random maps from output to input coordinates in [-1, 1]²:
    a rotation (±degrees) + translation (±translate of the size) with
    probability affine_p, then a perspective warp with probability
    perspective_p that squeezes the whole image into a quadrilateral whose
    corners are pulled inwards by up to ``distortion`` of the half-size (the
    inverse of torchvision's RandomPerspective, which crops that quadrilateral).

    The draws are blended diffusion's own, view by view: 8 uniforms, then 8
    more for the corners when the view gets a perspective warp.
    """
    angle, shift, use_aff, pulls = torch.zeros(n, dtype=torch.float64), torch.zeros(n, 2), [], []
    for i in range(n):
        u = torch.rand(8, generator=gen)
        use_aff.append(bool(u[0] < affine_p))
        if use_aff[-1]:
            angle[i] = (u[1].item() * 2 - 1) * degrees  # double-precision trigonometry, as drawn
            shift[i] = (u[2:4] * 2 - 1) * translate
        pulls.append(torch.rand(4, 2, generator=gen) * distortion if u[4] < perspective_p else None)
    m = affine_matrices(angle, shift[:, 0], shift[:, 1])
    m[~torch.tensor(use_aff, dtype=torch.bool)] = torch.eye(3)
    warped = [i for i, p in enumerate(pulls) if p is not None]
    if warped:
        corners = inward_corners(torch.stack([pulls[i] for i in warped]))
        m[warped] = m[warped] @ homography(corners, torch.tensor(SQUARE))
    return m


def augment_views(x: torch.Tensor, views: int, gen: torch.Generator) -> torch.Tensor:
    """CLIP views of a batch: (S, 3, H, W) → (views·S, 3, H, W), view-major.

    View 0 is the clean image; views 1.. each warp all S images with one random
    homography (``view_homographies``), border padding, corner-aligned grid,
    one batched ``grid_sample`` (differentiable wrt x).
    """
    if views <= 1:
        return x
    s, _, h, w = x.shape
    hom = view_homographies(views - 1, gen).repeat_interleave(s, dim=0)  # ((V-1)·S, 3, 3)
    warped = sample_with_matrices(x.repeat(views - 1, 1, 1, 1), hom, (h, w),
                                  padding_mode="border", align_corners=True)
    return torch.cat([x, warped])


def clip_similarity(clip, images: torch.Tensor, mask: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
    """Unaugmented masked CLIP cosine similarity: (S, 3, H, W) [0,1] → (S,), no grad."""
    with torch.no_grad():
        emb = clip.encode_image(masked_for_clip(images, mask.to(images)))
    return (emb @ text_emb.to(emb).T)[:, 0].float().cpu()


# ------------------------------------------------------------------ paste

def feather_alpha(mask: torch.Tensor, radius: float) -> torch.Tensor:
    """Feathered alpha that stays inside the mask: (1, 1, H, W) → (1, 1, H, W).

    alpha = mask · min(1, d / (radius + 1)), d = Euclidean distance (px) from a
    pixel inside the mask to the nearest pixel outside it (OpenCV distance
    transform). Pixels outside the mask (mask = 0) keep alpha = 0, so the
    background stays bit-exact; radius 0 gives alpha = mask.
    """
    if radius < 0:
        raise ValueError(f"feather radius must be >= 0, got {radius}")
    if radius == 0:
        return mask.clone()
    import cv2
    inside = (mask[0, 0] > 0).cpu().numpy().astype(np.uint8)
    d = cv2.distanceTransform(inside, cv2.DIST_L2, 5)
    ramp = torch.from_numpy(np.minimum(1.0, d / (radius + 1.0))).to(mask)
    return mask * ramp[None, None]


def paste(generated: torch.Tensor, image: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """generated·alpha + image·(1−alpha), exact where alpha == 0:
    (S, 3, H, W), (1, 3, H, W), (1, 1, H, W) → (S, 3, H, W)."""
    out = generated * alpha + image * (1 - alpha)
    # a*0 + b*1 is exact in float, but be explicit: outside pixels are the input's bits
    return torch.where(alpha == 0, image.expand_as(out), out)


def rank_order(scores: torch.Tensor) -> torch.Tensor:
    """Indices that sort samples best first (descending score; all-NaN keeps seed order)."""
    if torch.isnan(scores).all():
        return torch.arange(len(scores))
    return torch.argsort(scores, descending=True, stable=True)


def make_result(images: torch.Tensor, colour: torch.Tensor, scores: torch.Tensor,
                alpha: torch.Tensor, seeds: list[int]) -> EditResult:
    """Rank and package: images (S,3,H,W) final, colour (S,3,H,W) the straight
    layer colour of each sample (the generated pixels), scores (S,), alpha (1,1,H,W)."""
    order = rank_order(scores)
    return EditResult(images=images[order].cpu(), scores=scores[order],
                      layer_rgb=colour[order[:1]].detach().cpu().clone(),
                      layer_alpha=alpha.detach().cpu(), seeds=[seeds[i] for i in order.tolist()])
