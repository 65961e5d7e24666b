"""Anchor points: where DINO's CLS token looks.

The last block's CLS-to-patch attention, averaged over heads, peaks on the
salient objects of an image. We take its top-K peaks with non-maximum
suppression, so that the K anchors spread over different places instead of
crowding the single strongest object.

DINO looks at the image at its own working size (the size its position
embeddings were trained at: 64 px for the toy DINO, 224 for ViT-B/8),
whatever the editor's size: a 32 px picture seen at 32 px is a 4 x 4 patch
grid, on which the toy DINO's attention sits in the corners. Only DINO's
copy is resized (``dino_view``); the anchors and the feature grid are mapped
back to the input's pixels per axis (the view covers the whole image).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def saliency_map(attention: torch.Tensor) -> torch.Tensor:
    """CLS attention per head (N, heads, h, w) -> mean over heads (N, h, w)."""
    return attention.mean(dim=1)


def top_k_peaks(saliency: torch.Tensor, k: int, radius: int = 1) -> torch.Tensor:
    """Greedy non-maximum suppression on one map.

    saliency (h, w) -> (k', 2) integer (row, col) of the peaks, strongest
    first; after each pick, every cell within Chebyshev distance ``radius``
    is suppressed. k' < k only when the map runs out of cells.
    """
    h, w = saliency.shape
    s = saliency.detach().clone().float()
    rows = torch.arange(h).view(h, 1)
    cols = torch.arange(w).view(1, w)
    peaks = []
    for _ in range(k):
        flat = int(torch.argmax(s))
        if s.view(-1)[flat] == float("-inf"):
            break
        r, c = divmod(flat, w)
        peaks.append((r, c))
        near = ((rows - r).abs() <= radius) & ((cols - c).abs() <= radius)
        s[near] = float("-inf")
    return torch.tensor(peaks, dtype=torch.long).view(-1, 2)


def anchors_from_attention(attention: torch.Tensor, image_hw: tuple[int, int], k: int,
                           radius: int = 1) -> torch.Tensor:
    """Top-K anchor points in image pixels.

    attention (1, heads, h, w) -> (K, 2) float (x, y): the centres of the
    chosen patches, scaled from the h x w grid to the H x W image.
    """
    H, W = image_hw
    sal = saliency_map(attention)[0]
    h, w = sal.shape
    peaks = top_k_peaks(sal, k, radius)
    x = (peaks[:, 1].float() + 0.5) * W / w
    y = (peaks[:, 0].float() + 0.5) * H / h
    return torch.stack([x, y], dim=1)


def dino_view(image: torch.Tensor, patch: int, size: int | str | None) -> torch.Tensor:
    """The copy of ``image`` DINO sees: (1, 3, H, W) -> (1, 3, h·p, w·p).

    ``size``: an int resizes the shorter side to ``size`` (each side then
    rounded to whole patches, aspect kept); ``"image"`` keeps the image
    when both sides are multiples of the patch and otherwise rounds each
    side down to one. (``None`` is ``"image"`` here; ``dino_anchors`` turns
    None into DINO's working size.) Bilinear with antialiasing.
    """
    H, W = image.shape[-2:]
    if size is None or size == "image":
        h, w = max(patch, H // patch * patch), max(patch, W // patch * patch)
    else:
        s = int(size) / min(H, W)
        h, w = (max(patch, round(H * s / patch) * patch), max(patch, round(W * s / patch) * patch))
    if (h, w) == (H, W):
        return image
    return F.interpolate(image, size=(h, w), mode="bilinear", align_corners=False, antialias=True)


@dataclass
class DinoAnchors:
    """What DINO tells Learnable Regions about one image (H, W = the input's size)."""
    anchors: torch.Tensor      # (K, 2) (x, y) in input pixels, strongest first
    feature_map: torch.Tensor  # (1, C, h, w) patch features, covering the whole image
    saliency: torch.Tensor     # (h, w) CLS attention, mean over heads
    view_hw: tuple[int, int]   # the size DINO saw


@torch.no_grad()
def dino_anchors(dino, image: torch.Tensor, k: int, radius: int = 1,
                 size: int | str | None = None, node: str = "LL_LearnableRegions") -> DinoAnchors:
    """Top-K anchors of ``image`` (1, 3, H, W) [0,1] from a DINO handle.

    ``size`` None = DINO's working size (``dino.image_size``); an int or
    ``"image"`` as in ``dino_view``. Features and attention come back on the
    CPU in float32.
    """
    H, W = image.shape[-2:]
    size = dino.image_size if size is None else size
    view = dino_view(image.to(dino.device).float(), dino.patch_size, size)
    out = dino(view, node=node)
    attention = out.attention.float().cpu()
    return DinoAnchors(anchors=anchors_from_attention(attention, (H, W), k, radius),
                       feature_map=out.feature_map().float().cpu(),
                       saliency=saliency_map(attention)[0], view_hw=tuple(view.shape[-2:]))
