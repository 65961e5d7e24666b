"""How recognisable the toy DDPM's samples are, measured with the toy CLIP.

    python -m livelayers.toyworld.ddpm_quality --ddpm tests/assets/toy_ddpm --clip toy-clip

Unconditional samples have no labels, so the measure is the toy CLIP's
*confidence* against its confidence on real toy scenes drawn at the same
size: for each attribute (background among 4, shape among 4), the top-1
probability of every image (softmax of the CLIP logits over the attribute's
prompts). A sample is **recognised** for an attribute when its top-1
probability reaches the 10th percentile of the real scenes' (so 90 % of real
scenes are recognised by construction). A colour field, a blur or noise is
not; a drawn scene is. Also reported: the real scenes' accuracy (how much the
confidence can be trusted), how the samples spread over the classes, and an
Inception-score-like exp(E KL(p(y|x) ‖ p(y))) per attribute (4 at most).

Sampling: ancestral DDPM (diffusers' ``DDPMScheduler`` from the saved config,
respaced to ``--steps`` steps, as blended diffusion samples) from seeded
noise, so a run is reproducible. (Deterministic DDIM shows a small model's
errors at low noise as speckle; ancestral steps are what the edit runs.)
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from . import scenes
from .train_ddpm import training_scene

PROBES = {  # the prompts of toyworld.train_clip.zero_shot_accuracy
    "background": (scenes.BACKGROUNDS, "a shape on {}"),
    "shape": (scenes.SHAPES, "a {}"),
}
PERCENTILE = 10


@torch.no_grad()
def sample(ddpm, n: int, steps: int = 100, seed: int = 0) -> torch.Tensor:
    """``n`` unconditional samples of a loaded pixel DDPM handle: (n, 3, S, S) in [0, 1]."""
    from diffusers import DDPMScheduler
    sched = DDPMScheduler.from_config(ddpm.scheduler.config)
    sched.set_timesteps(steps)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((n, ddpm.in_channels, ddpm.sample_size, ddpm.sample_size), generator=gen)
    for t in sched.timesteps:
        eps = ddpm.unet(x.to(ddpm.device, ddpm.dtype), t).sample.float().cpu()
        x = sched.step(eps[:, :3], t, x, generator=gen).prev_sample
    return ((x.clamp(-1, 1) + 1) / 2).cpu()


def real_scenes(n: int, size: int, seed: int):
    """``n`` toy scenes like the DDPM's training data (1-2 objects), with their labels."""
    rng = np.random.default_rng(seed)
    imgs, labels = [], []
    for _ in range(n):
        s = training_scene(rng)
        imgs.append(scenes.render_scene(s, size, supersample=2)[0])
        labels.append({"background": s.background, "shape": {o.shape for o in s.objects}})
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float(), labels


@torch.no_grad()
def probabilities(clip, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """{attribute: (N, classes)} softmax of the CLIP logits over the attribute's prompts."""
    feats = clip.encode_image(images)
    out = {}
    for attr, (values, template) in PROBES.items():
        text = clip.encode_text([template.format(v) for v in values])
        out[attr] = (clip.logit_scale * feats @ text.T).softmax(-1).cpu()
    return out


def inception_like(p: torch.Tensor) -> float:
    """exp(E_x KL(p(y|x) || p(y))): 1 when every image looks alike, the class
    count when each is confident and the classes are evenly used."""
    marginal = p.mean(0, keepdim=True)
    kl = (p * (p.clamp_min(1e-12).log() - marginal.clamp_min(1e-12).log())).sum(1)
    return float(kl.mean().exp())


def measure(ddpm, clip, n: int = 64, steps: int = 100, seed: int = 0) -> dict:
    """The numbers of the module docstring, for ``n`` samples and ``n`` real scenes."""
    real, labels = real_scenes(n, ddpm.sample_size, seed + 1)
    out = {"samples": n, "steps": steps, "size": ddpm.sample_size}
    return {**out, **judge(clip, sample(ddpm, n, steps, seed), real, labels)}


def judge(clip, fake: torch.Tensor, real: torch.Tensor, labels: list[dict]) -> dict:
    """Per attribute: how many of ``fake`` the CLIP is as sure of as of ``real``
    (labelled by ``labels``), and the rest of the module docstring's numbers."""
    p_fake, p_real = probabilities(clip, fake), probabilities(clip, real)
    out = {}
    for attr, (values, _) in PROBES.items():
        top_real, top_fake = p_real[attr].max(1).values, p_fake[attr].max(1).values
        bar = float(np.percentile(top_real.numpy(), PERCENTILE))
        pred = [values[i] for i in p_real[attr].argmax(1).tolist()]
        hits = [(v == lab[attr]) if attr == "background" else (v in lab[attr])
                for v, lab in zip(pred, labels)]
        spread = np.bincount(p_fake[attr].argmax(1).numpy(), minlength=len(values))
        out[attr] = {
            "recognised": float((top_fake >= bar).float().mean()),
            "bar": round(bar, 4),
            "real_accuracy": float(np.mean(hits)),
            "confidence_samples": float(top_fake.mean()), "confidence_real": float(top_real.mean()),
            "inception_samples": inception_like(p_fake[attr]),
            "inception_real": inception_like(p_real[attr]),
            "spread": dict(zip(values, spread.tolist())),
        }
    return out


def main(argv=None) -> None:
    from ..engine.models.clip import load_clip
    from ..engine.models.diffusion import load_diffusion
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ddpm", default="tests/assets/toy_ddpm", help="a pixel DDPM folder or catalogue id")
    ap.add_argument("--clip", default="toy-clip", help="the CLIP that judges (a folder or catalogue id)")
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--steps", type=int, default=100, help="DDPM steps (respaced)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    ddpm = load_diffusion(a.ddpm, kind="pixel", device="cpu")
    clip = load_clip(a.clip, device="cpu")
    print(json.dumps(measure(ddpm, clip, a.samples, a.steps, a.seed)))


if __name__ == "__main__":
    main()
