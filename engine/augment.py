"""Random view warps shared by the methods that show CLIP augmented views
(Text2LIVE's views and training crops, the stylisation's object views,
blended diffusion's guidance views): tensors only, differentiable wrt the
image.

Every view is one 3x3 matrix that maps *output* coordinates to *source*
coordinates, both normalised to [-1, 1]; the pieces (crop, flip, rotation +
translation, perspective) are composed by matrix products and all views are
drawn with a single ``grid_sample`` (:func:`sample_with_matrices`).

What is drawn, with which probabilities and in which order, belongs to each
method (``text2live/augment.py``, ``stylise/views.py``,
``diffusion/common.py``): their random streams differ and are part of their
reproducibility. All randomness comes from the ``torch.Generator`` passed in
(CPU).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

#: The corners of the normalised square, in the order the perspective
#: helpers use: top-left, top-right, bottom-right, bottom-left.
SQUARE = ((-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0))


def uniform(gen: torch.Generator, n: int, lo, hi) -> torch.Tensor:
    """``n`` uniform samples in [lo, hi) (CPU, float32); ``lo``/``hi`` may be
    tensors that broadcast against ``(n,)``."""
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def coin(gen: torch.Generator, n: int, p: float) -> torch.Tensor:
    """``n`` Bernoulli(p) draws as a bool tensor ``(n,)``."""
    return torch.rand(n, generator=gen) < p


# --------------------------------------------------------------------------- matrices

def crop_matrices(cx: torch.Tensor, cy: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    """Sampling matrices ``(N, 3, 3)`` of axis-aligned crops: a crop centred at
    (cx, cy) with half-sizes (sx, sy), all ``(N,)`` in normalised source coordinates."""
    m = torch.zeros(len(cx), 3, 3)
    m[:, 0, 0], m[:, 0, 2] = sx, cx
    m[:, 1, 1], m[:, 1, 2] = sy, cy
    m[:, 2, 2] = 1
    return m


def flip_matrices(flip: torch.Tensor) -> torch.Tensor:
    """``(N, 3, 3)``: horizontal mirror where ``flip`` (bool ``(N,)``) is set."""
    m = torch.eye(3).repeat(len(flip), 1, 1)
    m[:, 0, 0] = torch.where(flip, -1.0, 1.0)
    return m


def affine_matrices(angle_deg: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    """``(N, 3, 3)`` float32: rotation by ``angle_deg`` then translation by
    (tx, ty) fractions of the view size (2·t in normalised units); all ``(N,)``.

    The trigonometry runs in the angles' dtype (pass float64 angles for
    double-precision sines), the matrix is float32.
    """
    a = torch.deg2rad(angle_deg)
    m = torch.eye(3).repeat(len(a), 1, 1)
    m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = torch.cos(a), -torch.sin(a), 2 * tx
    m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = torch.sin(a), torch.cos(a), 2 * ty
    return m


def homography(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """``(N, 3, 3)`` homographies H with H·[src, 1] ∝ [dst, 1] for four point
    pairs: ``src`` and ``dst`` ``(N, 4, 2)`` (either may be ``(4, 2)``, shared
    by all N). The 8x8 direct linear transform with h33 = 1, float32.

    >>> square = torch.tensor([[0., 0.], [1., 0.], [1., 1.], [0., 1.]])
    >>> h = homography(square, square * 2 + 1)    # scale by 2, move by (1, 1)
    >>> torch.allclose(h[0], torch.tensor([[2., 0., 1.], [0., 2., 1.], [0., 0., 1.]]), atol=1e-5)
    True
    """
    n = max(src.shape[0] if src.ndim == 3 else 1, dst.shape[0] if dst.ndim == 3 else 1)
    src, dst = src.float().expand(n, 4, 2), dst.float().expand(n, 4, 2)
    a = torch.zeros(n, 8, 8)
    b = torch.zeros(n, 8)
    for k in range(4):  # two equations per corner correspondence
        x, y = src[:, k, 0], src[:, k, 1]
        u, v = dst[:, k, 0], dst[:, k, 1]
        a[:, 2 * k, 0], a[:, 2 * k, 1], a[:, 2 * k, 2] = x, y, 1
        a[:, 2 * k, 6], a[:, 2 * k, 7] = -u * x, -u * y
        a[:, 2 * k + 1, 3], a[:, 2 * k + 1, 4], a[:, 2 * k + 1, 5] = x, y, 1
        a[:, 2 * k + 1, 6], a[:, 2 * k + 1, 7] = -v * x, -v * y
        b[:, 2 * k], b[:, 2 * k + 1] = u, v
    h = torch.linalg.solve(a, b)
    return torch.cat([h, torch.ones(n, 1)], dim=1).view(n, 3, 3)


def homographies_from_corners(dst: torch.Tensor) -> torch.Tensor:
    """``(N, 3, 3)`` homographies mapping the square's corners (:data:`SQUARE`)
    onto ``dst`` ``(N, 4, 2)``."""
    return homography(torch.tensor(SQUARE), dst)


def inward_corners(pull: torch.Tensor) -> torch.Tensor:
    """The square's corners each moved towards the centre by ``pull``
    ``(N, 4, 2)`` (≥ 0, in units of the half side): ``(N, 4, 2)``."""
    square = torch.tensor(SQUARE)
    return square + (-square.sign()) * pull


def perspective_matrices(gen: torch.Generator, n: int, distortion) -> torch.Tensor:
    """Random perspective warps like torchvision's RandomPerspective: each
    corner moves inward by up to ``distortion`` x half the side (a float, or
    a tensor broadcasting against ``(n, 4, 2)``); the view shows that inner
    quadrilateral stretched to the whole view. ``(n, 3, 3)``."""
    shift = distortion * torch.rand(n, 4, 2, generator=gen)
    return homographies_from_corners(inward_corners(shift))


# --------------------------------------------------------------------------- sampling

def _output_points(h: int, w: int, align_corners: bool, device) -> torch.Tensor:
    """Homogeneous output coordinates ``(1, h·w, 3)`` float32: pixel centres
    (``align_corners=False``) or the outer pixels on ±1 (``True``)."""
    if align_corners:
        ys = torch.linspace(-1, 1, h, device=device)
        xs = torch.linspace(-1, 1, w, device=device)
    else:
        ys = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h * 2 - 1
        xs = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w * 2 - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy, torch.ones_like(gx)], dim=-1).view(1, -1, 3)


def sample_with_matrices(images: torch.Tensor, matrices: torch.Tensor, size: tuple[int, int],
                         mode: str = "bilinear", padding_mode: str = "zeros",
                         align_corners: bool = False) -> torch.Tensor:
    """Warp: output pixel p takes the source at ``matrices @ p`` (normalised coordinates).

    ``images`` ``(N, C, H, W)``, ``matrices`` ``(N, 3, 3)`` -> ``(N, C, h, w)``
    for ``size = (h, w)``. Outside the source reads ``padding_mode``
    ("zeros" = black, as torchvision's fill=0; "border" = the edge pixels).
    The grid is computed in float32 on the images' device, then cast to
    their dtype (fp16 coordinates would blur the warp). Points at or behind
    the warp's horizon (w ≤ 0) read the padding.
    """
    h, w = size
    pts = _output_points(h, w, align_corners, images.device)                # (1, hw, 3)
    src = pts @ matrices.to(images.device, torch.float32).transpose(1, 2)    # (N, hw, 3)
    grid = (src[..., :2] / src[..., 2:3].clamp_min(1e-6)).view(-1, h, w, 2)
    return F.grid_sample(images, grid.to(images.dtype), mode=mode, padding_mode=padding_mode,
                         align_corners=align_corners)
