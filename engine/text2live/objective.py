"""The Text2LIVE objective, shared by the image trainer (``trainer.py``) and
the video trainer (``video.py``).

Both trainers end a step with the same question: given one or more *frames*
— each a composite I_o of an edit layer over a source I_s, the layer over
the green screen, the layer's visible alpha and (early on) a bootstrap
target — how far are they from the prompt? The image trainer has one frame
(the training crop); the video trainer has the two or three frame crops of a
space-time crop, all produced by one generator pass on the atlas.

    L = λ_comp·(L_clip(I_o, T) + L_dir) + λ_screen·L_clip(I_screen, T_screen)
        + λ_structure·L_structure + λ_sparsity·L_reg(α) + w_boot(step)·L_bootstrap

CLIP runs twice per step whatever the number of frames: once without
gradient on every view of every I_s (plus each I_s at CLIP size for the
structure tokens) and once with gradient on every view of every I_o and
I_screen (plus each I_o at CLIP size). Per frame, the direction loss takes
its origin from that frame's own source views; the other CLIP terms average
over all views of all frames, the structure and bootstrap terms over frames.

``settings`` is a ``Text2LIVESettings`` or a ``VideoSettings``: the
objective reads only the fields named in ``OBJECTIVE_FIELDS``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import losses as L
from .augment import clip_views
from .settings import SCREEN_TEMPLATES, TEMPLATES

# Settings fields the objective reads (both settings classes have them).
OBJECTIVE_FIELDS = ("views", "view_aug", "lambda_comp", "lambda_screen", "lambda_structure",
                    "lambda_sparsity", "lambda_l1", "lambda_l0", "bootstrap_weight",
                    "bootstrap_steps", "direction", "distance", "templates_per_step")
LOSS_NAMES = ("total", "clip", "direction", "screen", "structure", "sparsity", "bootstrap")


@dataclass
class Texts:
    """Text embeddings of one run: (T, D) each."""
    target: torch.Tensor
    roi: torch.Tensor | None
    screen: torch.Tensor


@dataclass
class Frame:
    """One frame the objective judges (all ``(1, C, h, w)``, sizes may differ between frames).

    composite: I_o. screen: the layer over the green screen, or None when the
    screen loss is off. source: I_s (no gradient needed). alpha: the layer's
    alpha as seen in this frame (bootstrap input). target: bootstrap target or None.
    """
    composite: torch.Tensor
    screen: torch.Tensor | None
    source: torch.Tensor
    alpha: torch.Tensor
    target: torch.Tensor | None = None


# --------------------------------------------------------------------------- texts

def screen_texts(prompt: str, screen_text: str | None) -> list[str]:
    """The green-screen texts: derived from the prompt unless given."""
    if screen_text:
        return [screen_text]
    return [t.format(prompt) for t in SCREEN_TEMPLATES]


def encode_each(clip, texts: list[str]) -> torch.Tensor:
    """(T, D) embeddings, one string per text-encoder call. Batched calls give
    batch-size-dependent rounding, and the handle caches per string, so a
    string first seen in another batch (e.g. by the relevancy map) would give a
    slightly different embedding and break same-seed-same-result."""
    return torch.cat([clip.encode_text([t]) for t in texts])


def encode_texts(clip, prompt: str, roi_text: str | None, screen_text: str | None) -> Texts:
    """Every template of the prompt, of the ROI text (or None) and the screen texts."""
    target = encode_each(clip, [t.format(prompt) for t in TEMPLATES])
    roi = encode_each(clip, [t.format(roi_text) for t in TEMPLATES]) if roi_text else None
    return Texts(target, roi, encode_each(clip, screen_texts(prompt, screen_text)))


def template_subset(texts: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """A random subset of template embeddings ``(k, D)``: ``n`` of them, or
    (n = 0, official) a random number 1..T drawn with replacement."""
    t = texts.shape[0]
    k = n if n > 0 else int(torch.randint(1, t + 1, (1,), generator=gen))
    idx = torch.randint(t, (k,), generator=gen)
    return texts[idx]


# --------------------------------------------------------------------------- helpers

def to_clip_size(x: torch.Tensor, size: int) -> torch.Tensor:
    """The whole image squeezed to the CLIP input size (for the structure tokens)."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def structure_block(clip) -> int:
    """The ViT block whose output tokens feed the structure loss: the second-to-last."""
    return clip.n_blocks - 2 if clip.n_blocks >= 2 else 0


def uses(settings) -> dict[str, bool]:
    """Which optional CLIP inputs a step needs."""
    return {"screen": settings.lambda_screen > 0, "structure": settings.lambda_structure > 0}


# --------------------------------------------------------------------------- the objective

def objective(clip, frames: list[Frame], sparsity_alpha: torch.Tensor, texts: Texts, settings,
              step: int, gen: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
    """The weighted Text2LIVE loss over ``frames``.

    sparsity_alpha: the generator's alpha ``(1, 1, h, w)`` that L_reg regularises
    (the image's layer; in video the atlas crop's layer).
    Returns (loss scalar with graph, {name: float} for every name in ``LOSS_NAMES``).
    Random draws (views, then template subsets) all come from ``gen``, in a
    fixed order, so a run is reproducible from its seed.
    """
    s = settings
    size, v, k = clip.image_size, s.views, len(frames)
    block = structure_block(clip)
    use = uses(s)
    tokens = (block,) if use["structure"] else ()

    # --- source side: once per step, no gradient
    with torch.no_grad():
        parts = [clip_views(f.source, v, size, gen, s.view_aug) for f in frames]
        if use["structure"]:
            parts += [to_clip_size(f.source, size) for f in frames]
        src = clip.image_forward(torch.cat(parts), tokens_from=tokens)

    # --- output side: every view of every I_o and I_screen + each I_o at CLIP size, one forward
    parts = []
    for f in frames:
        sources = [f.composite] + ([f.screen] if use["screen"] else [])
        parts.append(clip_views(torch.cat(sources), v, size, gen, s.view_aug))
    if use["structure"]:
        parts += [to_clip_size(f.composite, size) for f in frames]
    out = clip.image_forward(torch.cat(parts), tokens_from=tokens)
    per = v * (2 if use["screen"] else 1)          # embeddings per frame in ``out``
    comp_emb = [out.embedding[i * per:i * per + v] for i in range(k)]
    src_emb = [src.embedding[i * v:(i + 1) * v] for i in range(k)]

    zero = frames[0].composite.new_zeros(())
    terms: dict[str, torch.Tensor] = {}
    target_sub = template_subset(texts.target, s.templates_per_step, gen)
    terms["clip"] = L.clip_text_loss(_cat(comp_emb), target_sub, s.distance)
    if s.direction and texts.roi is not None:
        terms["direction"] = _mean([L.direction_loss(o, e, texts.target, texts.roi)
                                    for o, e in zip(comp_emb, src_emb)])
    else:
        terms["direction"] = zero
    if use["screen"]:
        screen_sub = template_subset(texts.screen, s.templates_per_step, gen) \
            if texts.screen.shape[0] > 1 else texts.screen
        screen_emb = _cat([out.embedding[i * per + v:(i + 1) * per] for i in range(k)])
        terms["screen"] = L.clip_text_loss(screen_emb, screen_sub, s.distance)
    else:
        terms["screen"] = zero
    terms["structure"] = (L.structure_loss(out.tokens[block][-k:], src.tokens[block][-k:])
                          if use["structure"] else zero)
    terms["sparsity"] = L.sparsity_loss(sparsity_alpha, s.lambda_l1, s.lambda_l0)
    w_boot = L.bootstrap_weight(step, s.bootstrap_weight, s.bootstrap_steps)
    boot = [L.bootstrap_loss(to_clip_size(f.alpha, size), to_clip_size(f.target, size))
            for f in frames if f.target is not None] if w_boot > 0 else []
    terms["bootstrap"] = _mean(boot) if boot else zero

    total = (s.lambda_comp * (terms["clip"] + terms["direction"])
             + s.lambda_screen * terms["screen"]
             + s.lambda_structure * terms["structure"]
             + s.lambda_sparsity * terms["sparsity"]
             + w_boot * terms["bootstrap"])
    record = {name: float(t.detach()) for name, t in terms.items()}
    record["total"] = float(total.detach())
    return total, record


def _cat(xs: list[torch.Tensor]) -> torch.Tensor:
    return xs[0] if len(xs) == 1 else torch.cat(xs)


def _mean(xs: list[torch.Tensor]) -> torch.Tensor:
    """Mean of scalars; one scalar is returned as it is (keeps one-frame runs bit-identical
    to the image trainer's original arithmetic)."""
    return xs[0] if len(xs) == 1 else torch.stack(xs).mean()


__all__ = ["OBJECTIVE_FIELDS", "LOSS_NAMES", "Texts", "Frame", "objective", "encode_texts",
           "encode_each", "screen_texts", "template_subset", "to_clip_size", "structure_block", "uses"]
