"""Blended Diffusion over a pixel DDPM (Avrahami et al., CVPR 2022).

Start from the input image noised part-way (``start`` = 0.25 of 100 respaced
steps skipped → 75 run); at every step

1. one UNet pass on all S samples (batched) with autograd on: ε̂ = UNet(x_t, t);
2. x̂0 = (x_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t and the CLIP input
   x_in = x̂0·√(1−ᾱ_t) + x_t·(1−√(1−ᾱ_t)), masked (outside → 0 in [-1,1]);
3. loss = guidance · mean over V views of the spherical CLIP distance
   + 50 · out-of-range penalty; ∇ = ∂loss/∂x_t through the SAME UNet pass;
4. posterior mean μ of q(x_{t−1} | x_t, x̂0), shifted by the gradient
   μ ← μ − Σ·∇ (the reference's mean += Σ·cond_fn, cond_fn = −∇);
   x_fg = μ + σ·z;
5. blend: x_{t−1} = x_fg ⊙ m + noised(x_0, t−1) ⊙ (1−m), the background noised
   to the level x_{t−1} has (the official code noises it to t).

At the end the original background is pasted back (optionally feathered
inside the mask) and the S samples are ranked by the unaugmented masked CLIP
similarity. Fixes vs the reference code: noise level t−1 in the blend, one
UNet pass per step instead of two (views and samples are batched, as the
official code batches them too), every sample seeded (seed + i), the
background bit-exact outside the mask.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..progress import Progress, ensure
from .common import (EditResult, augment_views, check_inputs, check_settings, clip_similarity,
                     feather_alpha, generators, make_result, paste, seeded_noise)
from ..text2live.losses import spherical_distance

NODE = "LL_BlendedDiffusion"
RANGE_WEIGHT = 50.0


def respaced_schedule(scheduler, steps: int, start: float):
    """Timesteps to run and ᾱ per step for a respaced DDPM schedule.

    Uses ``DDPMScheduler.set_timesteps(steps)`` (on a copy) for the spacing
    and its ``alphas_cumprod``. Returns (timesteps (K,) long, abar (K,),
    abar_prev (K,)) for the K = steps − int(steps·start) steps that run;
    abar_prev of the last step is 1 (x_{-1} = x_0).
    """
    from diffusers import DDPMScheduler
    sched = DDPMScheduler.from_config(scheduler.config)
    sched.set_timesteps(steps)
    ts = sched.timesteps.long()
    skip = int(steps * start)
    ts = ts[skip:]
    ac = sched.alphas_cumprod.double()
    abar = ac[ts]
    abar_prev = torch.cat([ac[ts[1:]], torch.ones(1, dtype=torch.float64)])
    return ts, abar, abar_prev


def posterior(x0: torch.Tensor, xt: torch.Tensor, abar: float, abar_prev: float):
    """Mean and variance of q(x_prev | x_t, x_0) for a respaced step:
    β = 1 − ᾱ_t/ᾱ_prev, Σ = β(1−ᾱ_prev)/(1−ᾱ_t),
    μ = √ᾱ_prev·β/(1−ᾱ_t)·x_0 + √(ᾱ_t/ᾱ_prev)·(1−ᾱ_prev)/(1−ᾱ_t)·x_t."""
    beta = 1 - abar / abar_prev
    c0 = abar_prev ** 0.5 * beta / (1 - abar)
    ct = (abar / abar_prev) ** 0.5 * (1 - abar_prev) / (1 - abar)
    var = beta * (1 - abar_prev) / (1 - abar)
    return c0 * x0 + ct * xt, var


def blend_step(x_fg: torch.Tensor, x0: torch.Tensor, mask: torch.Tensor, abar_prev: float,
               noise: torch.Tensor) -> torch.Tensor:
    """x_{t−1} = x_fg ⊙ m + (√ᾱ_{t−1}·x_0 + √(1−ᾱ_{t−1})·noise) ⊙ (1−m).

    (S, C, H, W), (1, C, H, W), (1, 1, H, W), float, (S, C, H, W) → (S, C, H, W).
    ᾱ_{t−1} is the noise level of the sample *after* the step, so the
    background matches it (the reference code used ᾱ_t: a noisier background).
    """
    bg = abar_prev ** 0.5 * x0 + (1 - abar_prev) ** 0.5 * noise
    return x_fg * mask + bg * (1 - mask)


def predict_x0(model_out: torch.Tensor, xt: torch.Tensor, abar: float, prediction_type: str):
    """x̂0 from the UNet output for epsilon / v / sample prediction."""
    a, s = abar ** 0.5, (1 - abar) ** 0.5
    if prediction_type == "epsilon":
        return (xt - s * model_out) / a
    if prediction_type == "v_prediction":
        return a * xt - s * model_out
    if prediction_type == "sample":
        return model_out
    raise ValueError(f"unsupported prediction type {prediction_type!r}")


def clip_loss(clip, x_in: torch.Tensor, mask: torch.Tensor, text_emb: torch.Tensor,
              views: int, guidance: float, gen: torch.Generator) -> torch.Tensor:
    """Summed over samples: guidance·mean_views(spherical distance) + 50·range penalty.

    x_in (S, 3, H, W) in [-1, 1]-ish; mask (1, 1, H, W). Outside the mask x_in
    is set to 0 (grey) so CLIP judges the region only.
    """
    s = x_in.shape[0]
    masked = x_in * mask
    imgs = (masked + 1) / 2
    emb = clip.encode_image(augment_views(imgs, views, gen))          # (V·S, D)
    dist = spherical_distance(emb, text_emb.to(emb)).view(views, s).mean(0)  # (S,)
    out_of_range = (x_in - x_in.clamp(-1, 1)).pow(2).mean(dim=(1, 2, 3))
    return (guidance * dist + RANGE_WEIGHT * out_of_range).sum()


def _check_pixel_settings(handle, clip, image, mask, steps, start, samples, views, guidance) -> None:
    """Every input checked before any work: one-line ``InputError`` naming the input."""
    from ..errors import InputError
    check_inputs(NODE, image, mask, handle.pixel_multiple, base=handle.sample_size)
    check_settings(NODE, steps, start, samples)
    if views < 1:
        raise InputError(NODE, "views", f"is {views}", "an integer >= 1 (1 = the clean view only)")
    if guidance > 0 and clip is None:
        raise InputError(NODE, "clip", "is missing", "a CLIP model (LL_CLIP) when guidance > 0")


@dataclass
class _Guidance:
    """What the CLIP gradient of every step reads (``None`` text = unguided)."""
    clip: object
    mask: torch.Tensor            # (1, 1, H, W) on the device
    text_emb: torch.Tensor | None
    views: int
    weight: float
    view_gen: torch.Generator


def _denoise(handle, x: torch.Tensor, t: int, abar: float, guide: _Guidance):
    """Stage 1-3: one UNet pass on all samples → x̂0 and, when guided, the
    CLIP loss and its gradient ∂loss/∂x_t through that same pass."""
    guided = guide.weight > 0
    x = x.detach().requires_grad_(guided)
    with torch.set_grad_enabled(guided):
        t_batch = torch.full((x.shape[0],), t, device=x.device)
        out = handle.unet(x.to(handle.dtype), t_batch).sample.float()
        out = out[:, :3]  # learned-variance models output 6 channels; use the fixed one
        x0_hat = predict_x0(out, x, abar, handle.prediction_type)
        if not guided:
            return x0_hat.detach(), None, None
        fac = (1 - abar) ** 0.5
        x_in = x0_hat * fac + x * (1 - fac)
        loss = clip_loss(guide.clip, x_in, guide.mask, guide.text_emb, guide.views, guide.weight,
                         guide.view_gen)
        grad = torch.autograd.grad(loss, x)[0]
    return x0_hat.detach(), loss.detach(), grad


def _guided_step(handle, x, x0, t, abar, abar_prev, last: bool, guide: _Guidance, seeds, gens):
    """One reverse step: denoise, guided posterior mean, then the blend with
    the background noised to the level of x_{t−1} (stages 1-5 above)."""
    x0_hat, loss, grad = _denoise(handle, x, t, abar, guide)
    if handle.scheduler.config.get("clip_sample", False):
        x0_hat = x0_hat.clamp(-1, 1)
    mean, var = posterior(x0_hat, x.detach(), abar, abar_prev)
    if grad is not None:
        mean = mean - var * grad  # mean += Σ·(−∇): the guided posterior mean
    shape, dev = tuple(x.shape[1:]), x.device
    if last:  # no noise on the last step: the background is x_0 itself
        x_fg, bg_noise = mean, torch.zeros_like(mean)
    else:
        x_fg = mean + var ** 0.5 * seeded_noise(shape, seeds, dev, gens=gens)
        bg_noise = seeded_noise(shape, seeds, dev, gens=gens)
    return blend_step(x_fg, x0, guide.mask, abar_prev, bg_noise), loss


def blended_diffusion_pixel(handle, clip, image: torch.Tensor, mask: torch.Tensor, prompt: str, *,
                            steps: int = 100, start: float = 0.25, samples: int = 4, views: int = 8,
                            seed: int = 0, guidance: float = 1000.0, feather: float = 0.0,
                            progress: Progress | None = None) -> EditResult:
    """Blended diffusion with a pixel DDPM handle (see the module docstring).

    image (1, 3, H, W) [0,1]; mask (1, 1, H, W) [0,1] (1 = edit); H, W multiples
    of the model's sample size. steps: respaced schedule length; start:
    fraction skipped; samples: S, seeded seed..seed+S−1; views: CLIP views
    (1 clean + V−1 augmented); guidance: CLIP loss weight (0 = unguided);
    feather: radius (px) of the alpha ramp inside the mask for the final paste.
    Returns an ``EditResult`` ranked by masked CLIP similarity (best first).
    """
    progress = ensure(progress, NODE)
    _check_pixel_settings(handle, clip, image, mask, steps, start, samples, views, guidance)
    dev = handle.device
    x0 = (image.to(dev, torch.float32) * 2 - 1)
    seeds = [seed + i for i in range(samples)]
    gens = generators(seeds)
    text_emb = clip.encode_text([prompt]) if clip is not None else None
    guide = _Guidance(clip, mask.to(dev, torch.float32), text_emb, views, guidance,
                      torch.Generator().manual_seed(seed))
    ts, abars, abar_prevs = respaced_schedule(handle.scheduler, steps, start)

    # x_T: the input noised to the first timestep that runs (per-sample noise)
    a0 = float(abars[0])
    x = a0 ** 0.5 * x0 + (1 - a0) ** 0.5 * seeded_noise(tuple(x0.shape[1:]), seeds, dev, gens=gens)
    total = len(ts)
    for i, t in enumerate(ts.tolist()):
        x, loss = _guided_step(handle, x, x0, t, float(abars[i]), float(abar_prevs[i]), i == total - 1,
                               guide, seeds, gens)
        info = {"loss": float(loss) / samples} if loss is not None else {}
        if progress.wants_preview(i):
            info["preview"] = ((x[:1].detach().clamp(-1, 1) + 1) / 2).cpu()
        progress.update(i + 1, total, **info)

    generated = ((x.detach().clamp(-1, 1) + 1) / 2)
    return finish(clip, image.to(dev), guide.mask, generated, prompt, text_emb, seeds, feather)


def finish(clip, image, mask, generated, prompt, text_emb, seeds, feather) -> EditResult:
    """Paste the background (feathered alpha inside the mask), score, rank.
    The layer colour is the generated sample itself (straight), so
    layer_rgb·alpha + image·(1−alpha) = images[0]."""
    alpha = feather_alpha(mask, feather)
    images = paste(generated, image, alpha)
    if clip is not None:
        scores = clip_similarity(clip, images, mask, text_emb)
    else:
        scores = torch.full((images.shape[0],), float("nan"))
    return make_result(images, generated, scores, alpha, seeds)
