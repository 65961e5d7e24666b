"""Text-driven stylisation of a video object (Loeschcke et al. 2022) in a
layered atlas: fine-tune a copy of the foreground atlas colour field.

Entry point: ``stylise_atlas(clip, atlas, global_text, local_text)``.

Only the copy of ``fields.atlas_fg`` learns; the mappings, the opacity and
the background atlas are the decomposition's, frozen. One step:

1. a batch of frames t1 < t2 < t3 (default 3), each cropped to its object box
   (from the opacity, + margin, squared) — boxes, UVs, opacities and the
   reconstruction's background inside them are computed once
   (:class:`ObjectCrops`);
2. the stylised colour c' = rgb_fg'(uv_fg) of every crop pixel; the crop
   I = A·c' + (1 − A)·background, A the layer alpha (the opacity, 0 below the
   cut-off, exactly as rendered);
3. global and local CLIP views of each crop (``views.py``), one CLIP pass;
4. the weighted loss (``losses.py``) with a prefix drawn for each text, one
   Adam step; lr × ``lr_decay`` every ``lr_every`` steps.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..atlas.crops import Box, object_box, square_box
from ..atlas.store import Atlas, _tensor_digest
from ..checkpoint import CHECKPOINT_NAME, resume_run, save_checkpoint, states
from ..device import pick_device
from ..errors import Cancelled, InputError
from ..progress import Progress, ensure
from . import losses as L
from .render import layer_alpha
from .settings import PREFIXES, TERMS, StyliseSettings, apply_prefix
from .views import sample_views

RUN_KIND = "livelayers.stylise.run"
RUN_VERSION = 1
LOSS_NAMES = ("total",) + TERMS


@dataclass
class ObjectCrops:
    """Frozen per-frame data inside each frame's object box (lists by frame).

    boxes: the crop ``Box`` of each frame; uv ``(h·w, 2)`` foreground UVs of
    the crop pixels (row-major); alpha ``(1, 1, h, w)`` the layer alpha (cut);
    opacity ``(1, 1, h, w)`` the raw opacity; background ``(1, 3, h, w)`` =
    (1 − alpha)·the reconstruction's background colour.
    """
    boxes: list[Box]
    uv: list[torch.Tensor]
    alpha: list[torch.Tensor]
    opacity: list[torch.Tensor]
    background: list[torch.Tensor]


@dataclass
class StyliseResult:
    """What ``stylise_atlas`` returns: the stylised atlas (a new ``Atlas``
    sharing the source's mappings, opacity and background), the loss history
    ``{name: [value per step]}``, and the steps trained in total."""
    atlas: Atlas
    losses: dict[str, list[float]] = field(default_factory=dict)
    steps: int = 0


def object_boxes(alpha: torch.Tensor, threshold: float, margin: float) -> list[Box]:
    """Per frame the square box around the object: ``alpha`` ``(N, 1, H, W)``;
    the pixels with opacity ≥ ``threshold``, grown by ``margin`` × the longer
    side on every side, squared, inside the frame."""
    h, w = alpha.shape[-2:]
    boxes = []
    for a in alpha:
        tight = object_box(a, threshold, margin=0, min_size=1)
        grow = round(margin * max(tight.width, tight.height))
        boxes.append(square_box(object_box(a, threshold, margin=grow, min_size=1), h, w))
    return boxes


@torch.no_grad()
def object_crops(atlas: Atlas, s: StyliseSettings, device: torch.device) -> ObjectCrops:
    """Everything frozen that a step needs, for every frame of the atlas."""
    _, _, alpha = atlas.frame_maps(list(range(atlas.n_frames)))
    boxes = object_boxes(alpha, s.box_threshold, s.margin)
    crops = ObjectCrops(boxes, [], [], [], [])
    fields = atlas.fields
    dev = next(fields.parameters()).device
    for t, box in enumerate(boxes):
        uv_f, uv_b, a = (box.crop(m) for m in atlas.frame_maps([t]))
        h, w = box.height, box.width
        bg = fields.rgb_bg(uv_b.permute(0, 2, 3, 1).reshape(-1, 2).to(dev)).cpu()
        bg = bg.T.reshape(1, 3, h, w)
        cut = layer_alpha(a, s.alpha_cutoff)
        crops.uv.append(uv_f.permute(0, 2, 3, 1).reshape(-1, 2).contiguous().to(device))
        crops.alpha.append(cut.to(device))
        crops.opacity.append(a.to(device))
        crops.background.append(((1 - cut) * bg).to(device))
    return crops


def stylised_fields(atlas: Atlas, device: torch.device):
    """A copy of the atlas's fields in which only ``atlas_fg`` can learn."""
    fields = copy.deepcopy(atlas.fields).to(device)
    fields.requires_grad_(False)
    fields.atlas_fg.requires_grad_(True)
    fields.atlas_fg.train()
    return fields


def make_optimizer(fields, s: StyliseSettings) -> torch.optim.Adam:
    """Adam on the fg colour field. A hash-grid field's tables take ``lr`` and
    its MLP ``lr × mlp_lr_ratio`` (the decomposition's split): the MLP is
    shared by the whole atlas, and at the tables' rate it shifts every colour
    at once and saturates the sigmoid. A positional field: all at ``lr``."""
    named = list(fields.atlas_fg.named_parameters())
    tables = [p for n, p in named if n.endswith("encoding.table")]
    mlp = [p for n, p in named if not n.endswith("encoding.table")]
    groups = [{"params": mlp, "lr": s.lr * (s.mlp_lr_ratio if tables else 1.0)}]
    if tables:
        groups.append({"params": tables, "lr": s.lr})
    for g in groups:
        g["base_lr"] = g["lr"]
    return torch.optim.Adam(groups)


def step_texts(gen: torch.Generator, texts: tuple[str, str], count: int) -> tuple[str, str]:
    """Both texts, each with a neutral prefix drawn from the first ``count``."""
    if count == 0:
        return texts
    picks = torch.randint(0, count, (2,), generator=gen).tolist()
    return tuple(apply_prefix(PREFIXES[k], t) for k, t in zip(picks, texts))


def views_needed(s: StyliseSettings) -> tuple[int, int]:
    """(global, local) views per frame that the switched-on terms need. The
    temporal term compares frames through their global views (local ones
    when there are none)."""
    n_g = s.n_global if (s.weight("global") > 0 or s.weight("temporal") > 0) else 0
    n_l = s.n_local if (s.weight("local") > 0 or (s.weight("temporal") > 0 and n_g == 0)) else 0
    return n_g, n_l


def render_crop(fields, crops: ObjectCrops, t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stylised colour ``(1, 3, h, w)`` of frame ``t``'s crop and the
    premultiplied object part A·c' (differentiable wrt the fg field)."""
    box = crops.boxes[t]
    colour = fields.rgb_fg(crops.uv[t]).T.reshape(1, 3, box.height, box.width)
    return colour, crops.alpha[t] * colour


def step_terms(fields, crops: ObjectCrops, clip, texts: tuple[str, str], s: StyliseSettings,
               gen: torch.Generator) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Every loss term of one random batch, unweighted: ({term: scalar}, the
    batch's preview crop ``(1, 3, h, w)``). Every term the views allow is
    computed, so progress shows it even when it is switched off; which views
    are drawn depends only on ``views_needed``, so switching a term off does
    not change the random draws."""
    n_frames = len(crops.boxes)
    b = min(s.batch_frames, n_frames)
    idx = torch.randperm(n_frames, generator=gen)[:b].sort().values
    t_global, t_local = step_texts(gen, texts, s.prefixes)
    n_g, n_l = views_needed(s)
    views, sparsity, preview = [], [], None
    for t in idx.tolist():
        colour, obj = render_crop(fields, crops, t)
        views.append(sample_views(gen, obj, crops.background[t], crops.alpha[t], n_g, n_l,
                                  clip.image_size, s))
        sparsity.append(L.sparsity_loss(colour, crops.opacity[t]))
        if preview is None:
            preview = (obj + crops.background[t]).detach()
    emb = clip.encode_image(torch.cat(views)).view(b, n_g + n_l, -1)
    ref = emb.device
    terms: dict[str, torch.Tensor] = {"sparsity": torch.stack(sparsity).mean().to(ref)}
    if n_g:
        terms["global"] = L.text_loss(emb[:, :n_g], clip.encode_text(t_global)[0])
    if n_l:
        terms["local"] = L.text_loss(emb[:, n_g:], clip.encode_text(t_local)[0])
    frame_emb = L.frame_embeddings(emb[:, :n_g] if n_g else emb)
    terms["temporal"] = L.triplet_loss(frame_emb, idx.to(ref), s.sigma)
    return terms, preview


def weighted_loss(terms: dict[str, torch.Tensor], s: StyliseSettings) -> torch.Tensor:
    """Σ λ·term over the switched-on terms."""
    return sum(s.weight(k) * v for k, v in terms.items() if s.weight(k) > 0)


def training_step(fields, crops: ObjectCrops, clip, texts: tuple[str, str], s: StyliseSettings,
                  gen: torch.Generator) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
    """One step's loss: (loss, numbers of every term, preview crop ``(1, 3, h, w)``)."""
    terms, preview = step_terms(fields, crops, clip, texts, s, gen)
    loss = weighted_loss(terms, s)
    numbers = {k: float(v.detach()) for k, v in terms.items()}
    numbers["total"] = float(loss.detach())
    return loss, numbers, preview


# Settings a run folder may change between calls: more steps continue the run.
EXTENDABLE_SETTINGS = ("steps", "checkpoint_every")


def fingerprint(atlas: Atlas, clip, texts: tuple[str, str], s: StyliseSettings, seed: int,
                *, run: bool = False) -> str:
    """Identity of a stylisation's inputs (same steps too). ``run=True``: the
    run folder's identity, without ``EXTENDABLE_SETTINGS``, so asking for
    more steps resumes the folder instead of refusing it."""
    identity = s.to_dict()
    if run:
        for key in EXTENDABLE_SETTINGS:
            identity.pop(key)
    h = hashlib.sha256()
    h.update(_tensor_digest(atlas.fields.state_dict()).encode())
    for part in (*texts, json.dumps(identity, sort_keys=True), str(seed), getattr(clip, "spec", ""),
                 getattr(clip, "source", "")):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def check_inputs(atlas, clip, global_text: str, local_text: str, s: StyliseSettings, node: str) -> None:
    if not isinstance(atlas, Atlas):
        raise InputError(node, "atlas", f"is a {type(atlas).__name__}", "LL_ATLAS from "
                         "LL_AtlasDecompose or LL_LoadAtlas")
    if not hasattr(clip, "encode_image"):
        raise InputError(node, "clip", f"is a {type(clip).__name__}", "LL_CLIP from LL_LoadCLIP")
    for name, text, term in (("global_text", global_text, "global"), ("local_text", local_text, "local")):
        if s.weight(term) > 0 and not text.strip():
            raise InputError(node, name, "is empty while its term is on",
                             f"a text, or switch use_{term} off")
    s.validate(node)


def _save_run(run_dir: Path, fields, opt, gen, step, fp, history) -> None:
    save_checkpoint(run_dir / CHECKPOINT_NAME, {
        "kind": RUN_KIND, "version": RUN_VERSION, "fingerprint": fp, "step": step,
        **states({"field": fields.atlas_fg, "optimizer": opt, "generator": gen}), "history": history})


def _resume(run_dir: Path | None, fields, opt, gen, fp, history) -> int:
    """Restore the run folder's checkpoint (if any); returns the step reached."""
    state = resume_run(run_dir, RUN_KIND, RUN_VERSION, fp,
                       {"field": fields.atlas_fg, "optimizer": opt, "generator": gen},
                       "another atlas, text, settings, CLIP or seed")
    if state is None:
        return 0
    for k, v in state["history"].items():
        history[k] = list(v)
    return int(state["step"])


def stylised_info(source: Atlas, clip, texts, s: StyliseSettings, seed: int, fp: str, steps: int) -> dict:
    """The stylised atlas's ``info``: marked ``stylised`` so a reader knows,
    with what made it; its ``fingerprint`` is the stylisation's own, so it can
    never be mistaken for (and reused as) the decomposition it came from."""
    return {"seed": seed, "fingerprint": fp, "train_psnr": source.info.get("train_psnr"),
            "stylised": {"global_text": texts[0], "local_text": texts[1], "seed": seed,
                         "steps": steps, "alpha_cutoff": s.alpha_cutoff,
                         "clip": getattr(clip, "spec", ""), "settings": s.to_dict(),
                         "source_fingerprint": source.info.get("fingerprint"),
                         "source_seed": source.info.get("seed")}}


def stylise_atlas(clip, atlas: Atlas, global_text: str, local_text: str,
                  settings: StyliseSettings | None = None, seed: int = 0, device: str = "auto",
                  run_dir: str | Path | None = None, progress: Progress | None = None,
                  node: str = "LL_StyliseVideoObject") -> StyliseResult:
    """Stylise the atlas's foreground object after the two texts.

    ``global_text`` describes the whole stylised object ("a swan with
    crocodile skin"), ``local_text`` its surface ("crocodile skin").
    Progress reports every loss term and a preview crop; a stop request saves
    ``run_dir/checkpoint.pt`` and raises ``Cancelled``; the same call resumes
    it (bit-identical on the CPU). Returns a :class:`StyliseResult`.
    """
    progress = ensure(progress, node)
    s = settings or StyliseSettings()
    check_inputs(atlas, clip, global_text, local_text, s, node)
    texts = (global_text.strip(), local_text.strip())
    dev = pick_device(device)
    run_dir = None if run_dir in (None, "") else Path(run_dir)
    fp = fingerprint(atlas, clip, texts, s, seed)
    run_fp = fingerprint(atlas, clip, texts, s, seed, run=True)

    crops = object_crops(atlas, s, dev)
    fields = stylised_fields(atlas, dev)
    opt = make_optimizer(fields, s)
    gen = torch.Generator().manual_seed(seed)
    history: dict[str, list[float]] = {k: [] for k in LOSS_NAMES}
    step = _resume(run_dir, fields, opt, gen, run_fp, history)
    try:
        while step < s.steps:
            for group in opt.param_groups:   # the paper's step schedule, from the step alone
                group["lr"] = group["base_lr"] * s.lr_decay ** (step // s.lr_every)
            loss, numbers, preview = training_step(fields, crops, clip, texts, s, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            for k in LOSS_NAMES:
                history[k].append(numbers.get(k, 0.0))
            if run_dir is not None and step % s.checkpoint_every == 0 and step < s.steps:
                _save_run(run_dir, fields, opt, gen, step, run_fp, history)
            info = {"loss": numbers["total"], **{k: v for k, v in numbers.items() if k != "total"}}
            if progress.wants_preview(step):
                info["preview"] = preview.clamp(0, 1).cpu()
            progress.update(step, s.steps, **info)
    except (Cancelled, KeyboardInterrupt):
        if run_dir is not None:
            _save_run(run_dir, fields, opt, gen, step, run_fp, history)
        raise
    if run_dir is not None:  # finished: a repeat call returns at once
        _save_run(run_dir, fields, opt, gen, step, run_fp, history)
    fields.requires_grad_(False)
    fields.eval()
    out = Atlas(fields.cpu(), atlas.settings, atlas.geometry, list(atlas.frame_numbers),
                dict(atlas.boxes), info=stylised_info(atlas, clip, texts, s, seed, fp, step),
                _maps=atlas._maps)   # same mappings and opacity: share the per-frame cache
    return StyliseResult(out, history, step)


def stylise_or_reuse(clip, atlas: Atlas, global_text: str, local_text: str,
                     settings: StyliseSettings | None = None, seed: int = 0,
                     atlas_path: str | Path | None = None, *, device: str = "auto",
                     run_dir: str | Path | None = None, progress: Progress | None = None,
                     node: str = "LL_StyliseVideoObject") -> Atlas:
    """Stylise once per job: the stylised atlas already saved at ``atlas_path``
    when it was made from the same source atlas, texts, settings, CLIP and
    seed (its fingerprint), else :func:`stylise_atlas` and save the result
    there (atomically). ``atlas_path`` None or "" = always train, save nothing.
    Returns the stylised ``Atlas``."""
    from ..atlas.store import load_matching, save_atlas
    s = settings or StyliseSettings()
    check_inputs(atlas, clip, global_text, local_text, s, node)
    texts = (global_text.strip(), local_text.strip())
    if atlas_path:
        done = load_matching(atlas_path, fingerprint(atlas, clip, texts, s, int(seed)))
        if done is not None:
            return done
    done = stylise_atlas(clip, atlas, *texts, settings=s, seed=int(seed), device=device,
                         run_dir=run_dir, progress=progress, node=node).atlas
    if atlas_path:
        save_atlas(done, atlas_path)
    return done

