"""Editors for ``learn_regions``: callables editor(image, mask) -> edited image.

- ``diffusion_editor``: blended diffusion (pixel or latent) through
  ``engine.diffusion.edit_region``; the top-ranked sample is the edit.
- ``recolour_editor``: a cheap, deterministic, real edit for tests and quick
  demos on toy-world pictures: the box is repainted in the prompt's colour
  word, keeping each pixel's brightness (so shapes and textures stay
  visible). A box that covers the named object exactly gives the best
  "<colour> <shape>" picture; smaller boxes leave old colour, larger ones
  paint the background too.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..errors import InputError

# sRGB luma weights (Rec. 601), enough to keep shading when recolouring
_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


def colour_in_prompt(prompt: str, colours: dict[str, tuple[float, float, float]] | None = None,
                     node: str = "recolour_editor") -> tuple[str, tuple[float, float, float]]:
    """The first colour word of ``prompt`` (toy-world COLOURS by default)."""
    if colours is None:
        from ..toyworld.scenes import COLOURS as colours
    for word in prompt.lower().replace(",", " ").replace(".", " ").split():
        if word in colours:
            return word, colours[word]
    raise InputError(node, "prompt", f"{prompt!r} names no colour", ", ".join(colours))


def recolour_editor(prompt: str, strength: float = 1.0) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Editor that repaints the mask in the prompt's colour.

    image (1, 3, H, W) [0,1], mask (1, 1, H, W) -> (1, 3, H, W): inside the
    mask, colour · (0.45 + 0.9 · luma(pixel)), blended by ``strength``.
    """
    _, rgb = colour_in_prompt(prompt)
    colour = torch.tensor(rgb).view(1, 3, 1, 1)

    def edit(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        luma = (image * _LUMA.to(image)).sum(1, keepdim=True)
        painted = (colour.to(image) * (0.45 + 0.9 * luma)).clamp(0, 1)
        m = mask.to(image) * strength
        return image * (1 - m) + painted * m

    return edit


def diffusion_editor(handle, clip, prompt: str, *, steps: int | None = None, start: float = 0.25,
                     samples: int = 2, views: int = 4, seed: int = 0, guidance: float | None = None,
                     progress=None, **options) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Editor that runs blended diffusion (``edit_region``) in the mask and
    returns its best-ranked sample. Every call uses the same ``seed``, so
    box proposals are compared on equal terms. ``progress`` goes to each
    ``edit_region`` call (e.g. a quiet reporter, so that the caller's bar
    is not mixed with the diffusion steps)."""
    from ..diffusion import edit_region

    def edit(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        result = edit_region(handle, clip, image, mask, prompt, steps=steps, start=start,
                             samples=samples, views=views, seed=seed, guidance=guidance,
                             progress=progress, **options)
        return result.images[:1].to(image)

    return edit
