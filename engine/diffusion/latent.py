"""Blended Latent Diffusion (Avrahami et al., SIGGRAPH 2023) over a Stable
Diffusion pipeline (plain or inpainting).

1. Encode the image with the VAE: z_0 = E(2x−1)·scaling_factor (posterior mean).
2. Downsample the mask to the latent grid: ``mask_mode="maxpool"`` (default;
   any latent whose footprint touches the mask is editable, so thin or small
   masks never vanish) or ``"nearest"`` (the reference's NEAREST resize).
3. DDIM (η = 0) over ``steps`` (50), skipping the first ``start`` (25 %) of the
   schedule; start from z_0 noised to the first timestep that runs.
4. Each step: classifier-free guidance (``cfg`` 7.5, negative prompt as the
   unconditional text), DDIM step to t_prev, then blend
   z ← z ⊙ m_k + noised(z_0, t_prev) ⊙ (1 − m_k); the source is noised to the
   level the latent has *after* the step (same off-by-one fix as the pixel
   variant). ``m_k`` shrinks progressively from a dilated mask to the true
   latent mask over the steps (``shrink_radius`` latents; "auto" dilates by 2
   when the latent mask covers < 5 % of the latent).
5. Decode and fix the background, which the VAE round trip changes everywhere:
   ``"paste"`` (default: the original pixels outside the mask, feathered only
   inside it, so outside pixels are exact), ``"decoder"`` (per-sample decoder
   fine-tune, Adam 1e-4, ``decoder_steps`` (75) steps,
   MSE(fg·m) + 100·MSE(bg·(1−m)); outside pixels close, not exact) or ``"none"``.
6. Rank the S samples by masked CLIP similarity when a CLIP handle is given.

Inpainting pipelines (9-channel UNet) get [z_t, mask, masked-image latent]
as UNet input, as diffusers' inpainting pipeline builds it.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..progress import Progress, ensure
from .common import (EditResult, check_inputs, check_settings, clip_similarity, feather_alpha,
                     generators, make_result, paste, seeded_noise)

NODE = "LL_BlendedLatentDiffusion"
BACKGROUND_FIXES = ("paste", "decoder", "none")
MASK_MODES = ("maxpool", "nearest")


@torch.no_grad()
def encode_prompts(handle, prompts: list[str]) -> torch.Tensor:
    """Token embeddings of the text encoder: list of N strings → (N, L, D)."""
    tok = handle.tokenizer
    ids = tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True,
              return_tensors="pt").input_ids.to(handle.device)
    return handle.text_encoder(ids)[0].to(handle.dtype)


@torch.no_grad()
def encode_image(handle, image: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) [0,1] → scaled latents (N, 4, H/f, W/f) (posterior mean, deterministic)."""
    vae = handle.vae
    z = vae.encode((image * 2 - 1).to(handle.device, handle.dtype)).latent_dist.mean
    return z.float() * vae.config.scaling_factor


def decode(vae, z: torch.Tensor) -> torch.Tensor:
    """Scaled latents (N, 4, h, w) → images (N, 3, h·f, w·f) in [0,1]."""
    x = vae.decode((z / vae.config.scaling_factor).to(next(vae.parameters()).dtype)).sample
    return ((x.float() + 1) / 2).clamp(0, 1)


def latent_mask(mask: torch.Tensor, factor: int, mode: str) -> torch.Tensor:
    """(1, 1, H, W) → (1, 1, H/f, W/f) binary mask on the latent grid."""
    if mode == "maxpool":
        return (F.max_pool2d(mask, factor) > 0).float()
    if mode == "nearest":
        h, w = mask.shape[-2] // factor, mask.shape[-1] // factor
        return (F.interpolate(mask, size=(h, w), mode="nearest") > 0.5).float()
    raise InputError(NODE, "mask_mode", f"is {mode!r}", ", ".join(MASK_MODES))


def shrink_schedule(m: torch.Tensor, steps: int, radius: int) -> list[torch.Tensor]:
    """Progressive mask shrinking: ``steps`` masks (1, 1, h, w), dilated by
    ``radius`` latents at the first step, shrinking linearly to ``m`` itself."""
    out = []
    for k in range(steps):
        r = round(radius * (1 - k / max(1, steps - 1)))
        out.append(F.max_pool2d(m, 2 * r + 1, stride=1, padding=r) if r > 0 else m)
    return out


def auto_shrink_radius(m: torch.Tensor) -> int:
    """2 latents of dilation for small masks (< 5 % of the latent), else none."""
    return 2 if float(m.mean()) < 0.05 else 0


def _unet_input(handle, z, mask_lat, masked_lat):
    """The UNet's input: z (N, 4, h, w), plus mask + masked-image latents for inpainting UNets."""
    if handle.in_channels == 4:
        return z
    n = z.shape[0]
    return torch.cat([z, mask_lat.expand(n, -1, -1, -1), masked_lat.expand(n, -1, -1, -1)], 1)


def fine_tune_decoder(vae, z: torch.Tensor, target_fg: torch.Tensor, source: torch.Tensor,
                      mask: torch.Tensor, steps: int, lr: float = 1e-4,
                      progress: Progress | None = None) -> torch.Tensor:
    """Per-image decoder fine-tune (the BLD background fix): a copy of the VAE's
    decoder learns to keep the generated foreground and reproduce the source
    background: loss = MSE(D(z)·m, target·m) + 100·MSE(D(z)·(1−m), source·(1−m)).

    z (1, 4, h, w); target_fg, source (1, 3, H, W) [0,1]; mask (1, 1, H, W).
    Returns the fine-tuned decoder's image (1, 3, H, W). ``progress`` gets an
    update per step (the Cancel point of this loop).
    """
    progress = ensure(progress, NODE)
    dec = copy.deepcopy(vae).float()
    dec.requires_grad_(False)
    params = list(dec.decoder.parameters()) + list(dec.post_quant_conv.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    z = z.float()
    for step in range(steps):
        with torch.enable_grad():
            out = decode(dec, z)
            loss = F.mse_loss(out * mask, target_fg * mask) + \
                100 * F.mse_loss(out * (1 - mask), source * (1 - mask))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        progress.update(step + 1, steps, loss=float(loss.detach()))
    with torch.no_grad():
        return decode(dec, z)


def _check_latent_settings(handle, image, mask, steps, start, samples, background_fix, mask_mode,
                           cfg) -> None:
    check_inputs(NODE, image, mask, handle.pixel_multiple)
    check_settings(NODE, steps, start, samples)
    if background_fix not in BACKGROUND_FIXES:
        raise InputError(NODE, "background_fix", f"is {background_fix!r}", ", ".join(BACKGROUND_FIXES))
    if mask_mode not in MASK_MODES:
        raise InputError(NODE, "mask_mode", f"is {mask_mode!r}", ", ".join(MASK_MODES))
    if cfg < 0:
        raise InputError(NODE, "cfg", f"is {cfg}", "a guidance scale >= 0 (1 = no guidance)")


@dataclass
class _Latents:
    """The source in latent space: ``z0 (1, 4, h, w)``, the blend mask
    ``mask (1, 1, h, w)``, and for an inpainting UNet (9 input channels) its
    extra inputs ``hole`` (the mask) and ``masked`` (the latent of the image
    with a hole), else None."""
    z0: torch.Tensor
    mask: torch.Tensor
    hole: torch.Tensor | None
    masked: torch.Tensor | None


def _latent_inputs(handle, image, mask, mask_mode: str) -> _Latents:
    z0 = encode_image(handle, image)                                   # (1, 4, h, w)
    m_lat = latent_mask(mask, handle.vae_scale_factor, mask_mode)
    if float(m_lat.max()) == 0:
        raise InputError(NODE, "mask", "covers no latent cell with mask_mode 'nearest'",
                         "a larger mask, or mask_mode 'maxpool'")
    hole_lat = masked_lat = None
    if handle.in_channels == 9:  # inpainting UNet: mask + latent of the image with a hole
        hole = (mask >= 0.5).float()
        hole_lat = F.interpolate(hole, size=z0.shape[-2:], mode="nearest").to(handle.dtype)
        masked_lat = encode_image(handle, image * (1 - hole)).to(handle.dtype)
    return _Latents(z0, m_lat, hole_lat, masked_lat)


def _text_embeddings(handle, prompt: str, negative_prompt: str, samples: int, cfg: float) -> torch.Tensor:
    """The UNet's text conditioning for every sample: ``(2S, L, D)`` with
    classifier-free guidance (negative prompt first), else ``(S, L, D)``."""
    cond = encode_prompts(handle, [prompt])
    if cfg == 1.0:
        return cond.expand(samples, -1, -1)
    uncond = encode_prompts(handle, [negative_prompt])
    return torch.cat([uncond.expand(samples, -1, -1), cond.expand(samples, -1, -1)])


@torch.no_grad()
def _blend(handle, sched, ts, z, latents: _Latents, masks, text, cfg: float, seeds, gens, steps: int,
           progress) -> torch.Tensor:
    """The denoising loop: after every DDIM step the latents outside the
    (shrinking) mask are replaced by the source noised to the next step's
    level, and by the source itself at the end. Returns ``z (S, 4, h, w)``."""
    use_cfg = cfg != 1.0
    samples, shape, dev = z.shape[0], tuple(latents.z0.shape[1:]), z.device
    source = latents.z0.expand(samples, -1, -1, -1)
    step_gap = sched.config.num_train_timesteps // steps
    for k, t in enumerate(ts):
        z_in = sched.scale_model_input(torch.cat([z, z]) if use_cfg else z, t)
        z_in = _unet_input(handle, z_in, latents.hole, latents.masked)
        eps = handle.unet(z_in.to(handle.dtype), t, encoder_hidden_states=text).sample.float()
        if use_cfg:
            e_u, e_c = eps.chunk(2)
            eps = e_u + cfg * (e_c - e_u)
        z = sched.step(eps, t, z).prev_sample
        t_prev = int(t) - step_gap
        noise = seeded_noise(shape, seeds, dev, gens=gens)
        if k < len(ts) - 1 and t_prev >= 0:
            bg = sched.add_noise(source, noise, torch.full((samples,), t_prev, dtype=torch.long))
        else:
            bg = source
        z = z * masks[k] + bg * (1 - masks[k])
        info = {}
        if progress.wants_preview(k):
            info["preview"] = decode(handle.vae, z[:1]).cpu()
        progress.update(k + 1, len(ts), **info)
    return z


def _fix_background(handle, z, generated, image, mask, background_fix: str, feather: float,
                    decoder_steps: int, progress) -> tuple[torch.Tensor, torch.Tensor]:
    """The background the decoded samples keep: ``paste`` the source outside
    the (feathered) mask, ``decoder`` fine-tune the VAE decoder per sample, or
    ``none``. Returns (images ``(S, 3, H, W)``, alpha ``(1, 1, H, W)``)."""
    if background_fix == "paste":
        alpha = feather_alpha(mask, feather)
        return paste(generated, image, alpha), alpha
    images = generated
    if background_fix == "decoder":
        images = torch.cat([fine_tune_decoder(handle.vae, z[i:i + 1], generated[i:i + 1],
                                              image, mask, decoder_steps, progress=progress)
                            for i in range(generated.shape[0])])
    return images, mask.clone()


def blended_latent_diffusion(handle, clip, image: torch.Tensor, mask: torch.Tensor, prompt: str, *,
                             steps: int = 50, start: float = 0.25, samples: int = 4,
                             seed: int = 0, cfg: float = 7.5, negative_prompt: str = "",
                             background_fix: str = "paste", feather: float = 0.0,
                             decoder_steps: int = 75, mask_mode: str = "maxpool",
                             shrink_radius: int | str = "auto",
                             progress: Progress | None = None) -> EditResult:
    """Blended latent diffusion (see the module docstring).

    image (1, 3, H, W) [0,1], mask (1, 1, H, W) (1 = edit), sides multiples of
    ``handle.pixel_multiple``. Returns an ``EditResult`` (ranked when ``clip``
    is given, else in seed order with NaN scores).
    """
    from diffusers import DDIMScheduler
    progress = ensure(progress, NODE)
    _check_latent_settings(handle, image, mask, steps, start, samples, background_fix, mask_mode, cfg)
    dev = handle.device
    image = image.to(dev, torch.float32)
    mask = mask.to(dev, torch.float32)
    seeds = [seed + i for i in range(samples)]
    gens = generators(seeds)

    latents = _latent_inputs(handle, image, mask, mask_mode)
    radius = auto_shrink_radius(latents.mask) if shrink_radius == "auto" else int(shrink_radius)
    text = _text_embeddings(handle, prompt, negative_prompt, samples, cfg)

    sched = DDIMScheduler.from_config(handle.scheduler.config)
    sched.set_timesteps(steps)
    ts = sched.timesteps[int(steps * start):]
    masks = shrink_schedule(latents.mask, len(ts), radius)
    shape = tuple(latents.z0.shape[1:])
    z = sched.add_noise(latents.z0.expand(samples, -1, -1, -1),
                        seeded_noise(shape, seeds, dev, gens=gens), ts[:1].repeat(samples))
    z = _blend(handle, sched, ts, z, latents, masks, text, cfg, seeds, gens, steps, progress)
    with torch.no_grad():
        generated = decode(handle.vae, z)                              # (S, 3, H, W)

    images, alpha = _fix_background(handle, z, generated, image, mask, background_fix, feather,
                                    decoder_steps, progress)
    if clip is not None:
        scores = clip_similarity(clip, images, mask, clip.encode_text([prompt]))
    else:
        scores = torch.full((samples,), float("nan"))
    colour = generated if background_fix == "paste" else images
    return make_result(images, colour, scores, alpha, seeds)
