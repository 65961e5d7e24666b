"""Train the tiny pixel DDPM of the toy world and save it as a diffusers folder.

    nice -n 10 python -m livelayers.toyworld.train_ddpm \
        --out tests/assets/toy_ddpm --steps 2000 --run-dir /tmp/toy_ddpm_run

The model is a real diffusers ``UNet2DModel`` (32x32 RGB, block channels
32/64/96, one ResNet layer per block, self-attention at the middle
resolution level and in the mid block) with a ``DDPMScheduler`` (linear betas,
1000 steps, epsilon prediction). It learns to draw toy-world scenes (one or
two objects on a textured background, ``toyworld.scenes``) so that
blended-diffusion tests have a model whose samples look like the world the
toy CLIP knows.

Training: Adam, MSE on the predicted noise, an exponential moving average of
the weights (what is saved), random horizontal flips. The run folder holds a
checkpoint (weights, EMA, optimiser, RNG, step): the same command resumes.
The output folder is rewritten atomically every ``--save-every`` steps, as
fp16 safetensors (upcast on load) to keep the committed copy small.
"""
from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..engine.checkpoint import (CHECKPOINT_NAME, load_checkpoint, load_states, rng_state, save_checkpoint,
                                 set_rng_state, states)
from ..engine.atomic import replace_folder
from ..engine.errors import Cancelled
from ..engine.progress import Progress, ensure
from . import scenes
from .cli import training_parser

SIZE = 32


def build_unet():
    """The tiny UNet2DModel (about 2 M parameters)."""
    from diffusers import UNet2DModel
    return UNet2DModel(
        sample_size=SIZE, in_channels=3, out_channels=3, layers_per_block=1,
        block_out_channels=(32, 64, 96),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=32, norm_num_groups=32,
    )


def build_scheduler():
    from diffusers import DDPMScheduler
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear",
                         beta_start=1e-4, beta_end=0.02, prediction_type="epsilon",
                         clip_sample=True)


def training_scene(rng: np.random.Generator) -> scenes.ToyScene:
    """One scene of the DDPM's training distribution: 1-2 objects, any colours and
    shapes (toyworld/ddpm_quality.py compares samples with these)."""
    return scenes.random_scene(rng, n_objects=int(rng.integers(1, 3)), distinct=False)


def render_pool(count: int, seed: int) -> torch.Tensor:
    """``count`` random scenes with 1-2 objects: (count, 3, 32, 32) in [-1, 1]."""
    rng = np.random.default_rng(seed)
    out = np.empty((count, SIZE, SIZE, 3), np.float32)
    for i in range(count):
        out[i], _ = scenes.render_scene(training_scene(rng), SIZE, supersample=2)
    return torch.from_numpy(out).permute(0, 3, 1, 2) * 2 - 1


def save_folder(unet, scheduler, out: Path, info: dict) -> None:
    """Atomically (re)write the diffusers folder: unet/ (fp16 safetensors) + scheduler/."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp_", dir=out.parent))
    half = copy.deepcopy(unet).half()
    half.save_pretrained(tmp / "unet", safe_serialization=True)
    scheduler.save_pretrained(tmp / "scheduler")
    lines = [f"{k}: {v}" for k, v in info.items()]
    (tmp / "README.md").write_text(
        "# toy_ddpm\n\nTiny pixel DDPM of the LiveLayers toy world, made by "
        "`toyworld/train_ddpm.py`.\n\n" + "\n".join(f"- {l}" for l in lines) + "\n")
    replace_folder(tmp, out)


def train(out: Path, steps: int = 2000, batch: int = 48, lr: float = 5e-4, pool: int = 6000,
          ema_decay: float = 0.995, save_every: int = 250, seed: int = 0,
          run_dir: Path | None = None, progress: Progress | None = None) -> None:
    """Train (or resume) and write ``out``; see the module docstring."""
    progress = ensure(progress, "train_ddpm")
    torch.manual_seed(seed)
    unet, scheduler = build_unet(), build_scheduler()
    ema = copy.deepcopy(unet).requires_grad_(False)
    opt = torch.optim.Adam(unet.parameters(), lr=lr)
    objects = {"unet": unet, "ema": ema, "opt": opt}   # checkpoint keys
    step = 0
    ckpt_path = Path(run_dir) / CHECKPOINT_NAME if run_dir else None
    if ckpt_path and ckpt_path.exists():
        state = load_checkpoint(ckpt_path, expect={"kind": "toy_ddpm", "version": 1})
        load_states(state, objects)
        set_rng_state(state["rng"])
        step = state["step"]
        print(f"resumed at step {step}")
    data = render_pool(pool, seed)  # deterministic: rebuilt identically on resume
    alphas = scheduler.alphas_cumprod
    gen = torch.Generator().manual_seed(seed + step)

    def checkpoint():
        if ckpt_path:
            save_checkpoint(ckpt_path, {"kind": "toy_ddpm", "version": 1, "step": step,
                                        **states(objects), "rng": rng_state()})

    t0, losses = time.time(), []
    try:
        while step < steps:
            idx = torch.randint(0, pool, (batch,), generator=gen)
            x0 = data[idx]
            flip = torch.rand(batch, generator=gen) < 0.5
            x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
            t = torch.randint(0, 1000, (batch,), generator=gen)
            noise = torch.randn(x0.shape, generator=gen)
            a = alphas[t].view(-1, 1, 1, 1)
            xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
            # warm-up: a few hundred steps at full lr from scratch are unstable
            for g in opt.param_groups:
                g["lr"] = lr * min(1.0, (step + 1) / 100)
            loss = F.mse_loss(unet(xt, t).sample, noise)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
            opt.step()
            d = min(ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for pe, p in zip(ema.parameters(), unet.parameters()):
                    pe.lerp_(p, 1 - d)
            step += 1
            losses.append(loss.item())
            progress.update(step, steps, loss=loss.item())
            if step % 25 == 0:
                print(f"step {step} loss {np.mean(losses[-25:]):.4f} "
                      f"{(time.time() - t0) / len(losses):.2f} s/step", flush=True)
            if step % save_every == 0 or step == steps:
                checkpoint()
                save_folder(ema, scheduler, out, {"steps": step, "batch": batch, "lr": lr,
                                                  "ema_decay": ema_decay, "pool": pool,
                                                  "final_loss": round(float(np.mean(losses[-50:])), 4)})
    except (Cancelled, KeyboardInterrupt):
        checkpoint()
        raise


def main(argv=None) -> None:
    p = training_parser(__doc__, out="tests/assets/toy_ddpm", steps=2000, batch=48, lr=5e-4, threads=2)
    p.add_argument("--pool", type=int, default=6000)
    p.add_argument("--save-every", type=int, default=250)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    train(a.out, a.steps, a.batch, a.lr, a.pool, save_every=a.save_every, seed=a.seed,
          run_dir=a.run_dir)


if __name__ == "__main__":
    main()
