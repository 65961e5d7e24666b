"""Learnable Regions (Lin et al., CVPR 2024) with a gradient that reaches the
region network.

For each of K anchors (DINO CLS-attention peaks) we propose M square boxes,
edit the image once inside each box (any editor: blended diffusion, or a
simple test editor), score every edit exactly, and train a small region
network that picks one box:

    L_j    = CLIP cosine + directional + structure (Edit_j)     (M,) one batched
                                                                CLIP pass, no grad
    logits = RegionNetwork(RoIAlign(DINO features, boxes))     (M,)
    y      = straight-through Gumbel-softmax(logits)            one-hot forward
    loss   = sum_j y_j * L_j                                    = the chosen box's loss

In the backward pass d loss / d y_j = L_j for every box, and the softmax
Jacobian of the straight-through sample carries the exact per-box losses to
the logits. (The released code rounds boxes to Python ints and goes through
PIL, so no gradient ever reaches its box network. Our first version took the
CLIP loss of X_o = sum_j y_j Edit_j, a first-order estimate that mis-ranked
boxes; it is kept as ``objective="image"``.) Finally each anchor's chosen
edit is scored with S = 2·S_t2i + S_i2i and the best anchor wins.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..progress import Progress, ensure
from .anchors import anchors_from_attention
from .boxes import DEFAULT_BOX_SIZES, box_mask, box_proposals, roi_features
from .losses import box_losses, clip_targets, rank_candidates, region_losses
from .network import RegionNetwork, gumbel_softmax_st

Editor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""editor(image (1, 3, H, W) [0,1], mask (1, 1, H, W)) -> edited image (1, 3, H, W)."""


@dataclass
class RegionsResult:
    """What ``learn_regions`` returns (H, W = the input image's size)."""
    box: tuple[int, int, int, int]   # best box (x0, y0, x1, y1), pixels, x1/y1 exclusive
    mask: torch.Tensor               # (1, 1, H, W) the best box as a mask
    image: torch.Tensor              # (1, 3, H, W) the edited image
    layer_rgb: torch.Tensor          # (1, 3, H, W) straight colour of the edit layer
    layer_alpha: torch.Tensor        # (1, 1, H, W) alpha of the edit layer (= box mask)
    best_anchor: int
    anchors: torch.Tensor            # (K, 2) (x, y) pixels
    boxes: torch.Tensor              # (K, M, 4) proposals
    choices: list[int]               # final box index per anchor (argmax of trained logits)
    initial_choices: list[int]       # argmax of the logits before training
    scores: torch.Tensor             # (K,) S = 2·S_t2i + S_i2i of each anchor's edit
    history: list[list[int]] = field(default_factory=list)    # (K, steps) sampled box index
    losses: list[list[float]] = field(default_factory=list)   # (K, steps) total loss
    saliency: torch.Tensor | None = None  # (h, w) DINO CLS attention, mean over heads
    box_losses: torch.Tensor | None = None  # (K, M) exact CLIP loss of every proposal's edit
    expected_losses: list[float] = field(default_factory=list)  # (K,) sum softmax(logits)·L after training


def box_sizes_for(m: int, smallest: float = 0.2, largest: float = 0.8) -> tuple[float, ...]:
    """M box sides evenly spaced in [smallest, largest] (fractions of the shorter side)."""
    if m == 1:
        return (0.5 * (smallest + largest),)
    return tuple(smallest + (largest - smallest) * i / (m - 1) for i in range(m))


def dino_view(image: torch.Tensor, patch: int, size: int | None) -> torch.Tensor:
    """The copy of ``image`` DINO sees: (1, 3, H, W) -> (1, 3, h·p, w·p).

    ``size`` None keeps the image when both sides are multiples of the patch
    and otherwise rounds each side down to one; an int resizes the shorter
    side to ``size`` (rounded to patches). Only DINO's view is resized; the
    boxes and every output stay at the input's size.
    """
    H, W = image.shape[-2:]
    if size is None:
        h, w = max(patch, H // patch * patch), max(patch, W // patch * patch)
    else:
        s = size / min(H, W)
        h, w = (max(patch, round(H * s / patch) * patch), max(patch, round(W * s / patch) * patch))
    if (h, w) == (H, W):
        return image
    return F.interpolate(image, size=(h, w), mode="bilinear", align_corners=False, antialias=True)


def _validate(node: str, image, prompt, k, sizes, steps) -> None:
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[:2] != (1, 3):
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise InputError(node, "image", f"has shape {shape}", "one RGB image (1, 3, H, W)")
    if min(image.shape[-2:]) < 16:
        raise InputError(node, "image", f"is {image.shape[-1]}x{image.shape[-2]} pixels",
                         "both sides >= 16")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError(node, "prompt", "is empty", "a text describing the edit")
    if k < 1:
        raise InputError(node, "anchors", f"is {k}", "K >= 1")
    if len(sizes) < 1 or any(not 0 < s <= 1 for s in sizes):
        raise InputError(node, "box_sizes", f"is {list(sizes)}",
                         "one or more fractions of the shorter side in (0, 1]")
    if steps < 0:
        raise InputError(node, "steps", f"is {steps}", ">= 0")


def _run_editor(editor: Editor, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    out = editor(image, mask)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(image.shape):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the editor returned {got}; it must return the edited image "
                         f"with the input's shape {tuple(image.shape)}")
    return out.detach().to(image)


OBJECTIVES = ("gumbel", "expected", "image")
"""What ``train_anchor`` minimises (L_j = exact CLIP loss of proposal j's edit):

gumbel    sum_j y_j L_j with y the straight-through Gumbel-softmax sample:
          forward = the sampled box's loss, backward = the relaxed sample's
          gradient with every box's exact loss (default).
expected  sum_j softmax(logits)_j L_j, the expected loss (no sampling).
image     the first version: the CLIP loss of X_o = sum_j y_j Edit_j, a
          first-order (image-space) estimate of the other boxes' losses.
"""


def train_anchor(network: RegionNetwork, roi: torch.Tensor, edits: torch.Tensor, clip, targets,
                 steps: int, lr: float, generator: torch.Generator, tau: float = 1.0,
                 on_step: Callable[[int, float], None] | None = None, objective: str = "gumbel",
                 box_loss: torch.Tensor | None = None) -> tuple[list[int], list[float]]:
    """Train one anchor's region network.

    roi (M, C, l, l) box features; edits (M, 3, H, W) the editor's output
    for each box (no grad); ``box_loss`` (M,) their exact losses if already
    computed (else one batched CLIP pass here). Returns the box index per
    step (sampled; argmax for "expected") and the objective's value per step
    (for "gumbel" and "image": the loss of the sampled box's edit).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective {objective!r}: use one of {', '.join(OBJECTIVES)}")
    if objective != "image" and box_loss is None:
        box_loss = box_losses(clip, edits, targets)
    opt = torch.optim.Adam(network.parameters(), lr=lr)
    history, losses = [], []
    for step in range(steps):
        logits = network(roi)
        if objective == "expected":
            index = int(logits.argmax())
            loss = (F.softmax(logits, dim=-1) * box_loss).sum()
        else:
            y, index = gumbel_softmax_st(logits, generator, tau)
            if objective == "gumbel":
                loss = (y * box_loss).sum()                            # == box_loss[index] forward
            else:
                blended = (y.view(-1, 1, 1, 1) * edits).sum(0, keepdim=True)  # == edits[index]
                loss = region_losses(clip, blended, targets)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append(index)
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(step, losses[-1])
    return history, losses


def learn_regions(dino, clip, editor: Editor, image: torch.Tensor, prompt: str, *,
                  K: int = 9, M: int | None = None, box_sizes: Sequence[float] | None = None,
                  steps: int = 30, seed: int = 0, lr: float = 3e-3, tau: float = 1.0,
                  source_prompt: str = "a photo", dino_size: int | None = None,
                  nms_radius: int = 1, objective: str = "gumbel", progress: Progress | None = None,
                  node: str = "LL_LearnableRegions") -> RegionsResult:
    """Find the region to edit for ``prompt`` and edit it.

    dino: DINOHandle; clip: CLIPHandle; editor(image, mask) -> edited image.
    image (1, 3, H, W) [0,1]. K anchors, M boxes per anchor (``box_sizes``:
    sides as fractions of the shorter image side; default
    ``box_sizes_for(M)`` or DEFAULT_BOX_SIZES). ``steps`` Adam steps (lr 3e-3)
    per anchor. ``source_prompt`` describes the unedited image for the
    directional loss. ``objective`` (see OBJECTIVES): "gumbel" (default,
    straight-through sample of the exact per-box losses), "expected", or
    "image" (the first version's image-space estimate). The editor runs K·M
    times (once per proposal); CLIP scores the K·M edits once.
    """
    progress = ensure(progress, node)
    sizes = tuple(box_sizes) if box_sizes is not None else (
        box_sizes_for(M) if M is not None else DEFAULT_BOX_SIZES)
    if M is not None and len(sizes) != M:
        raise InputError(node, "box_sizes", f"has {len(sizes)} sizes but M = {M}", "len(box_sizes) == M")
    _validate(node, image, prompt, K, sizes, steps)
    if objective not in OBJECTIVES:
        raise InputError(node, "objective", f"is {objective!r}", ", ".join(OBJECTIVES))
    image = image.detach().float()
    H, W = image.shape[-2:]

    with torch.no_grad():
        out = dino(dino_view(image.to(dino.device), dino.patch_size, dino_size), node=node)
    anchors = anchors_from_attention(out.attention.cpu(), (H, W), K, nms_radius)
    k = anchors.shape[0]
    boxes = box_proposals(anchors, sizes, (H, W))                     # (K, M, 4)
    fmap = out.feature_map().float().cpu()
    targets = clip_targets(clip, image, prompt, source_prompt)
    total = k * (len(sizes) + steps)
    done = 0

    choices, initial, history, losses, finals, scored, expected = [], [], [], [], [], [], []
    for a in range(k):
        edits = []
        for b in boxes[a]:
            edits.append(_run_editor(editor, image, box_mask(b, (H, W))))
            done += 1
            progress.update(done, total, anchor=a)
        edits = torch.cat(edits)                                      # (M, 3, H, W)
        box_loss = box_losses(clip, edits, targets)                   # (M,) exact, no grad
        roi = roi_features(fmap, boxes[a], (H, W))                    # (M, C, 7, 7)
        with torch.random.fork_rng(devices=[]):                       # seeded init, global RNG untouched
            torch.manual_seed(seed * 1009 + a)
            net = RegionNetwork(roi.shape[1], len(sizes))
        gen = torch.Generator().manual_seed(seed * 7919 + a)
        with torch.no_grad():
            initial.append(int(net(roi).argmax()))
        base = done

        def on_step(step: int, loss: float) -> None:
            progress.update(base + step + 1, total, anchor=a, loss=loss)

        h, ls = train_anchor(net, roi, edits, clip, targets, steps, lr, gen, tau, on_step,
                             objective=objective, box_loss=box_loss)
        done = base + steps
        with torch.no_grad():
            logits = net(roi)
        choice = int(logits.argmax())
        scored.append(box_loss)
        expected.append(float((F.softmax(logits, dim=-1) * box_loss).sum()))
        choices.append(choice)
        history.append(h)
        losses.append(ls)
        finals.append(edits[choice])

    candidates = torch.stack(finals)
    scores, _, _ = rank_candidates(clip, candidates, image, prompt)
    best = int(scores.argmax())
    box = tuple(int(v) for v in boxes[best, choices[best]].tolist())
    mask = box_mask(box, (H, W))
    edited = candidates[best:best + 1]
    return RegionsResult(box=box, mask=mask, image=edited, layer_rgb=edited.clone(), layer_alpha=mask,
                         best_anchor=best, anchors=anchors, boxes=boxes, choices=choices,
                         initial_choices=initial, scores=scores.cpu(), history=history, losses=losses,
                         saliency=out.attention.mean(1)[0].cpu(), box_losses=torch.stack(scored).cpu(),
                         expected_losses=expected)
