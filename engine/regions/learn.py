"""Learnable Regions (Lin et al., CVPR 2024): which box to edit, three ways.

For each of K anchors (DINO CLS-attention peaks, DINO at its own working
size) we propose M square boxes. An editor (blended diffusion, or a toy
editor) edits the image inside a box; CLIP scores an edit exactly:

    L_j = CLIP cosine + directional + structure (Edit_j)    the objective (weights 1)
    S_j = 2·S_t2i + S_i2i                                   the final ranking

``mode`` decides which proposals are edited and how each anchor's box is
chosen; then the anchors' picks are ranked (``rank``: by S, the paper's, or
by L) and the best one is returned.

exhaustive  every proposal is edited (K·M editor runs); each anchor keeps
            its lowest-L box. No network: this is the quality reference,
            the exact answer to the objective. (Training a per-image
            network on losses that are all known can only equal or lose
            to their argmin.)
amortised   a region network trained once across many images and prompts
            (``AmortisedRegionNetwork``: DINO RoI features + the prompt's
            text embedding -> box-size logits) proposes its top-r boxes per
            anchor; only those are edited (K·r editor runs, r = 1 or 2);
            each anchor keeps its lowest-L edited box.
per-image   the paper's mode: a network is trained on this image for
            ``steps`` with the straight-through Gumbel-softmax over the
            exact losses of the edited proposals (all M, or the amortised
            network's top-r, which it then starts from) and its argmax is
            the anchor's box.

The per-image gradient: loss = sum_j y_j * L_j with y the straight-through
Gumbel sample, so d loss / d y_j = L_j for every box and the softmax
Jacobian carries the exact per-box losses to the logits (the released code
never passes a gradient to its box network; our first version's image-space
estimate is kept as ``objective="image"``).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..progress import Progress, ensure
from .anchors import dino_anchors
from .boxes import DEFAULT_BOX_SIZES, box_mask, box_proposals, roi_features
from .losses import box_losses, clip_targets, losses_and_scores, region_losses
from .network import BoundRegionNetwork, RegionNetwork, box_inputs, gumbel_softmax_st

Editor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""editor(image (1, 3, H, W) [0,1], mask (1, 1, H, W)) -> edited image (1, 3, H, W)."""

MODES = ("exhaustive", "amortised", "per-image")
RANKS = ("score", "loss")
"""How the anchors' picks are ranked: "score" = S = 2·S_t2i + S_i2i (the
paper), "loss" = the exact objective L (which also uses the source prompt)."""


@dataclass
class RegionsResult:
    """What ``learn_regions`` returns (H, W = the input image's size; K anchors, M sizes)."""
    box: tuple[int, int, int, int]   # best box (x0, y0, x1, y1), pixels, x1/y1 exclusive
    mask: torch.Tensor               # (1, 1, H, W) the best box as a mask
    image: torch.Tensor              # (1, 3, H, W) the edited image
    layer_rgb: torch.Tensor          # (1, 3, H, W) straight colour of the edit layer
    layer_alpha: torch.Tensor        # (1, 1, H, W) alpha of the edit layer (= box mask)
    best_anchor: int
    anchors: torch.Tensor            # (K, 2) (x, y) pixels
    boxes: torch.Tensor              # (K, M, 4) proposals
    choices: list[int]               # chosen box index per anchor
    initial_choices: list[int]       # per anchor: the network's argmax before per-image training
                                     # (amortised: its top-1; exhaustive: the loss argmin)
    scores: torch.Tensor             # (K,) S = 2·S_t2i + S_i2i of each anchor's chosen edit
    history: list[list[int]] = field(default_factory=list)    # per-image: (K, steps) sampled box index
    losses: list[list[float]] = field(default_factory=list)   # per-image: (K, steps) objective value
    saliency: torch.Tensor | None = None  # (h, w) DINO CLS attention, mean over heads
    box_losses: torch.Tensor | None = None  # (K, M) exact loss of each edited proposal, NaN if not edited
    expected_losses: list[float] = field(default_factory=list)  # per-image: (K,) sum softmax·L after training
    mode: str = "exhaustive"
    rank: str = "score"
    editor_runs: int = 0             # how many times the editor ran
    edited: torch.Tensor | None = None        # (K, M) bool, which proposals were edited
    box_scores: torch.Tensor | None = None    # (K, M) S of each edited proposal, NaN if not edited
    proposal_logits: torch.Tensor | None = None  # (K, M) the region model's logits (amortised / per-image)
    dino_view_hw: tuple[int, int] | None = None  # the size DINO saw

    def metadata(self) -> dict:
        """A JSON-able summary (node output, EXR provenance)."""
        k, m = self.boxes.shape[:2]
        return {"mode": self.mode, "rank": self.rank, "editor_runs": self.editor_runs,
                "proposals": k * m, "anchors": k, "box_sizes_per_anchor": m,
                "box": list(self.box), "best_anchor": self.best_anchor,
                "anchor_points": [[round(float(v), 2) for v in a] for a in self.anchors.tolist()],
                "choices": list(self.choices), "score": round(float(self.scores[self.best_anchor]), 5),
                "dino_view": list(self.dino_view_hw) if self.dino_view_hw else None}


def box_sizes_for(m: int, smallest: float = 0.2, largest: float = 0.8) -> tuple[float, ...]:
    """M box sides evenly spaced in [smallest, largest] (fractions of the shorter side)."""
    if m == 1:
        return (0.5 * (smallest + largest),)
    return tuple(smallest + (largest - smallest) * i / (m - 1) for i in range(m))


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


def _validate_mode(node: str, mode: str, rank: str, objective: str, r: int | None, m: int,
                   region_model) -> int:
    """Check the mode's settings; returns r, the proposals edited per anchor."""
    if mode not in MODES:
        raise InputError(node, "mode", f"is {mode!r}", ", ".join(MODES))
    if rank not in RANKS:
        raise InputError(node, "rank", f"is {rank!r}", ", ".join(RANKS))
    if objective not in OBJECTIVES:
        raise InputError(node, "objective", f"is {objective!r}", ", ".join(OBJECTIVES))
    if r is not None and r < 0:
        raise InputError(node, "proposals_per_anchor", f"is {r}", ">= 0 (0 = all M)")
    if mode == "exhaustive":
        return m
    if mode == "amortised" and region_model is None:
        raise InputError(node, "region_model", "is missing; mode 'amortised' needs a trained region "
                         "network", "a region model (toy-regions, or one from toyworld/train_regions.py)")
    r = (1 if mode == "amortised" else m) if r is None or r == 0 else min(r, m)
    if mode == "per-image" and region_model is None and r < m:
        raise InputError(node, "proposals_per_anchor", f"is {r} with no region model",
                         "0 (all M proposals), or give a region model to choose which to edit")
    if mode == "per-image" and r < 2 and m > 1:
        raise InputError(node, "proposals_per_anchor", f"is {r} in mode 'per-image'",
                         ">= 2 (training needs boxes to choose from) or 0 = all M")
    return r


def _run_editor(editor: Editor, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    out = editor(image, mask)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(image.shape):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the editor returned {got}; it must return the edited image "
                         f"with the input's shape {tuple(image.shape)}")
    return out.detach().to(image)


OBJECTIVES = ("gumbel", "expected", "image")
"""What ``train_anchor`` minimises (per-image mode; L_j = exact loss of proposal j's edit):

gumbel    sum_j y_j L_j with y the straight-through Gumbel-softmax sample:
          forward = the sampled box's loss, backward = the relaxed sample's
          gradient with every box's exact loss (default).
expected  sum_j softmax(logits)_j L_j, the expected loss (no sampling).
image     the first version: the CLIP loss of X_o = sum_j y_j Edit_j, a
          first-order (image-space) estimate of the other boxes' losses.
"""


def train_anchor(network, roi: torch.Tensor, edits: torch.Tensor, clip, targets,
                 steps: int, lr: float, generator: torch.Generator, tau: float = 1.0,
                 on_step: Callable[[int, float], None] | None = None, objective: str = "gumbel",
                 box_loss: torch.Tensor | None = None) -> tuple[list[int], list[float]]:
    """Train one anchor's region network (per-image mode).

    network: roi -> logits (m,) (``RegionNetwork`` or ``BoundRegionNetwork``);
    roi (m, C, l, l) box features; edits (m, 3, H, W) the editor's output
    for each box (no grad); ``box_loss`` (m,) their exact losses if already
    computed (else one batched CLIP pass here). Returns the box index per
    step (sampled; argmax for "expected") and the objective's value per step
    (for "gumbel" and "image": the loss of the sampled box's edit).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective {objective!r}: use one of {', '.join(OBJECTIVES)}")
    if objective != "image" and box_loss is None:
        box_loss = box_losses(clip, edits, targets)
    opt = torch.optim.Adam([p for p in network.parameters() if p.requires_grad], lr=lr)
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


@torch.no_grad()
def proposal_logits(region_model, roi: torch.Tensor, text: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """The amortised network's logits: roi (K, M, C, l, l), text (1, D),
    inputs (K, M, G) from ``box_inputs`` -> (K, M)."""
    net = region_model.network if hasattr(region_model, "network") else region_model
    return net(roi, text, inputs).float()


def top_r(logits: torch.Tensor, r: int) -> torch.Tensor:
    """(K, M) logits -> (K, M) bool, the r highest per row (ties: the smaller box first)."""
    order = torch.sort(logits, dim=1, descending=True, stable=True).indices[:, :r]
    chosen = torch.zeros_like(logits, dtype=torch.bool)
    return chosen.scatter_(1, order, True)


def pick(box_loss: torch.Tensor, box_score: torch.Tensor, choices: Sequence[int], rank: str) -> int:
    """The winning anchor: (K, M) losses and scores, a box index per anchor ->
    argmax of S (rank "score") or argmin of L (rank "loss") over the anchors' picks."""
    idx = torch.arange(box_loss.shape[0])
    ch = torch.as_tensor(list(choices))
    if rank == "loss":
        return int(box_loss[idx, ch].argmin())
    return int(box_score[idx, ch].argmax())


def lowest_loss(box_loss: torch.Tensor) -> list[int]:
    """(K, M) with NaN for unedited boxes -> the lowest-loss edited box per anchor
    (the first, i.e. smallest, of equal ones)."""
    return [int(torch.nan_to_num(row, nan=math.inf).argmin()) for row in box_loss]


def _per_image_network(region_model, channels: int, m: int, text, inputs, seed: int, a: int):
    """The network one anchor trains on this image: a copy of the amortised
    one (bound to this anchor's text and box inputs (m, G)) when given, else a
    fresh seeded one (the paper)."""
    if region_model is not None:
        net = copy.deepcopy(region_model.network).requires_grad_(True).train()
        return BoundRegionNetwork(net, text, inputs)
    with torch.random.fork_rng(devices=[]):                       # seeded init, global RNG untouched
        torch.manual_seed(seed * 1009 + a)
        return RegionNetwork(channels, m)


@dataclass
class _Plan:
    """What one image's search works on: the proposals ``boxes (K, M, 4)``,
    their RoI features ``roi (K, M, C, l, l)``, the CLIP targets and prompt
    embedding ``text (1, D)``, the region network's ``logits (K, M)`` and
    ``inputs`` (None without one), and ``edited (K, M)`` bool: the proposals
    the editor will run on."""
    boxes: torch.Tensor
    roi: torch.Tensor
    targets: object
    text: torch.Tensor
    logits: torch.Tensor | None
    inputs: torch.Tensor | None
    edited: torch.Tensor


def _plan(found, clip, image, prompt, source_prompt, sizes, mode, r, region_model) -> _Plan:
    """Stage 1: boxes around the anchors, their features, and which to edit."""
    H, W = image.shape[-2:]
    k, m = found.anchors.shape[0], len(sizes)
    boxes = box_proposals(found.anchors, sizes, (H, W))                         # (K, M, 4)
    roi = torch.stack([roi_features(found.feature_map, boxes[a], (H, W)) for a in range(k)])
    targets = clip_targets(clip, image, prompt, source_prompt)
    text = clip.encode_text([prompt]).float().cpu()                             # (1, D)
    logits = inputs = None
    if mode != "exhaustive" and region_model is not None:
        inputs = box_inputs(boxes, sizes, (H, W), found.feature_map, found.saliency, found.anchors)
        logits = proposal_logits(region_model, roi, text, inputs)
    if mode != "exhaustive" and r < m and logits is not None:
        edited = top_r(logits, r)
    else:
        edited = torch.ones(k, m, dtype=torch.bool)
    return _Plan(boxes, roi, targets, text, logits, inputs, edited)


def _edit_and_score(editor, clip, image, plan: _Plan, progress, total: int, mode: str):
    """Stage 2: run the editor on every planned proposal and score each edit
    exactly (one CLIP pass). Returns ({(a, j): (3, H, W) edit}, loss (K, M),
    score (K, M)); NaN where a proposal was not edited."""
    H, W = image.shape[-2:]
    k, m = plan.edited.shape
    edits: dict[tuple[int, int], torch.Tensor] = {}
    for a in range(k):
        for j in range(m):
            if plan.edited[a, j]:
                edits[a, j] = _run_editor(editor, image, box_mask(plan.boxes[a, j], (H, W)))[0]
                progress.update(len(edits), total, anchor=a, editor_runs=len(edits), mode=mode)
    flat = torch.stack([edits[a, j] for a, j in plan.edited.nonzero().tolist()])  # (runs, 3, H, W)
    box_loss = torch.full((k, m), math.nan)
    box_score = torch.full((k, m), math.nan)
    exact, score = losses_and_scores(clip, flat, plan.targets)
    box_loss[plan.edited], box_score[plan.edited] = exact.float().cpu(), score.float().cpu()
    return edits, box_loss, box_score


def _learn_each_anchor(plan: _Plan, edits, box_loss, clip, region_model, steps, lr, tau, objective,
                       seed, progress, total, runs, mode):
    """Stage 3 (per-image mode): train each anchor's box distribution on its
    edited proposals. Returns (choices, initial choices, histories, loss
    curves, expected losses), one per anchor."""
    choices, initial, history, losses, expected = [], [], [], [], []
    for a in range(plan.edited.shape[0]):
        idx = plan.edited[a].nonzero().view(-1)
        net = _per_image_network(region_model, plan.roi.shape[2], len(idx), plan.text,
                                 plan.inputs[a, idx] if plan.inputs is not None else None, seed, a)
        with torch.no_grad():
            initial.append(int(idx[int(net(plan.roi[a, idx]).argmax())]))
        gen = torch.Generator().manual_seed(seed * 7919 + a)
        base = runs + a * steps

        def on_step(step: int, loss: float, base=base, a=a) -> None:
            progress.update(base + step + 1, total, anchor=a, loss=loss, editor_runs=runs, mode=mode)

        anchor_edits = torch.stack([edits[a, int(j)] for j in idx])
        h, ls = train_anchor(net, plan.roi[a, idx], anchor_edits, clip, plan.targets, steps, lr, gen,
                             tau, on_step, objective=objective, box_loss=box_loss[a, idx])
        with torch.no_grad():
            z = net(plan.roi[a, idx])
        choices.append(int(idx[int(z.argmax())]))
        history.append([int(idx[i]) for i in h])
        losses.append(ls)
        expected.append(float((F.softmax(z, dim=-1) * box_loss[a, idx]).sum()))
    return choices, initial, history, losses, expected


def learn_regions(dino, clip, editor: Editor, image: torch.Tensor, prompt: str, *,
                  K: int = 9, M: int | None = None, box_sizes: Sequence[float] | None = None,
                  mode: str = "exhaustive", proposals_per_anchor: int | None = None,
                  region_model=None, rank: str = "score",
                  steps: int = 30, seed: int = 0, lr: float = 3e-3, tau: float = 1.0,
                  source_prompt: str = "a photo", dino_size: int | str | None = None,
                  nms_radius: int = 1, objective: str = "gumbel", progress: Progress | None = None,
                  node: str = "LL_LearnableRegions") -> RegionsResult:
    """Find the region to edit for ``prompt`` and edit it.

    dino: DINOHandle; clip: CLIPHandle; editor(image, mask) -> edited image.
    image (1, 3, H, W) [0,1]. K anchors, M boxes per anchor (``box_sizes``:
    sides as fractions of the shorter side; default ``box_sizes_for(M)`` or
    DEFAULT_BOX_SIZES). ``mode`` (module docstring): "exhaustive" (K·M
    editor runs, the reference), "amortised" (K·r runs; needs
    ``region_model``, a ``RegionModel``), "per-image" (``steps`` Adam steps,
    ``lr``, ``tau``, ``objective`` per anchor on the edited proposals).
    ``proposals_per_anchor`` r: edited per anchor (amortised default 1,
    per-image default all; 0 = all; exhaustive always all). ``rank``: "score"
    (S) or "loss". ``source_prompt`` describes the unedited image (the
    directional loss). ``dino_size``: the size DINO sees (None = its working
    size, "image" = the input's own, or a shorter-side length).
    """
    progress = ensure(progress, node)
    sizes = tuple(box_sizes) if box_sizes is not None else (
        box_sizes_for(M) if M is not None else DEFAULT_BOX_SIZES)
    if M is not None and len(sizes) != M:
        raise InputError(node, "box_sizes", f"has {len(sizes)} sizes but M = {M}", "len(box_sizes) == M")
    _validate(node, image, prompt, K, sizes, steps)
    m = len(sizes)
    r = _validate_mode(node, mode, rank, objective, proposals_per_anchor, m, region_model)
    if region_model is not None and mode != "exhaustive":
        region_model.check_compatible(dino, clip, node)
    image = image.detach().float()
    H, W = image.shape[-2:]

    found = dino_anchors(dino, image, K, nms_radius, dino_size, node=node)
    plan = _plan(found, clip, image, prompt, source_prompt, sizes, mode, r, region_model)
    k = plan.boxes.shape[0]
    total = int(plan.edited.sum()) + (k * steps if mode == "per-image" else 0)
    edits, box_loss, box_score = _edit_and_score(editor, clip, image, plan, progress, total, mode)
    runs = len(edits)
    history, losses, expected = [], [], []
    if mode == "per-image":
        choices, initial, history, losses, expected = _learn_each_anchor(
            plan, edits, box_loss, clip, region_model, steps, lr, tau, objective, seed,
            progress, total, runs, mode)
    else:
        choices = lowest_loss(box_loss)
        initial = ([int(v) for v in plan.logits.argmax(1)] if plan.logits is not None
                   else list(choices))
    boxes, logits = plan.boxes, plan.logits
    edited = plan.edited
    best = pick(box_loss, box_score, choices, rank)
    box = tuple(int(v) for v in boxes[best, choices[best]].tolist())
    mask = box_mask(box, (H, W))
    chosen = edits[best, choices[best]][None].clone()
    del edits
    scores = box_score[torch.arange(k), torch.as_tensor(choices)]
    return RegionsResult(box=box, mask=mask, image=chosen, layer_rgb=chosen.clone(), layer_alpha=mask,
                         best_anchor=best, anchors=found.anchors, boxes=boxes, choices=choices,
                         initial_choices=initial, scores=scores, history=history, losses=losses,
                         saliency=found.saliency, box_losses=box_loss, expected_losses=expected,
                         mode=mode, rank=rank, editor_runs=runs, edited=edited, box_scores=box_score,
                         proposal_logits=logits, dino_view_hw=found.view_hw)
