"""Train the tiny toy-world DINO ViT and save it as a LiveLayers DINO folder.

    nice -n 10 python -m livelayers.toyworld.train_dino --out tests/assets/toy_dino

DINO (Caron et al., 2021) in miniature: a student ViT and a teacher that is
an exponential moving average of the student. Both end in a projection head
(3-layer MLP, L2-normalised bottleneck, weight-normalised prototype layer).
The teacher sees the two global crops, the student all crops (2 global at
64 px, a few local ones at 32 px, which the ViT takes by interpolating its
position embeddings); the loss is the cross-entropy between the teacher's
centred, sharpened distribution (temperature 0.04) and the student's
(temperature 0.1) over every pair of different crops. Centring (EMA of the
teacher's outputs) and sharpening together prevent collapse.

On toy-world scenes the only things that vary besides the background type
are the objects; the views of one image also get independent backgrounds
(``ScenePool.views``), so what they share is only the objects, and the
self-distilled CLS token learns to look at them:
:func:`attention_hit_rate` measures how often the peak of the last block's
CLS attention (mean over heads) lands on an object of a held-out scene.

Defaults: 600 steps, batch 32, 2 global + 2 local crops (~15 min on two
busy CPU cores). Model: 64 px, patch 8 (8x8 grid), 4 blocks, width 96, 3 heads. The saved
folder holds only the backbone (fp16, ~1 MB) and a config.json that records
the run and its measured hit rate.
"""
from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..engine.checkpoint import load_checkpoint, load_states, rng_state, save_checkpoint, set_rng_state, states
from ..engine.errors import Cancelled
from ..engine.models.dino import ViT, ViTConfig, save_dino
from ..engine.progress import Progress, ensure
from . import scenes
from .cli import training_parser

MODEL_CFG = ViTConfig(image_size=64, patch_size=8, width=96, depth=4, heads=3, mlp_ratio=4.0,
                      ln_eps=1e-6, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


class DINOHead(nn.Module):
    """MLP -> L2-normalised bottleneck -> weight-normalised prototypes."""

    def __init__(self, width: int, out_dim: int = 256, hidden: int = 256, bottleneck: int = 64):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, hidden),
                                 nn.GELU(), nn.Linear(hidden, bottleneck))
        self.prototypes = nn.Parameter(torch.randn(out_dim, bottleneck) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, C) CLS tokens -> logits (N, out_dim)."""
        z = F.normalize(self.mlp(x), dim=-1)
        return z @ F.normalize(self.prototypes, dim=-1).T  # weight norm with g = 1


class Student(nn.Module):
    def __init__(self, cfg: ViTConfig, out_dim: int):
        super().__init__()
        self.backbone = ViT(cfg)
        self.head = DINOHead(cfg.width, out_dim)

    def forward(self, crops: list[torch.Tensor]) -> torch.Tensor:
        """Crops of one or more sizes (each (N, 3, s, s), normalised) -> logits (len·N, K).
        Crops of equal size go through the backbone together."""
        outs = []
        for x in crops:
            tokens, _, _ = self.backbone(x)
            outs.append(tokens[:, 0])
        return self.head(torch.cat(outs))


# --------------------------------------------------------------------------- data

def random_resized_crops(images: torch.Tensor, size: int, scale: tuple[float, float],
                         gen: torch.Generator) -> torch.Tensor:
    """One random square crop per image (area fraction in ``scale``), with a
    random horizontal flip and brightness/contrast jitter, resampled to
    ``size``. images (N, 3, H, W) [0,1] -> (N, 3, size, size) [0,1]."""
    n = images.shape[0]
    area = torch.empty(n).uniform_(*scale, generator=gen)
    side = area.sqrt()                                   # fraction of the image side
    cx = (torch.rand(n, generator=gen) * 2 - 1) * (1 - side)
    cy = (torch.rand(n, generator=gen) * 2 - 1) * (1 - side)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = side * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = side, cy
    grid = F.affine_grid(theta, (n, 3, size, size), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    bright = torch.empty(n, 1, 1, 1).uniform_(0.8, 1.2, generator=gen)
    contrast = torch.empty(n, 1, 1, 1).uniform_(0.8, 1.2, generator=gen)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    return ((out - mean) * contrast + mean * bright).clamp(0, 1)


class ScenePool:
    """Pre-rendered toy scenes (1-2 objects) with their object masks, plus a
    bank of backgrounds; a slice of scenes is refreshed each step.

    ``views`` composites each scene's objects over a background drawn
    independently per view ("background swap"): the only thing two views of
    one image share is then the objects, so self-distillation cannot cluster
    images by background type (the shortcut a tiny ViT takes otherwise).
    """

    def __init__(self, rng: np.random.Generator, count: int, size: int, backgrounds: int = 256):
        self.rng, self.size = rng, size
        imgs, masks = self._render(count)
        self.images, self.masks = torch.from_numpy(imgs), torch.from_numpy(masks)
        bank = [scenes.render_background(str(rng.choice(scenes.BACKGROUNDS)), size, size,
                                         int(rng.integers(2**31))) for _ in range(backgrounds)]
        self.backgrounds = torch.from_numpy(np.stack(bank).transpose(0, 3, 1, 2).copy())

    def _render(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        imgs, masks = [], []
        for _ in range(count):
            n = 1 if self.rng.random() < 0.6 else 2
            scene = scenes.random_scene(self.rng, n_objects=n, distinct=False)
            img, m = scenes.render_scene(scene, self.size, supersample=2)
            imgs.append(img.transpose(2, 0, 1))
            masks.append(m.sum(0, keepdims=True).clip(0, 1))
        return np.stack(imgs).astype(np.float32), np.stack(masks).astype(np.float32)

    def refresh(self, count: int) -> None:
        idx = torch.from_numpy(self.rng.choice(len(self.images), count, replace=False))
        imgs, masks = self._render(count)
        self.images[idx], self.masks[idx] = torch.from_numpy(imgs), torch.from_numpy(masks)

    def batch(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(images (N, 3, S, S), masks (N, 1, S, S)) of ``count`` random scenes."""
        idx = torch.from_numpy(self.rng.choice(len(self.images), count, replace=False))
        return self.images[idx], self.masks[idx]

    def views(self, images: torch.Tensor, masks: torch.Tensor, swap: float = 0.8) -> torch.Tensor:
        """The scenes with a new random background (probability ``swap`` each)."""
        n = images.shape[0]
        bg = self.backgrounds[torch.from_numpy(self.rng.integers(len(self.backgrounds), size=n))]
        keep = torch.from_numpy(self.rng.random(n) >= swap).view(n, 1, 1, 1)
        swapped = masks * images + (1 - masks) * bg
        return torch.where(keep, images, swapped)


def _normalise(x: torch.Tensor, cfg: ViTConfig) -> torch.Tensor:
    mean = torch.tensor(cfg.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std).view(1, 3, 1, 1)
    return (x - mean) / std


# --------------------------------------------------------------------------- loss

def dino_loss(student: torch.Tensor, teacher: torch.Tensor, center: torch.Tensor,
              n_global: int, t_student: float = 0.1, t_teacher: float = 0.04) -> torch.Tensor:
    """Cross-entropy between teacher and student distributions over pairs of
    different crops. student (n_crops·N, K), teacher (n_global·N, K)."""
    per_crop = teacher.shape[0] // n_global
    s = (student / t_student).log_softmax(-1).chunk(student.shape[0] // per_crop)
    t = ((teacher - center) / t_teacher).softmax(-1).detach().chunk(n_global)
    total, terms = 0.0, 0
    for i, ti in enumerate(t):
        for j, sj in enumerate(s):
            if i == j:
                continue  # never match a crop with itself
            total = total + (-ti * sj).sum(-1).mean()
            terms += 1
    return total / terms


# --------------------------------------------------------------------------- evaluation

@torch.no_grad()
def attention_hit_rate(backbone: ViT, n: int = 200, seed: int = 4242, size: int = 64,
                       min_cover: float = 0.25) -> dict[str, float]:
    """How often the last block's CLS-attention peak (mean over heads) lands
    on an object, over ``n`` held-out scenes with 1-2 objects.

    A patch is "on an object" when the objects cover at least ``min_cover``
    of it. Also returns the chance rate (object-covered fraction of patches).
    """
    rng = np.random.default_rng(seed)
    cfg = backbone.cfg
    imgs, covers = [], []
    for i in range(n):
        scene = scenes.random_scene(rng, n_objects=1 + i % 2)
        img, masks = scenes.render_scene(scene, size)
        imgs.append(img.transpose(2, 0, 1))
        covers.append(masks.sum(0).clip(0, 1))
    x = _normalise(torch.from_numpy(np.stack(imgs)), cfg)
    _, attn, (h, w) = backbone.eval()(x)
    cls_attn = attn[:, :, 0, 1:].mean(1)                      # (n, h*w)
    peak = cls_attn.argmax(-1).numpy()
    cover = torch.from_numpy(np.stack(covers))[:, None]
    patch_cover = F.avg_pool2d(cover, size // h).flatten(1).numpy()
    hits = patch_cover[np.arange(n), peak] >= min_cover
    chance = (patch_cover >= min_cover).mean()
    return {"hit_rate": float(hits.mean()), "chance": float(chance), "scenes": n}


# --------------------------------------------------------------------------- training

def train(out: Path | None, steps: int = 600, batch: int = 32, lr: float = 1e-3, seed: int = 0,
          n_local: int = 2, out_dim: int = 256, run_dir: Path | None = None,
          threads: int | None = None, progress: Progress | None = None) -> dict:
    """Train; returns the final hit-rate report. ``run_dir`` holds a resumable
    checkpoint (written every 100 steps and on Cancelled)."""
    progress = ensure(progress, "train_dino")
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    student = Student(MODEL_CFG, out_dim)
    teacher = copy.deepcopy(student).requires_grad_(False)
    opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.04)
    center = torch.zeros(1, out_dim)
    objects = {"student": student, "teacher": teacher, "opt": opt, "gen": gen}   # checkpoint keys
    pool = ScenePool(rng, 1500, MODEL_CFG.image_size)
    start = 0
    ckpt = Path(run_dir) / "checkpoint.pt" if run_dir else None
    if ckpt is not None and ckpt.is_file():
        state = load_checkpoint(ckpt, expect={"kind": "toy_dino", "version": 1})
        load_states(state, objects)
        center, start = state["center"], state["step"]
        set_rng_state(state["rng"])
        rng.bit_generator.state = json.loads(state["np_rng"])

    def save(step: int) -> None:
        if ckpt is not None:
            save_checkpoint(ckpt, {"kind": "toy_dino", "version": 1, "step": step, **states(objects),
                                   "center": center, "rng": rng_state(),
                                   "np_rng": json.dumps(rng.bit_generator.state)})

    warmup = max(1, steps // 10)
    print(f"step {start}: {attention_hit_rate(teacher.backbone)}", flush=True)
    t0 = time.time()
    step = start
    try:
        for step in range(start + 1, steps + 1):
            frac = step / steps
            for g in opt.param_groups:  # linear warm-up, cosine decay
                g["lr"] = lr * min(1.0, step / warmup) * 0.5 * (1 + math.cos(math.pi * frac))
            momentum = 1 - (1 - 0.99) * 0.5 * (1 + math.cos(math.pi * frac))
            images, masks = pool.batch(batch)
            globals_ = [random_resized_crops(pool.views(images, masks), 64, (0.35, 1.0), gen)
                        for _ in range(2)]
            locals_ = [random_resized_crops(pool.views(images, masks), 32, (0.08, 0.35), gen)
                       for _ in range(n_local)]
            g_in = _normalise(torch.cat(globals_), MODEL_CFG)
            l_in = _normalise(torch.cat(locals_), MODEL_CFG)
            with torch.no_grad():
                t_out = teacher([g_in])
            s_out = student([g_in, l_in])
            loss = dino_loss(s_out, t_out, center, n_global=2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(student.parameters(), 3.0)
            opt.step()
            with torch.no_grad():
                for pt, ps in zip(teacher.parameters(), student.parameters()):
                    pt.mul_(momentum).add_(ps.detach(), alpha=1 - momentum)
                center = 0.9 * center + 0.1 * t_out.mean(0, keepdim=True)
            pool.refresh(batch // 8)
            if step % 50 == 0:
                used = int(t_out.argmax(-1).unique().numel())  # collapse check
                print(f"step {step}/{steps} loss {loss.item():.4f} prototypes used {used}/{len(t_out)} "
                      f"{(time.time() - t0) / (step - start):.2f}s/step", flush=True)
            if step % 100 == 0:
                print(f"step {step}: {attention_hit_rate(teacher.backbone)}", flush=True)
            if step % 100 == 0:
                save(step)
            progress.update(step, steps, loss=loss.item())
    except Cancelled:
        save(step)
        raise
    report = attention_hit_rate(teacher.backbone)
    report.update(steps=steps, batch=batch, seed=seed)
    if out is not None:
        save_dino(teacher.backbone, out, extra={"trained_with": "toyworld/train_dino.py",
                                                **report}, half=True)
    return report


def main(argv=None) -> None:
    ap = training_parser(__doc__, out="tests/assets/toy_dino", steps=600, batch=32, lr=1e-3)
    args = ap.parse_args(argv)
    report = train(args.out, args.steps, args.batch, args.lr, args.seed,
                   run_dir=args.run_dir, threads=args.threads)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
