"""Text2LIVE loss terms as pure functions on tensors.

Embeddings are L2-normalised CLIP vectors ``(N, D)``. Each function says
what it averages over; the trainer (``trainer.py``) weights and sums them:

    L = λ_comp·(L_clip(I_o, T) + L_dir) + λ_screen·L_clip(I_screen, T_screen)
        + λ_structure·L_structure + L_reg + w_boot(step)·L_bootstrap
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

GREEN_SCREEN = (0.0, 177 / 255, 64 / 255)


def composite(colour: torch.Tensor, alpha: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """Straight-alpha Over in network (sRGB) space: ``α·C + (1−α)·B``.

    ``colour`` ``(N, 3, H, W)``, ``alpha`` ``(N, 1, H, W)``, ``background``
    ``(N, 3, H, W)`` or broadcastable (e.g. a ``(1, 3, 1, 1)`` flat colour).

    >>> red, half = torch.tensor([1., 0., 0.]).view(1, 3, 1, 1), torch.full((1, 1, 1, 1), 0.5)
    >>> composite(red, half, torch.zeros(1, 3, 1, 1)).flatten().tolist()
    [0.5, 0.0, 0.0]
    """
    return alpha * colour + (1 - alpha) * background


def green_screen(colour: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The edit layer over the green screen G = (0, 177/255, 64/255): ``(N, 3, H, W)``."""
    g = torch.tensor(GREEN_SCREEN, dtype=colour.dtype, device=colour.device).view(1, 3, 1, 1)
    return composite(colour, alpha, g)


def spherical_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared great-circle distance (halved) used by Text2LIVE's CLIP losses:
    ``2·arcsin(‖x̂ − ŷ‖ / 2)²``, broadcast over leading dims.

    ``x`` ``(..., D)``, ``y`` ``(..., D)`` -> ``(...)``. Equals θ²/2 for the
    angle θ between the vectors: 0 for equal, π²/8 for orthogonal, π²/2 opposite.

    >>> import math
    >>> x, y = torch.tensor([1., 0.]), torch.tensor([0., 3.])
    >>> round(spherical_distance(x, y).item() / (math.pi ** 2 / 8), 5)
    1.0
    >>> round(spherical_distance(x, -x).item() / (math.pi ** 2 / 2), 5)
    1.0
    """
    x = F.normalize(x, dim=-1)
    y = F.normalize(y, dim=-1)
    return (x - y).norm(dim=-1).div(2).clamp(max=1).arcsin().pow(2).mul(2)


def cosine_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``1 − cos(x, y)``, broadcast over leading dims: ``(..., D)`` -> ``(...)``."""
    return 1 - F.cosine_similarity(x, y, dim=-1)


def clip_text_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, distance: str = "spherical") -> torch.Tensor:
    """Mean CLIP distance between every view and every text embedding.

    ``image_emb`` ``(V, D)`` (the views), ``text_emb`` ``(T, D)`` (templates) -> scalar.
    """
    fn = spherical_distance if distance == "spherical" else cosine_distance
    return fn(image_emb[:, None, :], text_emb[None, :, :]).mean()


def direction_loss(out_emb: torch.Tensor, src_emb: torch.Tensor, text_emb: torch.Tensor,
                   roi_emb: torch.Tensor) -> torch.Tensor:
    """L_dir = 1 − cos(E(I_o) − E(I_s), E(T) − E(T_ROI)), averaged over the output views.

    ``out_emb`` ``(V, D)`` views of the composite; ``src_emb`` ``(V', D)`` views
    of the source (averaged to one direction origin); ``text_emb``/``roi_emb``
    ``(T, D)`` template embeddings (averaged).
    """
    image_dir = out_emb - src_emb.mean(dim=0, keepdim=True)
    text_dir = (text_emb.mean(dim=0) - roi_emb.mean(dim=0))[None]
    return cosine_distance(image_dir, text_dir).mean()


def self_similarity(tokens: torch.Tensor) -> torch.Tensor:
    """Cosine self-similarity of ViT tokens: ``(N, L, C)`` -> ``(N, L, L)`` (CLS included)."""
    t = F.normalize(tokens.float(), dim=-1)
    return t @ t.transpose(1, 2)


def structure_loss(out_tokens: torch.Tensor, src_tokens: torch.Tensor) -> torch.Tensor:
    """MSE between the self-similarity matrices of the composite's and the
    source's tokens ``(N, L, C)``; the source side carries no gradient."""
    return F.mse_loss(self_similarity(out_tokens), self_similarity(src_tokens).detach())


def sparsity_loss(alpha: torch.Tensor, l1: float = 0.01, l0: float = 0.01) -> torch.Tensor:
    """Alpha regulariser before λ_sparsity: ``l1·mean(α) + l0·mean(2·sigmoid(5α) − 1)``.

    The second term is a soft L0 (≈ 1 for any α ≫ 0.2, 0 at α = 0): it pushes
    small alphas to exactly zero. ``alpha`` any shape in [0,1] -> scalar.
    """
    return l1 * alpha.mean() + l0 * (2 * torch.sigmoid(5 * alpha) - 1).mean()


def bootstrap_weight(step: int, weight: float, steps: int) -> float:
    """Bootstrap weight at ``step`` (0-based): ``weight`` annealed linearly to 0 at ``steps``.

    >>> [bootstrap_weight(s, 2.0, 4) for s in range(5)]
    [2.0, 1.5, 1.0, 0.5, 0.0]
    """
    if steps <= 0:
        return 0.0
    return weight * max(0.0, 1.0 - step / steps)


def bootstrap_loss(alpha: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE of the alpha matte against the bootstrap target (relevancy map or a
    user mask), SUMMED over the samples of the batch.

    ``alpha`` ``(N, 1, h, w)`` is resized (bilinear) to ``target``'s size
    ``(N, 1, H, W)``. (The official code overwrote the loss in its per-sample
    loop, so only the last sample counted; summing is what it meant.)
    """
    if alpha.shape[-2:] != target.shape[-2:]:
        alpha = F.interpolate(alpha, size=target.shape[-2:], mode="bilinear", align_corners=False)
    per_sample = ((alpha - target.to(alpha)) ** 2).flatten(1).mean(dim=1)
    return per_sample.sum()
