"""CLIP losses and the final ranking of Learnable Regions.

All functions take the project's CLIP handle (engine/models/clip.py):
``encode_image`` / ``encode_text`` give L2-normalised embeddings and
``image_forward`` gives per-block tokens.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class ClipTargets:
    """What the losses compare against, computed once per image and prompt."""
    text: torch.Tensor          # (1, D) prompt embedding
    text_direction: torch.Tensor  # (1, D) normalised E(T) - E(T_source)
    source: torch.Tensor        # (1, D) source image embedding
    source_ssim: torch.Tensor   # (1, L, L) source token self-similarity
    block: int                  # CLIP block the structure tokens come from


def self_similarity(tokens: torch.Tensor) -> torch.Tensor:
    """Cosine self-similarity of ViT tokens (CLS included): (N, L, C) -> (N, L, L)."""
    t = F.normalize(tokens, dim=-1)
    return t @ t.transpose(1, 2)


def structure_block(clip) -> int:
    """The block whose output the structure loss compares: the second-to-last
    (block 11 of 12 in ViT-B, as Text2LIVE)."""
    return max(0, clip.n_blocks - 2)


@torch.no_grad()
def clip_targets(clip, source: torch.Tensor, prompt: str, source_prompt: str) -> ClipTargets:
    """source (1, 3, H, W) [0,1]; prompt / source_prompt: texts for the edit
    and for the unedited image (the directional loss's reference)."""
    block = structure_block(clip)
    fwd = clip.image_forward(source, tokens_from=(block,))
    text = clip.encode_text([prompt])
    direction = F.normalize(text - clip.encode_text([source_prompt]), dim=-1)
    return ClipTargets(text, direction, fwd.embedding, self_similarity(fwd.tokens[block]), block)


def edit_losses(clip, edited: torch.Tensor, targets: ClipTargets,
                with_embedding: bool = False) -> dict[str, torch.Tensor]:
    """The three losses of each edit in a batch (N, 3, H, W) -> dict of (N,), weights 1 each:

    cosine      1 - cos(E(X), E(T))
    directional 1 - cos(E(X) - E(I_s), E(T) - E(T_source))
    structure   MSE(selfsim(tokens(X)), selfsim(tokens(I_s)))   (mean over the L x L entries)

    One CLIP pass for the whole batch; differentiable if ``edited`` is.
    ``with_embedding`` adds the edits' image embeddings (N, D) as "embedding".
    """
    fwd = clip.image_forward(edited, tokens_from=(targets.block,))
    emb = fwd.embedding
    cos = 1 - (emb * targets.text).sum(-1)
    img_dir = F.normalize(emb - targets.source, dim=-1, eps=1e-8)
    direc = 1 - (img_dir * targets.text_direction).sum(-1)
    struct = (self_similarity(fwd.tokens[targets.block]) - targets.source_ssim).pow(2).flatten(1).mean(1)
    out = {"cosine": cos, "directional": direc, "structure": struct, "total": cos + direc + struct}
    if with_embedding:
        out["embedding"] = emb
    return out


def region_losses(clip, edited: torch.Tensor, targets: ClipTargets) -> dict[str, torch.Tensor]:
    """``edit_losses`` averaged over the batch: (N, 3, H, W) -> dict of scalars
    (for N = 1, the losses of the one image X_o)."""
    return {name: value.mean() for name, value in edit_losses(clip, edited, targets).items()}


@torch.no_grad()
def box_losses(clip, edits: torch.Tensor, targets: ClipTargets, chunk: int = 32) -> torch.Tensor:
    """Exact total loss of every proposal's edit: (M, 3, H, W) -> (M,).

    No gradient is needed: the edits are fixed, only the region network
    learns. ``chunk`` bounds the CLIP batch (memory with big images / M).
    """
    return torch.cat([edit_losses(clip, edits[i:i + chunk], targets)["total"]
                      for i in range(0, edits.shape[0], chunk)])


@torch.no_grad()
def losses_and_scores(clip, edits: torch.Tensor, targets: ClipTargets, chunk: int = 32
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact loss L and ranking score S = 2·S_t2i + S_i2i of every edit, from
    one CLIP pass: (N, 3, H, W) -> (L (N,), S (N,)). S uses the prompt
    embedding and the source image embedding of ``targets`` (what
    ``rank_candidates`` computes, without encoding the source again)."""
    total, scores = [], []
    for i in range(0, edits.shape[0], chunk):
        parts = edit_losses(clip, edits[i:i + chunk], targets, with_embedding=True)
        emb = parts["embedding"]
        total.append(parts["total"])
        scores.append(ranking_scores((emb * targets.text).sum(-1), (emb * targets.source).sum(-1)))
    return torch.cat(total), torch.cat(scores)


def ranking_scores(t2i: torch.Tensor, i2i: torch.Tensor, w_text: float = 2.0,
                   w_image: float = 1.0) -> torch.Tensor:
    """S = 2·S_t2i + 1·S_i2i per candidate: (K,), (K,) -> (K,)."""
    return w_text * t2i + w_image * i2i


@torch.no_grad()
def rank_candidates(clip, candidates: torch.Tensor, source: torch.Tensor, prompt: str
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CLIP cosine of each candidate (K, 3, H, W) with the prompt (S_t2i) and
    with the source image (S_i2i). Returns (scores (K,), t2i (K,), i2i (K,))."""
    emb = clip.encode_image(candidates)
    t2i = (emb @ clip.encode_text([prompt]).T).squeeze(1)
    i2i = (emb @ clip.encode_image(source).T).squeeze(1)
    return ranking_scores(t2i, i2i), t2i, i2i
