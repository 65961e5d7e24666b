"""OpenAI guided-diffusion UNet checkpoints -> a diffusers ``UNet2DModel``.

Blended Diffusion (Avrahami et al. 2022) uses guided-diffusion's unconditional
256x256 ImageNet model (``256x256_diffusion_uncond.pt``, catalogue id
``guided-diffusion-256-uncond``). That file is a plain state dict of
guided-diffusion's own ``UNetModel``; this module maps it onto diffusers'
``UNet2DModel``, which has the same building blocks:

=====================================  =========================================
guided-diffusion                       diffusers ``UNet2DModel``
=====================================  =========================================
``time_embed.0`` / ``.2``              ``time_embedding.linear_1`` / ``linear_2``
``input_blocks.0.0``                   ``conv_in``
ResBlock ``in_layers.0`` / ``.2``      ResnetBlock2D ``norm1`` / ``conv1``
ResBlock ``emb_layers.1``              ``time_emb_proj`` (2C wide = scale-shift norm)
ResBlock ``out_layers.0`` / ``.3``     ``norm2`` / ``conv2``
ResBlock ``skip_connection``           ``conv_shortcut`` (1x1)
ResBlock(down=True) / ``op`` conv      ``downsamplers.0`` (resnet / conv type)
ResBlock(up=True) / Upsample ``conv``  ``upsamplers.0`` (resnet / conv type)
AttentionBlock ``norm``                ``group_norm``
AttentionBlock ``qkv`` (1x1 conv, 3C)  ``to_q``, ``to_k``, ``to_v`` (split, see below)
AttentionBlock ``proj_out``            ``to_out.0``
``middle_block.0`` / ``.1`` / ``.2``   ``mid_block.resnets.0`` / ``attentions.0`` / ``resnets.1``
``out.0`` / ``out.2``                  ``conv_norm_out`` / ``conv_out``
=====================================  =========================================

Input blocks run level by level: ``num_res_blocks`` ResBlocks (each followed
by an AttentionBlock on attention levels), then one downsampler except on the
last level; output blocks mirror them with ``num_res_blocks + 1`` ResBlocks
per level and the upsampler in the level's last block. The default ("legacy")
attention packs ``qkv`` per head as ``[q_h, k_h, v_h]``; the "new order" packs
all q, then all k, then all v. Both scale q·k by 1/sqrt(head channels), as
diffusers does.

What the weights do not say is passed in: the head width (64 in every
released 256/512 model; ``head_channels``), the attention order (legacy in
the 256 unconditional model) and the image size (read from a file name like
``256x256_...``, else ``sample_size``). Learned-variance models have 6 output
channels (ε, then the variance interpolation); blended diffusion uses the
first 3 with the fixed posterior variance. Class-conditional checkpoints are
refused: the edit path is unconditional.

The checkpoint is read with ``torch.load(weights_only=True)``: no pickled
code runs. ``convert_checkpoint`` writes a diffusers folder (safetensors) once,
so later loads skip the conversion::

    python -m livelayers.engine.models.guided_diffusion 256x256_diffusion_uncond.pt --out DIR
"""
from __future__ import annotations

import argparse
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import CorruptFileError

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
GROUPS = 32  # guided-diffusion's GroupNorm32


@dataclass
class GuidedLayout:
    """What the state dict's shapes say about a guided-diffusion UNet."""
    in_channels: int
    model_channels: int
    out_channels: int
    channel_mult: tuple[int, ...]
    num_res_blocks: int
    attention: tuple[bool, ...]     # per level
    resblock_updown: bool
    scale_shift: bool


def _has(state: dict, prefix: str) -> bool:
    return any(k.startswith(prefix) for k in state)


def _indices(state: dict, group: str) -> list[int]:
    return sorted({int(k.split(".")[1]) for k in state if k.startswith(group + ".")})


def infer_layout(state: dict[str, torch.Tensor], where: str = "checkpoint") -> GuidedLayout:
    """Read the architecture from a guided-diffusion ``UNetModel`` state dict."""
    need = ("input_blocks.0.0.weight", "time_embed.0.weight", "out.2.weight", "middle_block.1.qkv.weight")
    missing = [k for k in need if k not in state]
    if missing:
        raise CorruptFileError(f"{where}: not a guided-diffusion UNet state dict (no {missing[0]})")
    if "label_emb.weight" in state:
        raise CorruptFileError(f"{where}: a class-conditional guided-diffusion model; blended "
                               f"diffusion needs an unconditional one (256x256_diffusion_uncond.pt)")
    mc, in_ch = state["input_blocks.0.0.weight"].shape[:2]
    outs = _indices(state, "output_blocks")
    # the first output block holding an upsampler (a sub-layer after the ResBlock
    # that is a ResBlock or a conv, not attention) ends the deepest level
    ups = [j for j in outs if any(_has(state, f"output_blocks.{j}.{s}.in_layers") or
                                  f"output_blocks.{j}.{s}.conv.weight" in state for s in (1, 2))]
    n_res = (ups[0] if ups else len(outs) - 1)
    levels = len(outs) // (n_res + 1)
    if levels * (n_res + 1) != len(outs) or len(_indices(state, "input_blocks")) != len(outs):
        raise CorruptFileError(f"{where}: input/output blocks do not form a guided-diffusion UNet")
    mult, attention = [], []
    for level in range(levels):
        first = 1 + level * (n_res + 1)
        width = state[f"input_blocks.{first}.0.out_layers.3.weight"].shape[0]
        mult.append(width // mc)
        attention.append(f"input_blocks.{first}.1.qkv.weight" in state)
    down = 1 + n_res  # the first downsampler's input block
    updown = levels > 1 and _has(state, f"input_blocks.{down}.0.in_layers")
    emb = state["input_blocks.1.0.emb_layers.1.weight"].shape[0]
    return GuidedLayout(int(in_ch), int(mc), int(state["out.2.weight"].shape[0]), tuple(mult), n_res,
                        tuple(attention), bool(updown), emb == 2 * mult[0] * mc)


def unet_config(layout: GuidedLayout, sample_size: int, head_channels: int = 64) -> dict:
    """``UNet2DModel`` keyword arguments for this layout."""
    rest_down = "ResnetDownsampleBlock2D" if layout.resblock_updown else "DownBlock2D"
    rest_up = "ResnetUpsampleBlock2D" if layout.resblock_updown else "UpBlock2D"
    return dict(
        sample_size=sample_size, in_channels=layout.in_channels, out_channels=layout.out_channels,
        block_out_channels=tuple(m * layout.model_channels for m in layout.channel_mult),
        layers_per_block=layout.num_res_blocks,
        down_block_types=tuple("AttnDownBlock2D" if a else rest_down for a in layout.attention),
        up_block_types=tuple("AttnUpBlock2D" if a else rest_up for a in reversed(layout.attention)),
        downsample_type="resnet" if layout.resblock_updown else "conv",
        upsample_type="resnet" if layout.resblock_updown else "conv",
        attention_head_dim=head_channels, norm_num_groups=GROUPS, attn_norm_num_groups=GROUPS,
        norm_eps=1e-5, act_fn="silu", flip_sin_to_cos=True, freq_shift=0,  # [cos, sin] embedding
        resnet_time_scale_shift="scale_shift" if layout.scale_shift else "default",
        time_embedding_type="positional", add_attention=True)


# ---------------------------------------------------------------- state dict

_RES = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
        "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}


def _resblock(state: dict, src: str, dst: str, out: dict) -> None:
    for theirs, ours in _RES.items():
        for part in ("weight", "bias"):
            key = f"{src}.{theirs}.{part}"
            if key in state:
                out[f"{dst}.{ours}.{part}"] = state[key]


def _attention(state: dict, src: str, dst: str, heads: int, new_order: bool, out: dict) -> None:
    out[f"{dst}.group_norm.weight"] = state[f"{src}.norm.weight"]
    out[f"{dst}.group_norm.bias"] = state[f"{src}.norm.bias"]
    w = state[f"{src}.qkv.weight"].squeeze(-1)        # (3C, C)
    b = state[f"{src}.qkv.bias"]                      # (3C,)
    c = w.shape[1]
    if c % heads:
        raise CorruptFileError(f"{src}: {c} channels do not split into {heads} heads")
    # legacy: rows grouped per head as [q_h, k_h, v_h]; new order: [q..., k..., v...]
    shape = (3, heads, c // heads) if new_order else (heads, 3, c // heads)
    w = w.reshape(*shape, c)
    b = b.reshape(shape)
    for i, name in enumerate(("to_q", "to_k", "to_v")):
        wi, bi = (w[i], b[i]) if new_order else (w[:, i], b[:, i])
        out[f"{dst}.{name}.weight"] = wi.reshape(c, c).contiguous()
        out[f"{dst}.{name}.bias"] = bi.reshape(c).contiguous()
    out[f"{dst}.to_out.0.weight"] = state[f"{src}.proj_out.weight"].squeeze(-1)
    out[f"{dst}.to_out.0.bias"] = state[f"{src}.proj_out.bias"]


def _resampler(state: dict, src: str, dst: str, conv_name: str, out: dict) -> None:
    """A ResBlock(up/down) or a conv resampler (``op`` / ``conv``) -> ``dst``."""
    if _has(state, f"{src}.in_layers"):
        _resblock(state, src, dst, out)
    else:
        out[f"{dst}.conv.weight"] = state[f"{src}.{conv_name}.weight"]
        out[f"{dst}.conv.bias"] = state[f"{src}.{conv_name}.bias"]


def convert_state(state: dict[str, torch.Tensor], layout: GuidedLayout, head_channels: int = 64,
                  new_attention_order: bool = False) -> dict[str, torch.Tensor]:
    """guided-diffusion key names -> ``UNet2DModel`` key names (tensors shared)."""
    out = {"conv_in.weight": state["input_blocks.0.0.weight"], "conv_in.bias": state["input_blocks.0.0.bias"],
           "time_embedding.linear_1.weight": state["time_embed.0.weight"],
           "time_embedding.linear_1.bias": state["time_embed.0.bias"],
           "time_embedding.linear_2.weight": state["time_embed.2.weight"],
           "time_embedding.linear_2.bias": state["time_embed.2.bias"],
           "conv_norm_out.weight": state["out.0.weight"], "conv_norm_out.bias": state["out.0.bias"],
           "conv_out.weight": state["out.2.weight"], "conv_out.bias": state["out.2.bias"]}
    n, levels, mc = layout.num_res_blocks, len(layout.channel_mult), layout.model_channels

    def heads(level):
        return layout.channel_mult[level] * mc // head_channels

    block = 1
    for level in range(levels):
        for r in range(n):
            _resblock(state, f"input_blocks.{block}.0", f"down_blocks.{level}.resnets.{r}", out)
            if layout.attention[level]:
                _attention(state, f"input_blocks.{block}.1", f"down_blocks.{level}.attentions.{r}",
                           heads(level), new_attention_order, out)
            block += 1
        if level < levels - 1:
            _resampler(state, f"input_blocks.{block}.0", f"down_blocks.{level}.downsamplers.0", "op", out)
            block += 1
    mid = layout.channel_mult[-1] * mc // head_channels
    _resblock(state, "middle_block.0", "mid_block.resnets.0", out)
    _attention(state, "middle_block.1", "mid_block.attentions.0", mid, new_attention_order, out)
    _resblock(state, "middle_block.2", "mid_block.resnets.1", out)
    block = 0
    for i, level in enumerate(reversed(range(levels))):
        for r in range(n + 1):
            _resblock(state, f"output_blocks.{block}.0", f"up_blocks.{i}.resnets.{r}", out)
            sub = 1
            if layout.attention[level]:
                _attention(state, f"output_blocks.{block}.1", f"up_blocks.{i}.attentions.{r}",
                           heads(level), new_attention_order, out)
                sub = 2
            if level > 0 and r == n:
                _resampler(state, f"output_blocks.{block}.{sub}", f"up_blocks.{i}.upsamplers.0", "conv", out)
            block += 1
    return out


# ---------------------------------------------------------------- loading

def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in a guided-diffusion ``.pt`` (``weights_only=True``)."""
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        # a truncated or foreign file makes torch.load raise almost anything;
        # each becomes one error naming the file and the cause
        raise CorruptFileError(f"{path}: not a readable guided-diffusion checkpoint "
                               f"({type(e).__name__}: {' '.join(str(e).split())[:200]})") from e
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CorruptFileError(f"{path}: holds {type(state).__name__}, expected a state dict of tensors")
    return state


def size_from_name(path: str | Path) -> int | None:
    """256 for ``256x256_diffusion_uncond.pt`` (guided-diffusion's file names)."""
    m = re.search(r"(\d+)x(\d+)", Path(path).name)
    return int(m.group(1)) if m and m.group(1) == m.group(2) else None


def checkpoint_in(folder: str | Path) -> Path | None:
    """The one guided-diffusion checkpoint in a folder (as ``models fetch`` leaves
    it), or None when the folder is not that."""
    folder = Path(folder)
    found = [p for p in folder.iterdir() if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES]
    return found[0] if len(found) == 1 else None


def load_unet(path: str | Path, sample_size: int | None = None, head_channels: int = 64,
              new_attention_order: bool = False):
    """A frozen-ready ``UNet2DModel`` (fp32, eval) from a guided-diffusion checkpoint."""
    from diffusers import UNet2DModel

    size = sample_size or size_from_name(path)
    if size is None:
        raise CorruptFileError(f"{path}: the image size is not in the file name (e.g. 256x256_...); "
                               f"rename it or convert it with convert_checkpoint(..., sample_size=N)")
    state = read_checkpoint(path)
    layout = infer_layout(state, str(path))
    unet = UNet2DModel(**unet_config(layout, size, head_channels))
    converted = convert_state(state, layout, head_channels, new_attention_order)
    result = unet.load_state_dict({k: v.float() for k, v in converted.items()}, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CorruptFileError(f"{path}: the converted weights do not fit the UNet (missing "
                               f"{result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]})")
    return unet.eval()


def scheduler():
    """guided-diffusion's training schedule: 1000 linear betas 1e-4..0.02, ε prediction."""
    from diffusers import DDPMScheduler
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4,
                         beta_end=0.02, prediction_type="epsilon", variance_type="learned_range")


def convert_checkpoint(src: str | Path, dest: str | Path, sample_size: int | None = None,
                       head_channels: int = 64, new_attention_order: bool = False) -> Path:
    """Write a diffusers pixel folder (``unet/`` safetensors + ``scheduler/``) for
    a guided-diffusion checkpoint; staged beside ``dest`` and moved into place."""
    from ..atomic import replace_folder

    dest = Path(dest)
    unet = load_unet(src, sample_size, head_channels, new_attention_order)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staged = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(staged, ignore_errors=True)
    try:
        unet.save_pretrained(staged / "unet", safe_serialization=True)
        scheduler().save_pretrained(staged / "scheduler")
        replace_folder(staged, dest)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return dest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m livelayers.engine.models.guided_diffusion",
                                 description="Convert a guided-diffusion checkpoint to a diffusers folder.")
    ap.add_argument("checkpoint", help="e.g. 256x256_diffusion_uncond.pt")
    ap.add_argument("--out", required=True, help="the diffusers folder to write")
    ap.add_argument("--size", type=int, default=None, help="image size (default: from the file name)")
    ap.add_argument("--head-channels", type=int, default=64, help="channels per attention head (64)")
    ap.add_argument("--new-attention-order", action="store_true",
                    help="the checkpoint was trained with use_new_attention_order=True")
    args = ap.parse_args(argv)
    try:
        out = convert_checkpoint(args.checkpoint, args.out, args.size, args.head_channels,
                                 args.new_attention_order)
    except (CorruptFileError, OSError) as e:
        print(f"error: {e}")
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
