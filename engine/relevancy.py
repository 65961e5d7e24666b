"""Text relevancy maps from CLIP (Chefer et al., ICCV 2021).

"Which pixels make CLIP think this image matches this text?" The score is
the image–text logit; for each chosen ViT block the attention map A is
weighted by its gradient and the positive part averaged over heads,

    Ā = mean_heads(clamp(∂score/∂A ⊙ A, min=0)),

and the relevancy of tokens to tokens is rolled out from the identity,
R ← R + Ā·R. The CLS row of R over the patch tokens, reshaped to the patch
grid, is the map; it is upsampled bilinearly to the image and min–max
normalised to [0,1] per image.

Framing: the whole image is squashed to CLIP's square input (no crop), so
the map covers every pixel of any aspect ratio; the price is a little
anisotropic stretch for CLIP, which relevancy tolerates well.

Blocks: the original notebook (and large models) use the last block only;
Text2LIVE uses block 11 of ViT-B/32. On a tiny ViT (the toy CLIP) the last
block alone does not localise, the rollout over all blocks does.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .errors import InputError
from .progress import Progress, ensure

BLOCK_CHOICES = ("last", "all")


def parse_blocks(blocks: str | Sequence[int], n_blocks: int, node: str = "relevancy_map",
                 input_name: str = "blocks") -> list[int]:
    """"last" | "all" | a list of 0-based indices (or "0,2,3" text) → sorted indices.

    Negative indices count from the end (-1 = last block).
    """
    if isinstance(blocks, str):
        text = blocks.strip().lower()
        if text == "last":
            return [n_blocks - 1]
        if text == "all":
            return list(range(n_blocks))
        try:
            blocks = [int(t) for t in text.replace(";", ",").split(",") if t.strip()]
        except ValueError:
            raise InputError(node, input_name, f"is '{text}'",
                             f"'last', 'all' or comma-separated block indices "
                             f"0..{n_blocks - 1} (negative counts from the end)") from None
    out = set()
    for b in blocks:
        i = int(b) + (n_blocks if int(b) < 0 else 0)
        if not 0 <= i < n_blocks:
            raise InputError(node, input_name, f"has block {b}",
                             f"0..{n_blocks - 1} or -{n_blocks}..-1 (this CLIP has {n_blocks} blocks)")
        out.add(i)
    if not out:
        raise InputError(node, input_name, "is empty", "at least one block index")
    return sorted(out)


def relevancy_rollout(attention: Sequence[torch.Tensor], grads: Sequence[torch.Tensor]) -> torch.Tensor:
    """Chefer rollout over blocks in order.

    attention, grads: per block (N, heads, L, L). Returns R (N, L, L), float32.
    """
    n, _, length, _ = attention[0].shape
    r = torch.eye(length, device=attention[0].device).expand(n, length, length).clone()
    for a, g in zip(attention, grads):
        cam = (g.float() * a.float()).clamp(min=0).mean(dim=1)  # (N, L, L)
        r = r + cam @ r
    return r


def _minmax(x: torch.Tensor) -> torch.Tensor:
    """Per-image min–max to [0,1] over (N, 1, H, W); a flat map becomes 0."""
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    return torch.where(hi > lo, (x - lo) / (hi - lo).clamp_min(1e-12), torch.zeros_like(x))


def _score(clip, embedding: torch.Tensor, text: str, negative_text: str | None) -> torch.Tensor:
    """(N, D) image embeddings → (N,) logits for ``text`` (minus ``negative_text``'s)."""
    target = clip.encode_text([text])[0]
    score = clip.logit_scale * embedding @ target
    if negative_text:
        score = score - clip.logit_scale * embedding @ clip.encode_text([negative_text])[0]
    return score


def relevancy_map(clip, images: torch.Tensor, text: str, blocks: str | Sequence[int] = "last",
                  negative_text: str | None = None, batch_size: int = 8,
                  progress: Progress | None = None, node: str = "relevancy_map") -> torch.Tensor:
    """Relevancy of each pixel of ``images`` to ``text``.

    clip: a CLIPHandle. images: (N, 3, H, W) in [0,1]. text: the target.
    blocks: "last" | "all" | list of 0-based block indices.
    negative_text: optional; its logit is subtracted from the score, so what
    the two texts share cancels out (e.g. "a shape" to leave only the colour).
    Returns (N, 1, H, W) float32 in [0,1] at the image's resolution, on
    ``images``' device. Runs ``batch_size`` images at a time.
    """
    progress = ensure(progress)
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise InputError(node, "image", f"has shape {shape}", "(N, 3, H, W) RGB images")
    if not isinstance(text, str) or not text.strip():
        raise InputError(node, "text", "is empty", "a description of what to find, e.g. 'a red circle'")
    chosen = parse_blocks(blocks, clip.n_blocks, node)
    n, _, h, w = images.shape
    out = []
    for start in range(0, n, batch_size):
        chunk = images[start:start + batch_size]
        out.append(_relevancy_chunk(clip, chunk, text.strip(), chosen,
                                    negative_text.strip() if negative_text else None))
        progress.update(min(start + batch_size, n), n)
    maps = torch.cat(out)  # (N, g, g)
    maps = F.interpolate(maps[:, None], size=(h, w), mode="bilinear", align_corners=False)
    return _minmax(maps).to(images.device)


def _relevancy_chunk(clip, images: torch.Tensor, text: str, chosen: list[int],
                     negative_text: str | None) -> torch.Tensor:
    """(n, 3, H, W) → (n, g, g) raw relevancy of the patches (float32, CLIP's device)."""
    # Relevancy needs autograd even when the caller runs under no_grad or
    # inference_mode (ComfyUI does); clone so an inference tensor becomes a
    # normal one. The weights are frozen: the input must ask for grad, or the
    # attention maps would not be part of any graph.
    with torch.inference_mode(False), torch.enable_grad():
        x = images.detach().to(clip.device, torch.float32).clone().requires_grad_(True)
        fwd = clip.image_forward(x, attention_from=chosen, mode="squash")
        score = _score(clip, fwd.embedding, text, negative_text)
        attn = [fwd.attention[b] for b in chosen]
        # Images in a batch do not interact, so d(sum)/dA_i = d(score_i)/dA_i.
        grads = torch.autograd.grad(score.sum(), attn)
    r = relevancy_rollout([a.detach() for a in attn], grads)
    g = clip.grid
    return r[:, 0, 1:].reshape(-1, g, g)
