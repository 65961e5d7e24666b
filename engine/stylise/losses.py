"""Stylisation loss terms as pure functions on tensors.

Embeddings are L2-normalised CLIP vectors. The trainer weights and sums:

    L = λ_global·text_loss(global views, T_global) + λ_local·text_loss(local views, T_local)
        + λ_temporal·triplet_loss(frame embeddings, frame times)
        + λ_sparsity·sparsity_loss(stylised colour, opacity)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..text2live.losses import cosine_distance


def text_loss(view_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
    """``1 − cos(mean view embedding, text)``, averaged over frames.

    ``view_emb`` ``(F, V, D)``: V views of each of F frames; ``text_emb``
    ``(D,)`` or ``(F, D)`` -> scalar. The views are averaged *before* the
    cosine (the paper's "mean embedding"), so one odd view cannot dominate.
    """
    mean = view_emb.mean(dim=1)
    return cosine_distance(mean, text_emb.expand_as(mean)).mean()


def frame_embeddings(view_emb: torch.Tensor) -> torch.Tensor:
    """One unit vector per frame: ``(F, V, D)`` -> ``(F, D)`` (normalised mean of its views)."""
    return F.normalize(view_emb.mean(dim=1), dim=-1)


def temporal_weight(gap: torch.Tensor, sigma: float = 5.0) -> torch.Tensor:
    """Gaussian weight ``exp(−gap² / (2σ²))`` of a frame gap (any shape, frames).

    >>> [round(w, 4) for w in temporal_weight(torch.tensor([0., 5., 10.])).tolist()]
    [1.0, 0.6065, 0.1353]
    """
    return torch.exp(-gap.float() ** 2 / (2 * sigma * sigma))


def triplet_loss(frame_emb: torch.Tensor, times: torch.Tensor, sigma: float = 5.0) -> torch.Tensor:
    """Temporal ordering loss over every triplet ``i < j < k`` of the batch.

    ``frame_emb`` ``(F, D)`` unit vectors of F frames sorted by time,
    ``times`` ``(F,)`` their frame indices (increasing). For a triplet the
    nearer frame j must look more like i than the farther k does:
    ``w(t_k − t_i) · max(0, sim(i, k) − sim(i, j))`` with the Gaussian
    ``w`` (σ frames). Returns the mean over triplets (0 for F < 3).
    """
    n = frame_emb.shape[0]
    if n < 3:
        return frame_emb.sum() * 0.0
    sim = frame_emb @ frame_emb.T
    idx = torch.combinations(torch.arange(n), r=3)        # (T, 3), rows i < j < k
    i, j, k = idx.unbind(1)
    gap = (times[k] - times[i]).to(frame_emb)
    w = temporal_weight(gap, sigma)
    return (w * torch.relu(sim[i, k] - sim[i, j])).mean()


def sparsity_loss(colour: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``‖(1 − α)·c‖²``: mean over pixels of the squared colour norm where the
    object is not (NLA's foreground sparsity).

    ``colour`` ``(N, 3, H, W)`` stylised foreground colour, ``alpha``
    ``(N, 1, H, W)`` the frozen opacity -> scalar. It keeps the stylised
    atlas dark (empty) where frames never show it as object. Squared, as in
    NLA: the unsquared norm pushes with the same force right down to 0 and,
    through the sigmoid, can kill the whole field (measured: one toy run of
    five turned the object black; docs/stylise.md).
    """
    return ((1 - alpha) * colour).pow(2).sum(dim=1).mean()
