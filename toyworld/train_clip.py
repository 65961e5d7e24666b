"""Train the tiny toy-world CLIP and save it in open_clip's ``local-dir`` format.

    python -m livelayers.toyworld.train_clip --out tests/assets/toy_clip

The model is a real open_clip ``CLIP`` (ViT image tower, transformer text
tower, the standard BPE tokenizer), only small: 64 px images, patch 8, 4
blocks of width 128; text 3 blocks of width 128, context 24; embedding 128.
It is trained contrastively on procedurally drawn scenes with captions of
random detail; every caption that is true of an image counts as its positive
(``multi_positive_loss``), and half of each batch are "twin" pairs that differ
in one attribute (hard negatives). Weights are written as fp16
safetensors through open_clip's own ``save_for_hf`` so that
``open_clip.create_model('local-dir:…')`` loads them unchanged.
"""
from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..engine.atomic import replace_folder
from . import scenes
from .cli import training_parser

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


# --------------------------------------------------------------------------- captions (v2)
#
# A caption is sampled as a *spec* (which attributes of which objects it
# names), then written out. Knowing the spec lets the loss treat every image
# the caption is true of as a positive: with plain CLIP targets, "a circle"
# for one image pushes every other circle in the batch away, which is exactly
# what kept shape and texture words from being learnt (v1: shape 0.43,
# texture 0.51 at 1500 steps).

# How often a partial description names each attribute. Texture and shape
# get more weight than colour (colour is learnt first and easily).
MENTION_P = {"texture": 0.65, "shape": 0.6, "colour": 0.4}
BACKGROUND_ONLY_P = 0.05
WITH_BACKGROUND_P = 0.35
TWIN_P = {"texture": 0.5, "shape": 0.35, "colour": 0.15}  # which attribute a twin changes
RECIPE = "v2: caption specs, multi-positive contrastive loss, twin hard negatives"


def caption_spec(scene: scenes.ToyScene, rng: np.random.Generator):
    """``(background | None, ((colour|None, shape|None, texture|None), ...))``:
    what a random caption of ``scene`` asserts."""
    objs = list(scene.objects)
    if not objs or rng.random() < BACKGROUND_ONLY_P:
        return scene.background, ()
    order = rng.permutation(len(objs))
    n = 1 + int(len(objs) > 1 and rng.random() < 0.35)
    descs = []
    for i in order[:n]:
        o = objs[i]
        named = {a: rng.random() < p for a, p in MENTION_P.items()}
        if not any(named.values()):
            named[str(rng.choice(["texture", "shape"]))] = True
        descs.append((o.colour if named["colour"] else None,
                      o.shape if named["shape"] else None,
                      o.texture if named["texture"] else None))
    bg = scene.background if rng.random() < WITH_BACKGROUND_P else None
    return bg, tuple(descs)


def caption_text(spec, rng: np.random.Generator) -> str:
    """Words for a spec: "[texture] [colour] shape-or-'shape'" per object, so
    the zero-shot probes ("a striped shape", "a plain shape", "a circle")
    are sentences the model has seen; half go through a Text2LIVE template."""
    bg, descs = spec
    if not descs:
        return str(rng.choice(TEMPLATES_BG)).format(bg)
    parts = [" ".join(w for w in (t, c, s or "shape") if w) for c, s, t in descs]
    templated = rng.random() < 0.5
    article = "" if templated and len(parts) == 1 else "a "
    text = " and ".join(f"{article}{p}" for p in parts)
    if bg is not None:
        text += f" on {bg}"
    return str(rng.choice(scenes.TEMPLATES)).format(text) if templated else text


TEMPLATES_BG = scenes.TEMPLATES + ("a shape on {}", "something on {}")


def scene_attributes(scene_list) -> dict[str, np.ndarray]:
    """Integer codes of every scene's attributes: background (N,), and per
    object slot (N, K) colour / shape / texture with -1 for an empty slot."""
    k = max(len(s.objects) for s in scene_list)
    out = {a: np.full((len(scene_list), k), -1) for a in ("colour", "shape", "texture")}
    vocab = {"colour": list(scenes.COLOURS), "shape": list(scenes.SHAPES),
             "texture": list(scenes.TEXTURES)}
    for i, s in enumerate(scene_list):
        for j, o in enumerate(s.objects):
            for a in out:
                out[a][i, j] = vocab[a].index(getattr(o, a))
    out["background"] = np.array([scenes.BACKGROUNDS.index(s.background) for s in scene_list])
    return out


def match_matrix(scene_list, specs) -> np.ndarray:
    """``M[i, j]`` = caption spec ``j`` is true of scene ``i``, (N, M) bool.

    A spec holds if its background (when named) is the scene's and each
    described object matches some object of the scene."""
    attrs = scene_attributes(scene_list)
    cols = {a: list(v) for a, v in (("colour", scenes.COLOURS), ("shape", scenes.SHAPES),
                                    ("texture", scenes.TEXTURES))}
    out = np.ones((len(scene_list), len(specs)), bool)
    for j, (bg, descs) in enumerate(specs):
        ok = out[:, j]
        if bg is not None:
            ok &= attrs["background"] == scenes.BACKGROUNDS.index(bg)
        for desc in descs:
            slot = attrs["colour"] >= 0
            for a, value in zip(("colour", "shape", "texture"), desc):
                if value is not None:
                    slot = slot & (attrs[a] == cols[a].index(value))
            ok &= slot.any(1)
    return out


def multi_positive_loss(img_f: torch.Tensor, txt_f: torch.Tensor, scale: torch.Tensor,
                        match: torch.Tensor) -> torch.Tensor:
    """Contrastive loss with every true (image, caption) pair as a positive.

    img_f (N, D), txt_f (M, D) unit features; scale () logit scale; match
    (N, M) bool with at least one True per row and column. Each direction's
    target is uniform over its positives (plain CLIP when ``match`` is the
    identity). Returns a scalar."""
    logits = scale * img_f @ txt_f.T
    target = match.float()
    i2t = -(target / target.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    t2i = -(target / target.sum(0, keepdim=True) * logits.log_softmax(0)).sum(0).mean()
    return (i2t + t2i) / 2


def _twin(scene: scenes.ToyScene, rng: np.random.Generator) -> scenes.ToyScene:
    """The same scene with one attribute of one object changed: a hard
    negative for every caption that names that attribute."""
    index = int(rng.integers(len(scene.objects)))
    attr = str(rng.choice(list(TWIN_P), p=list(TWIN_P.values())))
    values = {"texture": scenes.TEXTURES, "shape": scenes.SHAPES, "colour": list(scenes.COLOURS)}[attr]
    current = getattr(scene.objects[index], attr)
    new = str(rng.choice([v for v in values if v != current]))
    return scenes.with_object(scene, index, **{attr: new})


def render_pairs(rng: np.random.Generator, count: int, size: int = 64, max_objects: int = 2):
    """``count`` scene pairs (a random scene, its twin), interleaved: uint8
    images (2*count, size, size, 3) and the 2*count scenes."""
    images = np.empty((2 * count, size, size, 3), np.uint8)
    out = []
    for i in range(count):
        n = 1 if rng.random() < 0.6 else int(rng.integers(2, max_objects + 1))
        scene = scenes.random_scene(rng, n_objects=n, distinct=False)
        for k, s in enumerate((scene, _twin(scene, rng))):
            img, _ = scenes.render_scene(s, size, supersample=2)
            images[2 * i + k] = np.round(img * 255).astype(np.uint8)
            out.append(s)
    return images, out


class ScenePool:
    """A pool of pre-rendered scene pairs (scene, twin), refreshed a slice at
    a time, so that rendering costs little next to the training step.

    A batch is half twin pairs (hard negatives) and half single images drawn
    at random; captions come with their specs, and ``match`` says which
    caption is true of which image."""

    def __init__(self, rng: np.random.Generator, size: int, image_size: int):
        self.rng = rng
        self.image_size = image_size
        self.images, self.scenes = render_pairs(rng, size // 2, image_size)

    def refresh(self, count: int) -> None:
        pairs = self.rng.choice(len(self.scenes) // 2, max(1, count // 2), replace=False)
        imgs, scs = render_pairs(self.rng, len(pairs), self.image_size)
        for k, p in enumerate(pairs):
            for m in range(2):
                self.images[2 * p + m] = imgs[2 * k + m]
                self.scenes[2 * p + m] = scs[2 * k + m]

    def batch(self, count: int):
        n_pairs = count // 4
        pairs = self.rng.choice(len(self.scenes) // 2, n_pairs, replace=False)
        paired = np.stack([2 * pairs, 2 * pairs + 1], 1).reshape(-1)
        rest = np.setdiff1d(np.arange(len(self.scenes)), paired)
        idx = np.concatenate([paired, self.rng.choice(rest, count - len(paired), replace=False)])
        images = self.images[idx].copy()
        flip = self.rng.random(count) < 0.5  # every shape is left-right symmetric
        images[flip] = images[flip, :, ::-1]
        batch_scenes = [self.scenes[i] for i in idx]
        specs = [caption_spec(s, self.rng) for s in batch_scenes]
        captions = [caption_text(sp, self.rng) for sp in specs]
        match = match_matrix(batch_scenes, specs)
        assert match.diagonal().all()
        return images, captions, torch.from_numpy(match)


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

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_model()
    if init is not None:
        load_weights(model, init)
    tokenizer = open_clip.SimpleTokenizer(context_length=MODEL_CFG["text_cfg"]["context_length"])
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98))
    warmup = max(1, steps // 25)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    pool = ScenePool(rng, pool_size, MODEL_CFG["vision_cfg"]["image_size"])
    t0 = time.time()
    curve: list[dict] = []
    for step in range(1, steps + 1):
        images, captions, match = pool.batch(batch)
        x, t = _to_tensor(images), tokenizer(captions)
        img_f, txt_f, scale = model(x, t)
        loss = multi_positive_loss(img_f, txt_f, scale, match)
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
            curve.append({"step": previous_steps + step, **acc})
            print(f"step {step}: zero-shot {acc}", flush=True)
            save_local_dir(model, out, extra={"trained_steps": previous_steps + step,
                                              "schedule_steps": previous_steps + steps,
                                              "batch": batch, "seed": seed, "zero_shot": acc,
                                              "recipe": RECIPE, "curve": curve})
    return acc


def main(argv=None) -> None:
    ap = training_parser(__doc__, out="tests/assets/toy_clip", steps=2500, batch=256, lr=1e-3, run_dir=False)
    ap.add_argument("--pool", type=int, default=20000)
    ap.add_argument("--save-every", type=int, default=250)
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
