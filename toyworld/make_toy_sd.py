"""Build (and briefly train) the tiny latent "Stable Diffusion" pipeline of the toy world.

    nice -n 10 python -m livelayers.toyworld.make_toy_sd --out tests/assets/toy_sd

Every part is the real diffusers/transformers class, only tiny, so the latent
blending code runs unchanged on real Stable Diffusion folders:

- ``AutoencoderKL``: 3 encoder blocks (32/32/64 channels) -> x4 downsampling,
  4 latent channels. Trained on 64 px toy scenes (MSE + a tiny KL term) so that
  it reconstructs; ``scaling_factor`` = 1 / std of its latents.
- ``CLIPTokenizer``: OpenAI CLIP's BPE. The hub is unreachable, so its
  ``vocab.json``/``merges.txt`` are written from open_clip's bundled
  ``bpe_simple_vocab_16e6.txt.gz`` (the same merges OpenAI CLIP uses).
- ``CLIPTextModel``: 2 layers, width 32.
- ``UNet2DConditionModel``: 16x16 latents, channels 32/64, cross-attention dim 32.
- ``DDIMScheduler`` with SD's betas (scaled linear 0.00085-0.012).

The text encoder and UNet get only a short training run on toy-scene latents
with random captions (10 % empty, for classifier-free guidance): enough for
samples that look like toy-world colours and blobs, not for faithful
text-to-image. Tests use this pipeline for the *mechanics* of blended latent
diffusion (blending, background preservation, seeds), not for prompt quality.
Saved with ``save_pretrained(safe_serialization=True)`` in fp16.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import scenes

IMAGE_SIZE = 64
LATENT_SIZE = 16


def write_clip_bpe_files(folder: Path) -> tuple[Path, Path]:
    """Write HF-format ``vocab.json`` and ``merges.txt`` from open_clip's BPE file.

    The token order is OpenAI CLIP's: 256 byte symbols, the same with ``</w>``,
    the 48 894 merges, then the two special tokens (49 408 in all).
    """
    import open_clip.tokenizer as oct
    lines = gzip.open(oct.default_bpe()).read().decode("utf-8").split("\n")
    merges = lines[1:49152 - 256 - 2 + 1]
    symbols = list(oct.bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols]
    vocab += ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return folder / "vocab.json", folder / "merges.txt"


def build_tokenizer(tmp: Path):
    from transformers import CLIPTokenizer
    write_clip_bpe_files(tmp)
    # from_pretrained reads vocab.json/merges.txt whatever the tokenizer backend
    return CLIPTokenizer.from_pretrained(str(tmp), model_max_length=77,
                                         pad_token="<|endoftext|>")


def build_parts():
    """Fresh (untrained) VAE, text encoder, UNet and scheduler."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
        block_out_channels=(32, 32, 64), norm_num_groups=16, sample_size=IMAGE_SIZE,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3)
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, projection_dim=32,
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407))
    unet = UNet2DConditionModel(
        sample_size=LATENT_SIZE, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), norm_num_groups=16, cross_attention_dim=32,
        attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    sched = DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                          beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon")
    return vae, text, unet, sched


def scene_batch(rng: np.random.Generator, n: int):
    """(n, 3, 64, 64) images in [-1, 1] and one random caption per image."""
    imgs, caps = [], []
    for _ in range(n):
        scene = scenes.random_scene(rng, n_objects=int(rng.integers(1, 3)), distinct=False)
        img, _ = scenes.render_scene(scene, IMAGE_SIZE, supersample=2)
        imgs.append(img)
        caps.append(scenes.random_caption(scene, rng))
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2) * 2 - 1
    return x, caps


def train_vae(vae, steps: int, batch: int, rng, log_every=50):
    """Reconstruction training: MSE + 1e-6 KL (SD's VAE uses a tiny KL weight too)."""
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
    t0 = time.time()
    for step in range(1, steps + 1):
        x, _ = scene_batch(rng, batch)
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        kl = post.kl().mean()
        loss = F.mse_loss(rec, x) + 1e-6 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % log_every == 0:
            print(f"vae {step} mse {F.mse_loss(rec, x).item():.4f} kl {kl.item():.1f} "
                  f"{(time.time() - t0) / step:.2f} s/step", flush=True)
    vae.requires_grad_(False)


def train_unet(unet, text, tokenizer, vae, sched, steps: int, batch: int, rng, log_every=50):
    """Denoising training on scaled latents with captions (10 % empty for CFG)."""
    params = list(unet.parameters()) + list(text.parameters())
    opt = torch.optim.Adam(params, lr=5e-4)
    scale = vae.config.scaling_factor
    gen = torch.Generator().manual_seed(1)
    t0 = time.time()
    for step in range(1, steps + 1):
        x, caps = scene_batch(rng, batch)
        caps = ["" if rng.random() < 0.1 else c for c in caps]
        with torch.no_grad():
            z = vae.encode(x).latent_dist.sample(gen) * scale
        ids = tokenizer(caps, padding="max_length", max_length=77, truncation=True,
                        return_tensors="pt").input_ids
        cond = text(ids)[0]
        t = torch.randint(0, 1000, (batch,), generator=gen)
        noise = torch.randn(z.shape, generator=gen)
        zt = sched.add_noise(z, noise, t)
        loss = F.mse_loss(unet(zt, t, encoder_hidden_states=cond).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % log_every == 0:
            print(f"unet {step} loss {loss.item():.4f} {(time.time() - t0) / step:.2f} s/step",
                  flush=True)


def make(out: Path, vae_steps: int = 400, unet_steps: int = 400, batch: int = 16,
         seed: int = 0) -> None:
    from diffusers import StableDiffusionPipeline
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    vae, text, unet, sched = build_parts()
    tok_tmp = Path(tempfile.mkdtemp(prefix="toy_sd_tok_"))
    tokenizer = build_tokenizer(tok_tmp)
    train_vae(vae, vae_steps, batch, rng)
    with torch.no_grad():  # SD convention: scaled latents have unit variance
        x, _ = scene_batch(np.random.default_rng(seed + 1), 64)
        std = vae.encode(x).latent_dist.mean.std().item()
    vae.register_to_config(scaling_factor=round(1.0 / std, 5))
    print(f"latent std {std:.4f} -> scaling_factor {1 / std:.4f}")
    train_unet(unet, text, tokenizer, vae, sched, unet_steps, batch * 2, rng)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                                   scheduler=sched, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.to(torch.float16)  # halves the committed size; loaders upcast to fp32
    out = Path(out)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp_", dir=out.parent))
    pipe.save_pretrained(tmp, safe_serialization=True)
    (tmp / "README.md").write_text(
        "# toy_sd\n\nTiny latent Stable-Diffusion-style pipeline of the LiveLayers toy world, "
        "made by `toyworld/make_toy_sd.py` "
        f"(VAE {vae_steps} steps, UNet+text {unet_steps} steps, batch {batch}).\n"
        "The UNet is only briefly trained: it is for testing blending mechanics, "
        "not text-to-image quality.\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    shutil.rmtree(tok_tmp, ignore_errors=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("tests/assets/toy_sd"))
    p.add_argument("--vae-steps", type=int, default=400)
    p.add_argument("--unet-steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    make(a.out, a.vae_steps, a.unet_steps, a.batch, a.seed)


if __name__ == "__main__":
    main()
