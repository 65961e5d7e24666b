"""The NLA objective as small functions on batches of points.

Shapes: B points; uv, xy ``(B, 2)``; rgb ``(B, 3)``; alpha ``(B, 1)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def rgb_loss(rgb: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over pixels and channels (PSNR = −10·log10 of it)."""
    return ((rgb - target) ** 2).mean()


def sparsity_loss(rgb_fg: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """‖c_fg · (1 − α)‖²: the foreground atlas stays black where it is not seen."""
    return ((rgb_fg * (1 - alpha)) ** 2).sum(1).mean()


def bootstrap_loss(alpha: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BCE of the opacity against a given foreground mask."""
    return F.binary_cross_entropy(alpha, mask)


def soft_bootstrap_loss(alpha: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """BCE of the opacity against a soft target ``(B, 1)`` in [0, 1], each
    pixel weighted by ``weight (B, 1)`` (how sure the target is); mean over B."""
    return (weight * F.binary_cross_entropy(alpha, target, reduction="none")).mean()


def gradient_loss(rgb: torch.Tensor, rgb_dx: torch.Tensor, rgb_dy: torch.Tensor,
                  target: torch.Tensor, target_dx: torch.Tensor, target_dy: torch.Tensor) -> torch.Tensor:
    """Match the reconstruction's finite differences to the frame's.
    ``*_dx`` / ``*_dy`` are the values at the horizontal / vertical neighbour."""
    d_rec_x, d_rec_y = rgb_dx - rgb, rgb_dy - rgb
    d_gt_x, d_gt_y = target_dx - target, target_dy - target
    return (((d_rec_x - d_gt_x) ** 2).sum(1) + ((d_rec_y - d_gt_y) ** 2).sum(1)).mean()


def flow_loss(uv: torch.Tensor, uv_next: torch.Tensor, weight: torch.Tensor,
              pixels_per_uv: float) -> torch.Tensor:
    """A point and its flow-correspondence must map to the same atlas point:
    ``weight · ‖uv − uv_next‖`` in frame pixels (``weight`` (B,1): α for the
    foreground, 1 − α for the background)."""
    if uv.shape[0] == 0:
        return uv.sum() * 0
    return (weight[:, 0] * (uv_next - uv).norm(dim=1)).mean() * pixels_per_uv


def alpha_flow_loss(alpha: torch.Tensor, alpha_next: torch.Tensor) -> torch.Tensor:
    """Opacity is carried along the flow: ``|α − α_next|``."""
    if alpha.shape[0] == 0:
        return alpha.sum() * 0
    return (alpha_next - alpha).abs().mean()


def rigidity_loss(uv: torch.Tensor, uv_dx: torch.Tensor, uv_dy: torch.Tensor, step: float,
                  uv_scale: float) -> torch.Tensor:
    """Symmetric Dirichlet energy of the mapping's finite-difference Jacobian.

    J = [uv_dx − uv, uv_dy − uv] / step, divided by ``uv_scale`` so that the
    expected mapping (0.8 · a rotation) costs 0:
    E = ‖J‖² + ‖J⁻¹‖² − 4 = ‖J‖² (1 + 1/det²) − 4 (for 2×2 matrices).
    """
    ju = (uv_dx - uv) / (step * uv_scale)
    jv = (uv_dy - uv) / (step * uv_scale)
    frob = (ju ** 2).sum(1) + (jv ** 2).sum(1)
    det = ju[:, 0] * jv[:, 1] - ju[:, 1] * jv[:, 0]
    return (frob * (1 + 1 / (det ** 2 + 1e-3)) - 4).mean()


def psnr(mse: float) -> float:
    return float(-10.0 * torch.log10(torch.tensor(max(mse, 1e-12))))
