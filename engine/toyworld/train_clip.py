"""Train the tiny toy-world CLIP and save it in open_clip's ``local-dir`` format.

    python -m livelayers.engine.toyworld.train_clip --out tests/assets/toy_clip

The model is a real open_clip ``CLIP`` (ViT image tower, transformer text
tower, the standard BPE tokenizer), only small: 64 px images, patch 8, 4
blocks of width 128; text 3 blocks of width 128, context 24; embedding 128.
It is trained contrastively (open_clip's ``ClipLoss``) on procedurally drawn
scenes with captions of random detail. Weights are written as fp16
safetensors through open_clip's own ``save_for_hf`` so that
``open_clip.create_model('local-dir:…')`` loads them unchanged.
"""
from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..atomic import replace_folder
from . import scenes

MODEL_CFG = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": 64, "layers": 4, "width": 128, "head_width": 32,
                   "patch_size": 8, "mlp_ratio": 4.0},
    "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 128, "heads": 4,
                 "layers": 3},
}
# Same normalisation as OpenAI CLIP, so the handle treats toy and real models alike.
PREPROCESS_CFG = {
    "size": 64,
    "mean": [0.48145466, 0.4578275, 0.40821073],
    "std": [0.26862954, 0.26130258, 0.27577711],
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}


def build_model():
    import open_clip
    return open_clip.CLIP(**MODEL_CFG)


def save_local_dir(model, out: Path, extra: dict | None = None) -> None:
    """Atomically (re)write a ``local-dir`` model folder."""
    from open_clip.constants import HF_CONFIG_NAME, HF_SAFE_WEIGHTS_NAME
    from safetensors.torch import save_file

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp_", dir=out.parent))
    # fp16 halves the committed size; the handle upcasts on load.
    state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp / HF_SAFE_WEIGHTS_NAME))
    cfg = {"model_cfg": MODEL_CFG, "preprocess_cfg": PREPROCESS_CFG}
    if extra:
        cfg["livelayers"] = extra
    (tmp / HF_CONFIG_NAME).write_text(json.dumps(cfg, indent=2))
    replace_folder(tmp, out)


def _to_tensor(images_u8: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images_u8).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(PREPROCESS_CFG["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(PREPROCESS_CFG["std"]).view(1, 3, 1, 1)
    return (x - mean) / std


class ScenePool:
    """A pool of pre-rendered scenes, refreshed a slice at a time, so that
    rendering costs little next to the training step."""

    def __init__(self, rng: np.random.Generator, size: int, image_size: int):
        self.rng = rng
        self.image_size = image_size
        self.images, self.scenes = scenes.render_batch(rng, size, image_size)

    def refresh(self, count: int) -> None:
        idx = self.rng.choice(len(self.scenes), count, replace=False)
        imgs, scs = scenes.render_batch(self.rng, count, self.image_size)
        self.images[idx] = imgs
        for i, s in zip(idx, scs):
            self.scenes[i] = s

    def batch(self, count: int):
        idx = self.rng.choice(len(self.scenes), count, replace=False)
        images = self.images[idx].copy()
        flip = self.rng.random(count) < 0.5
        images[flip] = images[flip, :, ::-1]
        captions = [scenes.random_caption(self.scenes[i], self.rng) for i in idx]
        return images, captions


@torch.no_grad()
def zero_shot_accuracy(model, tokenizer, n: int = 400, seed: int = 12345) -> dict[str, float]:
    """Accuracy of picking each attribute of held-out single-object scenes
    among all its values, from text prompts alone."""
    rng = np.random.default_rng(seed)
    probes = {
        "colour": (list(scenes.COLOURS), "a {} shape"),
        "shape": (list(scenes.SHAPES), "a {}"),
        "texture": (list(scenes.TEXTURES), "a {} shape"),
        "background": (list(scenes.BACKGROUNDS), "a shape on {}"),
    }
    scene_list = [scenes.random_scene(rng, 1) for _ in range(n)]
    imgs = np.stack([np.round(scenes.render_scene(s, 64)[0] * 255).astype(np.uint8)
                     for s in scene_list])
    feats = torch.nn.functional.normalize(model.encode_image(_to_tensor(imgs)), dim=-1)
    out = {}
    for attr, (values, template) in probes.items():
        words = values if attr != "texture" else ["plain" if v == "plain" else v for v in values]
        texts = tokenizer([template.format(w) for w in words])
        tf = torch.nn.functional.normalize(model.encode_text(texts), dim=-1)
        pred = (feats @ tf.T).argmax(1).numpy()
        truth = []
        for s in scene_list:
            o = s.objects[0]
            truth.append(values.index({"colour": o.colour, "shape": o.shape,
                                       "texture": o.texture,
                                       "background": s.background}[attr]))
        out[attr] = float((pred == np.array(truth)).mean())
    return out


def load_weights(model, folder: Path) -> None:
    """Start from an earlier toy model (fine-tuning continues its training)."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME
    from safetensors.torch import load_file
    state = load_file(str(Path(folder) / HF_SAFE_WEIGHTS_NAME))
    model.load_state_dict({k: v.float() for k, v in state.items()})


def train(out: Path, steps: int, batch: int, lr: float, seed: int, pool_size: int,
          save_every: int, threads: int | None, init: Path | None = None,
          previous_steps: int = 0) -> dict:
    import open_clip
    from open_clip.loss import ClipLoss

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_model()
    if init is not None:
        load_weights(model, init)
    tokenizer = open_clip.SimpleTokenizer(context_length=MODEL_CFG["text_cfg"]["context_length"])
    loss_fn = ClipLoss()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98))
    warmup = max(1, steps // 25)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    pool = ScenePool(rng, pool_size, MODEL_CFG["vision_cfg"]["image_size"])
    t0 = time.time()
    for step in range(1, steps + 1):
        images, captions = pool.batch(batch)
        x, t = _to_tensor(images), tokenizer(captions)
        img_f, txt_f, scale = model(x, t)
        loss = loss_fn(img_f, txt_f, scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        pool.refresh(batch // 8)
        if step % 50 == 0:
            print(f"step {step}/{steps} loss {loss.item():.3f} "
                  f"{(time.time() - t0) / step:.2f}s/step", flush=True)
        if step % save_every == 0 or step == steps:
            model.eval()
            acc = zero_shot_accuracy(model, tokenizer)
            model.train()
            print(f"step {step}: zero-shot {acc}", flush=True)
            save_local_dir(model, out, extra={"trained_steps": previous_steps + step,
                                              "batch": batch, "seed": seed, "zero_shot": acc})
    return acc


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("tests/assets/toy_clip"))
    ap.add_argument("--steps", type=int, default=2500)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pool", type=int, default=20000)
    ap.add_argument("--save-every", type=int, default=250)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--init", type=Path, default=None,
                    help="continue from this local-dir model (e.g. a second, lower-lr phase)")
    args = ap.parse_args(argv)
    previous = 0
    if args.init is not None:
        cfg = json.loads((args.init / "open_clip_config.json").read_text())
        previous = cfg.get("livelayers", {}).get("trained_steps", 0)
    acc = train(args.out, args.steps, args.batch, args.lr, args.seed, args.pool,
                args.save_every, args.threads, init=args.init, previous_steps=previous)
    print(json.dumps(acc))


if __name__ == "__main__":
    main()
