"""Opacity bootstrap targets for the atlas decomposition.

NLA bootstraps the opacity α with a BCE against foreground masks early in
training and anneals it away. Masks are a hard target (``train.py``). Here
is the text route: the object is named (``"the red circle"``) and each
frame's CLIP relevancy map of that text (``engine/relevancy.relevancy_map``,
Chefer et al.) becomes a **soft** target:

* relevancy is coarse (one value per ViT patch, 8×8 px on the 64 px toy
  CLIP; ~270×150 px of a 1080p frame squashed into ViT-B/32), so it is
  first *refined*: a colour guided filter (radius one patch) makes it follow
  the frame's colour edges (on the toy clips: IoU of the thresholded map
  with the true mask 0.80–0.84 raw, 0.96–0.98 refined);
* its level inside the object varies, so it is *sharpened*: below ``low``
  it says "background" (target 0), above ``high`` "object" (target 1),
  linear in between;
* the BCE is *weighted* by how sure the target is, ``|2·target − 1|``: the
  thin uncertain band gets ~no weight, so reconstruction, sparsity and flow
  consistency decide there;
* the weight is annealed to 0 like the mask bootstrap.

The opacity left alone does not find the object: with no bootstrap it
stays unseparated, and a wrong bootstrap region (grown or shrunk) stays
wrong through training (the foreground layer's flexible mapping absorbs
grass around the object, and where α ≈ 0 the foreground atlas never learns
a colour for α to grow back into). So the target itself must be good; the
training then keeps it consistent across frames and sharpens it.

The per-frame target and weight (``(N, 1, H, W)`` each) are computed once
before training and kept on the CPU with the frames.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..progress import Progress


@dataclass(frozen=True)
class TextBootstrap:
    """Per-frame relevancy of ``text`` under the CLIP model ``model``.

    relevancy: ``(N, 1, H, W)`` float32 in [0, 1] on the CPU (min–max per frame).
    """
    text: str
    model: str
    blocks: str
    relevancy: torch.Tensor
    grid: int        # the CLIP's patches per side (the maps' real resolution)

    def key(self) -> bytes:
        """What identifies this bootstrap in a run's fingerprint: the text,
        the model's spec, the blocks and the maps themselves (which change
        with the model's weights even under the same spec)."""
        h = hashlib.sha256()
        h.update(f"{self.text}\0{self.model}\0{self.blocks}\0{self.grid}\0".encode())
        h.update(self.relevancy.detach().cpu().float().contiguous().numpy().tobytes())
        return h.digest()

    def describe(self) -> dict:
        return {"object_text": self.text, "clip": self.model, "relevancy_blocks": self.blocks}


def text_bootstrap(clip, frames: torch.Tensor, text: str, blocks: str = "all", batch_size: int = 8,
                   progress: Progress | None = None, node: str = "LL_AtlasDecompose",
                   clip_input: str = "clip", text_input: str = "object_text",
                   blocks_input: str = "relevancy_blocks") -> TextBootstrap:
    """Relevancy of ``text`` in every frame of ``frames (N, 3, H, W)`` [0, 1],
    ``batch_size`` frames per CLIP pass. ``clip``: an LL_CLIP handle.

    Errors name ``node`` and its inputs (``clip_input``, ``text_input``, ``blocks_input``).
    """
    from ..relevancy import parse_blocks, relevancy_map
    if clip is None:
        raise InputError(node, clip_input, f"is not connected but '{text_input}' is set",
                         "an LL_CLIP from LL_LoadCLIP (the text's relevancy per frame is the "
                         "opacity bootstrap), or masks, or an empty object_text")
    if not hasattr(clip, "image_forward"):
        raise InputError(node, clip_input, f"is a {type(clip).__name__}", "an LL_CLIP from LL_LoadCLIP")
    if not isinstance(text, str) or not text.strip():
        raise InputError(node, text_input, "is empty", "a description of the object, e.g. 'the red circle'")
    parse_blocks(blocks, clip.n_blocks, node, blocks_input)  # a clear error before any work
    maps = relevancy_map(clip, frames.detach().float(), text.strip(), blocks=blocks,
                         batch_size=batch_size, progress=progress, node=node)
    spec = getattr(clip, "spec", "") or type(clip).__name__
    return TextBootstrap(text.strip(), spec, str(blocks), maps.detach().float().cpu().contiguous(),
                         int(clip.grid))


def _box(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over a ``(2r+1)²`` window (shrunk at the borders): ``(N, C, H, W)``."""
    return F.avg_pool2d(x, 2 * r + 1, stride=1, padding=r, count_include_pad=False)


def guided_filter(image: torch.Tensor, p: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """Colour guided filter (He et al., 2010): ``p (N, 1, H, W)`` smoothed so
    that its edges follow the edges of ``image (N, 3, H, W)``; within each
    window the output is an affine function of the colour, q = a·I + b.

    Big radii run on a subsampled copy (the "fast guided filter"): the
    coefficients a, b are computed at 1/s size with radius ≤ 8 and upsampled
    bilinearly, then applied to the full-size image (s = 1: the exact filter).
    """
    n, _, h, w = image.shape
    s = max(1, math.ceil(radius / 8))
    small_i, small_p = image, p
    if s > 1:
        size = (math.ceil(h / s), math.ceil(w / s))
        small_i, small_p = F.adaptive_avg_pool2d(image, size), F.adaptive_avg_pool2d(p, size)
    r = max(1, round(radius / s))
    hs, ws = small_i.shape[-2:]
    mean_i, mean_p = _box(small_i, r), _box(small_p, r)
    cov_ip = _box(small_i * small_p, r) - mean_i * mean_p                       # (N, 3, h, w)
    outer = (small_i[:, :, None] * small_i[:, None]).reshape(n, 9, hs, ws)
    var = _box(outer, r).reshape(n, 3, 3, hs, ws) - mean_i[:, :, None] * mean_i[:, None]
    var = var + eps * torch.eye(3, dtype=var.dtype)[None, :, :, None, None]
    a = torch.linalg.solve(var.permute(0, 3, 4, 1, 2), cov_ip.permute(0, 2, 3, 1)[..., None])[..., 0]
    a = a.permute(0, 3, 1, 2)                                                    # (N, 3, h, w)
    b = mean_p - (a * mean_i).sum(1, keepdim=True)
    mean_a, mean_b = _box(a, r), _box(b, r)
    if s > 1:
        mean_a = F.interpolate(mean_a, size=(h, w), mode="bilinear", align_corners=False)
        mean_b = F.interpolate(mean_b, size=(h, w), mode="bilinear", align_corners=False)
    return (mean_a * image).sum(1, keepdim=True) + mean_b


def soft_target(relevancy: torch.Tensor, frames: torch.Tensor, grid: int, low: float, high: float,
                refine: float = 1.0, eps: float = 0.01,
                batch: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame opacity target and confidence weight, each ``(N, 1, H, W)``.

    relevancy ``(N, 1, H, W)`` [0,1]; frames ``(N, 3, H, W)`` [0,1]; ``grid``:
    the CLIP's patches per side (a patch covers ``H/grid × W/grid`` frame pixels,
    the frame being squashed to CLIP's square input).

    1. refine: a colour guided filter of radius ``refine`` patches snaps the
       patch-blurred map to the frame's colour edges (0 = off);
    2. sharpen: ``target = clamp((q − low) / (high − low), 0, 1)``;
    3. weight: ``|2·target − 1|``, ~0 in the uncertain band, so there the
       reconstruction decides.

    Runs ``batch`` frames at a time (the filter holds ~20 maps per pixel).
    """
    n, _, h, w = frames.shape
    radius = round(refine * min(h, w) / grid)
    targets = []
    for s in range(0, n, batch):
        q = relevancy[s:s + batch].float()
        if radius > 0:
            q = guided_filter(frames[s:s + batch].float(), q, radius, eps)
        targets.append(((q - low) / (high - low)).clamp(0, 1))
    target = torch.cat(targets)
    return target, (2 * target - 1).abs()
