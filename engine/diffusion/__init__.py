"""Blended diffusion: text-driven edits of a masked region with a diffusion model.

One entry point for both variants:

    result = edit_region(handle, clip, image, mask, "a red circle", samples=4, seed=0)
    result.images      # (S, 3, H, W) ranked best first
    result.scores      # (S,) masked CLIP similarity (NaN when unranked)
    result.layer_rgb, result.layer_alpha   # the edit layer (colour + feathered mask)

``handle.kind == "pixel"`` runs Blended Diffusion (``pixel.py``, CLIP-guided
DDPM); ``"latent"`` / ``"latent-inpaint"`` run Blended Latent Diffusion
(``latent.py``, text-conditioned Stable Diffusion; CLIP only ranks).
"""
from __future__ import annotations

import torch

from ..progress import Progress
from .common import EditResult
from .latent import blended_latent_diffusion
from .pixel import blended_diffusion_pixel

DEFAULT_STEPS = {"pixel": 100, "latent": 50, "latent-inpaint": 50}
DEFAULT_GUIDANCE = {"pixel": 1000.0, "latent": 7.5, "latent-inpaint": 7.5}


def edit_region(handle, clip, image: torch.Tensor, mask: torch.Tensor, prompt: str, *,
                steps: int | None = None, start: float = 0.25, samples: int = 4, views: int = 8,
                seed: int = 0, guidance: float | None = None, progress: Progress | None = None,
                **options) -> EditResult:
    """Edit the masked region of one image to match ``prompt``.

    image (1, 3, H, W) [0,1]; mask (1, 1, H, W) [0,1], 1 = edit.
    steps: schedule length (default 100 pixel / 50 latent); start: fraction of
    the schedule skipped (0.25); samples: S seeded samples (seed + i), one
    batched UNet pass per step; views: CLIP views for pixel guidance (ignored
    by latent); guidance: CLIP weight for pixel (default 1000), classifier-free
    scale for latent (default 7.5).
    options: pixel — ``feather``; latent — ``negative_prompt``,
    ``background_fix`` ("paste" | "decoder" | "none"), ``feather``,
    ``decoder_steps``, ``mask_mode``, ``shrink_radius``.
    Returns ``EditResult`` (see ``common.py``).
    """
    kind = handle.kind
    steps = steps if steps is not None else DEFAULT_STEPS[kind]
    guidance = guidance if guidance is not None else DEFAULT_GUIDANCE[kind]
    if kind == "pixel":
        return blended_diffusion_pixel(handle, clip, image, mask, prompt, steps=steps, start=start,
                                       samples=samples, views=views, seed=seed, guidance=guidance,
                                       progress=progress, **options)
    return blended_latent_diffusion(handle, clip, image, mask, prompt, steps=steps, start=start,
                                    samples=samples, seed=seed, cfg=guidance, progress=progress,
                                    **options)


__all__ = ["EditResult", "edit_region", "blended_diffusion_pixel", "blended_latent_diffusion"]
