"""Editors for ``learn_regions``: callables editor(image, mask) -> edited image.

- ``diffusion_editor``: blended diffusion (pixel or latent) through
  ``engine.diffusion.edit_region``; the top-ranked sample is the edit.
- ``recolour_editor``: a cheap, deterministic, real edit for tests and quick
  demos: the box is repainted in the prompt's colour word (looked up in the
  caller's ``colours`` table, e.g. ``toyworld.scenes.COLOURS`` for toy-world
  pictures), keeping each pixel's brightness (so shapes and textures stay
  visible). ``region="box"`` paints the whole box (smaller boxes leave old
  colour, larger ones paint the background too); ``region="foreground"``
  paints only what stands out from the box's surroundings, the way an
  inpainting editor redraws the object in the box and keeps the
  background: a box that holds the whole object recolours all of it, one
  that cuts it leaves part of it (the cut part is on the box's border,
  so it looks like surroundings).
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch

from ..errors import InputError
from ..progress import Progress

# sRGB luma weights (Rec. 601), enough to keep shading when recolouring
_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


def colour_in_prompt(prompt: str, colours: Mapping[str, tuple[float, float, float]],
                     node: str = "recolour_editor") -> tuple[str, tuple[float, float, float]]:
    """The first word of ``prompt`` that names a colour of ``colours`` (name ->
    sRGB in [0, 1]), with its value. The table is the caller's: the engine
    knows no palette, and a repaint must match the world the pictures come from."""
    if not isinstance(colours, Mapping) or not colours:
        raise InputError(node, "colours", f"is {colours!r}", "a non-empty mapping colour name -> (r, g, b)")
    for word in prompt.lower().replace(",", " ").replace(".", " ").split():
        if word in colours:
            return word, colours[word]
    raise InputError(node, "prompt", f"{prompt!r} names no colour", ", ".join(colours))


RECOLOUR_REGIONS = ("box", "foreground")


def _mask_box(mask: torch.Tensor) -> tuple[int, int, int, int] | None:
    """Bounding box (x0, y0, x1, y1), x1/y1 exclusive, of mask > 0.5 (1, 1, H, W); None if empty."""
    ys, xs = torch.nonzero(mask[0, 0] > 0.5, as_tuple=True)
    if ys.numel() == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def surroundings(image: torch.Tensor, box: tuple[int, int, int, int], samples: int = 96,
                 typical: float = 0.5) -> torch.Tensor:
    """Colours just outside a box: image (1, 3, H, W), box (x0, y0, x1, y1) ->
    (R, 3), R <= ``samples``.

    The one-pixel ring around the box (inside the image). Colours farther
    than ``typical`` from the ring's median are dropped when they are a
    minority: a box that clips an object's corner then still reads the
    background as its surroundings.
    """
    H, W = image.shape[-2:]
    x0, y0, x1, y1 = box
    xa, ya, xb, yb = max(x0 - 1, 0), max(y0 - 1, 0), min(x1 + 1, W), min(y1 + 1, H)
    patch = image[0, :, ya:yb, xa:xb]
    edge = torch.zeros(patch.shape[-2:], dtype=torch.bool)
    edge[0, :] = edge[-1, :] = True
    edge[:, 0] = edge[:, -1] = True
    ring = patch[:, edge].T                                                  # (R0, 3)
    keep = (ring - ring.median(0).values).norm(dim=1) < typical
    if keep.float().mean() > 0.5:
        ring = ring[keep]
    index = torch.linspace(0, ring.shape[0] - 1, min(ring.shape[0], samples)).round().long()
    return ring[index]


def foreground_in_box(image: torch.Tensor, mask: torch.Tensor, threshold: float = 0.2) -> torch.Tensor:
    """Pixels of the mask's box that stand out from its surroundings.

    image (1, 3, H, W), mask (1, 1, H, W) -> (1, 1, H, W) in {0, 1}: inside
    the mask, 1 where the colour is farther than ``threshold`` (RGB
    distance) from every surrounding colour (``surroundings``).
    """
    box = _mask_box(mask)
    if box is None:
        return torch.zeros_like(mask)
    ring = surroundings(image, box)
    x0, y0, x1, y1 = box
    inner = image[0, :, y0:y1, x0:x1].flatten(1).T                           # (P, 3)
    far = torch.cdist(inner, ring).min(1).values > threshold
    out = torch.zeros_like(mask)
    out[0, 0, y0:y1, x0:x1] = far.view(y1 - y0, x1 - x0).to(mask)
    return out * (mask > 0.5).to(mask)


def recolour_editor(prompt: str, strength: float = 1.0, region: str = "box", threshold: float = 0.2, *,
                    colours: Mapping[str, tuple[float, float, float]],
                    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Editor that repaints the mask in the prompt's colour (its first word
    found in ``colours``, name -> sRGB; ``colour_in_prompt``).

    image (1, 3, H, W) [0,1], mask (1, 1, H, W) -> (1, 3, H, W): inside the
    mask (``region="box"``) or only on its foreground (``"foreground"``,
    ``foreground_in_box`` with ``threshold``), colour · (0.45 + 0.9 ·
    luma(pixel)), blended by ``strength``.
    """
    _, rgb = colour_in_prompt(prompt, colours)
    if region not in RECOLOUR_REGIONS:
        raise InputError("recolour_editor", "region", f"is {region!r}", ", ".join(RECOLOUR_REGIONS))
    colour = torch.tensor(rgb).view(1, 3, 1, 1)

    def edit(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        luma = (image * _LUMA.to(image)).sum(1, keepdim=True)
        painted = (colour.to(image) * (0.45 + 0.9 * luma)).clamp(0, 1)
        m = mask.to(image) if region == "box" else foreground_in_box(image, mask.to(image), threshold)
        m = m * strength
        return image * (1 - m) + painted * m

    return edit


def quiet_progress(progress: Progress, label: str = "") -> Progress:
    """A reporter for an editor's inner runs (each box's diffusion): it shows
    nothing, so the caller's bar follows the region search alone, but it
    stops whenever ``progress`` would (the global stop flag, or the caller's
    own ``should_stop``, e.g. ComfyUI's interrupt)."""
    return Progress(should_stop=lambda: bool(progress.should_stop is not None and progress.should_stop()),
                    label=label or progress.label)


def diffusion_editor(handle, clip, prompt: str, *, steps: int | None = None, start: float = 0.25,
                     samples: int = 2, views: int = 4, seed: int = 0, guidance: float | None = None,
                     progress=None, **options) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Editor that runs blended diffusion (``edit_region``) in the mask and
    returns its best-ranked sample. Every call uses the same ``seed``, so
    box proposals are compared on equal terms. ``progress`` goes to each
    ``edit_region`` call (e.g. ``quiet_progress(caller's)``, so that the
    caller's bar is not mixed with the diffusion steps)."""
    from ..diffusion import edit_region

    def edit(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        result = edit_region(handle, clip, image, mask, prompt, steps=steps, start=start,
                             samples=samples, views=views, seed=seed, guidance=guidance,
                             progress=progress, **options)
        return result.images[:1].to(image)

    return edit
