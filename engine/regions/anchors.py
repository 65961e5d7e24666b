"""Anchor points: where DINO's CLS token looks.

The last block's CLS-to-patch attention, averaged over heads, peaks on the
salient objects of an image. We take its top-K peaks with non-maximum
suppression, so that the K anchors spread over different places instead of
crowding the single strongest object.
"""
from __future__ import annotations

import torch


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
