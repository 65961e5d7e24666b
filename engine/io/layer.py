"""The linear-light edit layer (docs/exr.md).

The network composites in sRGB space: ``I_o = a*C + (1-a)*I_s``. A compositor
composites in linear light: ``out = P + (1-a)*lin(I_s)``. Choosing

    P = lin(I_o) - (1-a) * lin(I_s)

makes the compositor's Over reproduce ``lin(I_o)`` exactly. Linearising C
alone (``a*lin(C)``) would not: the sRGB curve is not linear, so the two blends
differ wherever 0 < a < 1.

Because the curve is convex, P goes negative for a dark, semi-transparent
edit over a bright plate. The default keeps those values (half floats hold
them and the Over stays exact). ``keep_nonnegative=True`` instead raises the
alpha, per pixel, to the smallest a' >= a with P >= 0 in every channel; the
Over with a' still gives lin(I_o) exactly, the layer's alpha is just larger.
"""
from __future__ import annotations

import torch

from .colour import to_linear


def over(colour: torch.Tensor, alpha: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """Straight-alpha Over: ``alpha*colour + (1-alpha)*background``.

    colour (N,3,H,W), alpha (N,1,H,W), background (N,3,H,W); batch 1 broadcasts.
    """
    return alpha * colour + (1 - alpha) * background


def linear_premultiplied_layer(colour: torch.Tensor, alpha: torch.Tensor, source: torch.Tensor | None,
                               colourspace: str = "lin_rec709",
                               keep_nonnegative: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Edit layer (network space, straight) -> premultiplied scene-linear layer.

    Args:
        colour: (N,3,H,W) straight edit colour, network space.
        alpha: (N,1,H,W) edit alpha in [0,1].
        source: (N,3,H,W) the plate the edit was composited over (network
            space), or None: then P = alpha*lin(colour) (no exact Over;
            callers record ``livelayers/edit_solve`` = "alpha_times_linear_colour").
        colourspace: the scene-linear space of P.
        keep_nonnegative: raise alpha minimally so that P >= 0.

    Returns:
        (P (N,3,H,W) premultiplied scene-linear, alpha (N,1,H,W)); alpha is
        the input alpha unless keep_nonnegative raised it.
    """
    _check_shapes(colour, alpha, source)
    if source is None:
        return alpha * to_linear(colour, colourspace), alpha
    composite = over(colour, alpha, source)
    lin_out = to_linear(composite, colourspace)
    lin_src = to_linear(source, colourspace)
    if keep_nonnegative:
        alpha = _minimal_alpha(alpha, lin_out, lin_src)
    return lin_out - (1 - alpha) * lin_src, alpha


def _minimal_alpha(alpha: torch.Tensor, lin_out: torch.Tensor, lin_src: torch.Tensor) -> torch.Tensor:
    """Smallest a' >= a with lin_out - (1-a')*lin_src >= 0 in all channels.

    Per channel with lin_src > 0 the bound is 1-a' <= lin_out/lin_src; take the
    tightest channel. (Channels with lin_src <= 0 give no bound when lin_out >= 0.)
    """
    ratio = torch.where(lin_src > 0, lin_out.clamp(min=0) / lin_src.clamp(min=1e-12),
                        torch.full_like(lin_src, float("inf")))
    bound = 1 - ratio.amin(dim=1, keepdim=True)  # alpha needed by the tightest channel
    return torch.maximum(alpha, bound.clamp(max=1.0))


def _check_shapes(colour, alpha, source) -> None:
    if colour.ndim != 4 or colour.shape[1] != 3:
        raise ValueError(f"colour has shape {tuple(colour.shape)}; allowed: (N,3,H,W)")
    if alpha.ndim != 4 or alpha.shape[1] != 1 or alpha.shape[-2:] != colour.shape[-2:]:
        raise ValueError(f"alpha has shape {tuple(alpha.shape)}; allowed: (N,1,H,W) with the "
                         f"colour's size {tuple(colour.shape[-2:])}")
    if source is not None and (source.ndim != 4 or source.shape[1] != 3
                               or source.shape[-2:] != colour.shape[-2:]):
        raise ValueError(f"source has shape {tuple(source.shape)}; allowed: (N,3,H,W) with the "
                         f"colour's size {tuple(colour.shape[-2:])}")
