"""DINO ViT handle: a plain Vision Transformer, written here, that loads DINO
weights from local files without torch hub or timm.

Native weight layout (``model.safetensors`` + ``config.json`` with
``"format": "livelayers-dino"``) uses the key names of the original DINO
code (facebookresearch/dino ``vision_transformer.py``), so an original
``dino_vitbase8_pretrain.pth`` state dict loads as is::

    cls_token                     (1, 1, C)
    pos_embed                     (1, 1 + n_patches, C)
    patch_embed.proj.weight       (C, 3, p, p)      .bias (C,)
    blocks.{i}.norm1.weight/bias  (C,)
    blocks.{i}.attn.qkv.weight    (3C, C)           .bias (3C,)
    blocks.{i}.attn.proj.weight   (C, C)            .bias (C,)
    blocks.{i}.norm2.weight/bias  (C,)
    blocks.{i}.mlp.fc1.weight     (hidden, C)       .bias (hidden,)
    blocks.{i}.mlp.fc2.weight     (C, hidden)       .bias (C,)
    norm.weight/bias              (C,)

Hugging Face ``transformers`` ViTModel folders (e.g. ``facebook/dino-vitb8``:
``config.json`` with ``"model_type": "vit"`` + ``model.safetensors`` or
``pytorch_model.bin``) are converted on load by :func:`convert_hf_vit`.

The handle returns patch features ``(N, h*w, C)`` (output of the final norm)
and the last block's CLS-to-patch attention per head ``(N, heads, h, w)``.
Position embeddings are interpolated (bicubic, as in DINO) for any input
whose sides are multiples of the patch size.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import CorruptFileError, InputError, ModelNotFoundError

NATIVE_FORMAT = "livelayers-dino"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------- the network

@dataclass
class ViTConfig:
    image_size: int = 224      # size the position embeddings were trained at
    patch_size: int = 8
    width: int = 768
    depth: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    ln_eps: float = 1e-6
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return {"format": NATIVE_FORMAT, **d}

    @classmethod
    def from_json(cls, d: dict) -> "ViTConfig":
        keys = cls.__dataclass_fields__
        cfg = cls(**{k: v for k, v in d.items() if k in keys})
        cfg.mean, cfg.std = tuple(cfg.mean), tuple(cfg.std)
        return cfg


class Attention(nn.Module):
    """Multi-head self-attention that also returns its post-softmax weights."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, L, C) -> (out (N, L, C), attention (N, heads, L, L))."""
        n, length, c = x.shape
        qkv = self.qkv(x).reshape(n, length, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5
        attn = attn.softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(n, length, c)
        return self.proj(out), attn


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block (DINO/timm layout)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=eps)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width, eps=eps)
        self.mlp = Mlp(width, int(width * mlp_ratio))

    def forward(self, x):
        a, attn = self.attn(self.norm1(x))
        x = x + a
        x = x + self.mlp(self.norm2(x))
        return x, attn


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, width: int):
        super().__init__()
        self.proj = nn.Conv2d(3, width, kernel_size=patch, stride=patch)

    def forward(self, x):
        return self.proj(x)  # (N, C, h, w)


def interpolate_pos_embed(pos_embed: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Resize the patch part of a position embedding to an h x w grid.

    pos_embed (1, 1 + g*g, C) -> (1, 1 + h*w, C); the CLS entry is kept.
    Bicubic on the square grid, as DINO does for other input sizes.
    """
    cls_pos, grid_pos = pos_embed[:, :1], pos_embed[:, 1:]
    g = int(round(math.sqrt(grid_pos.shape[1])))
    if g * g != grid_pos.shape[1]:
        raise CorruptFileError(f"pos_embed has {grid_pos.shape[1]} patch entries, not a square grid")
    if (h, w) == (g, g):
        return pos_embed
    c = grid_pos.shape[-1]
    grid_pos = grid_pos.reshape(1, g, g, c).permute(0, 3, 1, 2)
    grid_pos = F.interpolate(grid_pos, size=(h, w), mode="bicubic", align_corners=False)
    return torch.cat([cls_pos, grid_pos.permute(0, 2, 3, 1).reshape(1, h * w, c)], dim=1)


class ViT(nn.Module):
    """A DINO-style ViT (no classifier head)."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        g = cfg.image_size // cfg.patch_size
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + g * g, cfg.width))
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads, cfg.mlp_ratio, cfg.ln_eps)
                                    for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.width, eps=cfg.ln_eps)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """x (N, 3, H, W) normalised, H and W multiples of the patch size.

        Returns tokens (N, 1 + h*w, C) after the final norm, the last block's
        attention (N, heads, 1 + h*w, 1 + h*w), and the grid (h, w).
        """
        p = self.patch_embed(x)
        n, c, h, w = p.shape
        tokens = torch.cat([self.cls_token.expand(n, -1, -1), p.flatten(2).transpose(1, 2)], 1)
        tokens = tokens + interpolate_pos_embed(self.pos_embed, h, w)
        attn = None
        for blk in self.blocks:
            tokens, attn = blk(tokens)
        return self.norm(tokens), attn, (h, w)


# --------------------------------------------------------------------------- the handle

@dataclass
class DINOOutput:
    features: torch.Tensor   # (N, h*w, C) patch tokens after the final norm
    cls: torch.Tensor        # (N, C) CLS token after the final norm
    attention: torch.Tensor  # (N, heads, h, w) last-block CLS -> patch attention
    grid: tuple[int, int]    # (h, w)

    def feature_map(self) -> torch.Tensor:
        """Patch features as an image: (N, C, h, w)."""
        n, _, c = self.features.shape
        return self.features.transpose(1, 2).reshape(n, c, *self.grid)


class DINOHandle:
    """A frozen DINO ViT and its normalisation. Node type ``LL_DINO``."""

    def __init__(self, model: ViT, source: str = "", device: str | torch.device = "cpu"):
        self.model = model.eval().requires_grad_(False).to(device)
        self.cfg = model.cfg
        self.source = source
        self.device = torch.device(device)

    @property
    def patch_size(self) -> int:
        return self.cfg.patch_size

    @property
    def image_size(self) -> int:
        return self.cfg.image_size

    @property
    def embed_dim(self) -> int:
        return self.cfg.width

    @property
    def heads(self) -> int:
        return self.cfg.heads

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) [0,1] -> normalised with the model's mean/std."""
        mean = torch.tensor(self.cfg.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.cfg.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def __call__(self, x: torch.Tensor, node: str = "LL_DINO") -> DINOOutput:
        """Run the ViT on ``x`` (N, 3, H, W) in [0,1].

        H and W must be multiples of the patch size (nothing is resized
        here; callers resize on purpose and say so).
        """
        if x.ndim != 4 or x.shape[1] != 3:
            raise InputError(node, "image", f"has shape {tuple(x.shape)}", "(N, 3, H, W)")
        p = self.patch_size
        if x.shape[-1] % p or x.shape[-2] % p:
            raise InputError(node, "image", f"is {x.shape[-1]}x{x.shape[-2]} pixels",
                             f"sides that are multiples of the DINO patch size {p}")
        tokens, attn, (h, w) = self.model(self.normalise(x.to(self.device).float()))
        cls_attn = attn[:, :, 0, 1:].reshape(x.shape[0], -1, h, w)
        return DINOOutput(features=tokens[:, 1:], cls=tokens[:, 0], attention=cls_attn, grid=(h, w))


# --------------------------------------------------------------------------- converters

# transformers ViTModel key names per block, as (prefix, {ours: theirs}): the
# layout of the files on the Hugging Face hub (and transformers < 5), and the
# module layout of transformers >= 5 (which renames the hub's keys on load).
_HF_BLOCK_LAYOUTS = (
    ("encoder.layer.{i}.", {"q": "attention.attention.query", "k": "attention.attention.key",
                            "v": "attention.attention.value", "attn.proj": "attention.output.dense",
                            "norm1": "layernorm_before", "norm2": "layernorm_after",
                            "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense"}),
    ("layers.{i}.", {"q": "attention.q_proj", "k": "attention.k_proj", "v": "attention.v_proj",
                     "attn.proj": "attention.o_proj", "norm1": "layernorm_before",
                     "norm2": "layernorm_after", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}),
)


def convert_hf_vit(state: dict[str, torch.Tensor], hf_config: dict) -> tuple[dict, ViTConfig]:
    """A transformers ``ViTModel`` state dict (``facebook/dino-vit*``) ->
    (native state dict, ViTConfig). Reads the hub files' key layout and
    transformers 5's module layout; a ``vit.`` prefix (ViTFor… models) and
    the pooler are dropped; q, k, v are concatenated into ``qkv``."""
    state = {k[4:] if k.startswith("vit.") else k: v for k, v in state.items()}
    cfg = ViTConfig(image_size=int(hf_config.get("image_size", 224)),
                    patch_size=int(hf_config.get("patch_size", 16)),
                    width=int(hf_config.get("hidden_size", 768)),
                    depth=int(hf_config.get("num_hidden_layers", 12)),
                    heads=int(hf_config.get("num_attention_heads", 12)),
                    ln_eps=float(hf_config.get("layer_norm_eps", 1e-12)))
    cfg.mlp_ratio = int(hf_config.get("intermediate_size", 4 * cfg.width)) / cfg.width
    prefix, names = next(((p, n) for p, n in _HF_BLOCK_LAYOUTS
                          if p.format(i=0) + n["q"] + ".weight" in state), _HF_BLOCK_LAYOUTS[0])
    out = {
        "cls_token": state["embeddings.cls_token"],
        "pos_embed": state["embeddings.position_embeddings"],
        "patch_embed.proj.weight": state["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": state["embeddings.patch_embeddings.projection.bias"],
        "norm.weight": state["layernorm.weight"],
        "norm.bias": state["layernorm.bias"],
    }
    for i in range(cfg.depth):
        src, dst = prefix.format(i=i), f"blocks.{i}."
        for part in ("weight", "bias"):
            out[dst + f"attn.qkv.{part}"] = torch.cat(
                [state[src + names[n] + f".{part}"] for n in ("q", "k", "v")], 0)
            for ours in ("attn.proj", "norm1", "norm2", "mlp.fc1", "mlp.fc2"):
                out[dst + f"{ours}.{part}"] = state[src + names[ours] + f".{part}"]
    return out, cfg


def config_from_dino_state(state: dict[str, torch.Tensor]) -> ViTConfig:
    """Infer the config of an original DINO state dict from its shapes
    (heads = width / 64, as in every released DINO ViT)."""
    state = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items()}
    width = state["cls_token"].shape[-1]
    patch = state["patch_embed.proj.weight"].shape[-1]
    g = int(round(math.sqrt(state["pos_embed"].shape[1] - 1)))
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    hidden = state["blocks.0.mlp.fc1.weight"].shape[0]
    return ViTConfig(image_size=g * patch, patch_size=patch, width=width, depth=depth,
                     heads=max(1, width // 64), mlp_ratio=hidden / width)


# --------------------------------------------------------------------------- load / save

def save_dino(model: ViT, folder: str | Path, extra: dict | None = None, half: bool = False) -> Path:
    """Write a native DINO folder (config.json + model.safetensors) atomically."""
    from safetensors.torch import save_file

    from ..atomic import atomic_path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: (v.detach().half() if half else v.detach().float()).contiguous()
             for k, v in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp))
    cfg = model.cfg.to_json()
    if extra:
        cfg["livelayers"] = extra
    with atomic_path(folder / CONFIG_NAME) as tmp:
        tmp.write_text(json.dumps(cfg, indent=2))
    return folder


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        # a file that is not a checkpoint makes torch.load raise almost anything
        # (UnpicklingError, EOFError, struct.error, AssertionError...): each is
        # re-raised as one CorruptFileError naming the file and the cause
        raise CorruptFileError(f"{path}: not readable DINO weights ({type(e).__name__}: "
                               f"{' '.join(str(e).split())[:200]})") from e
    if isinstance(state, dict) and "teacher" in state and isinstance(state["teacher"], dict):
        state = state["teacher"]  # a DINO training checkpoint: use the teacher
    if not isinstance(state, dict):
        raise CorruptFileError(f"{path}: holds {type(state).__name__}, expected a state dict")
    return state


def _load_folder(folder: Path) -> ViT:
    cfg_path = folder / CONFIG_NAME
    if not cfg_path.is_file():
        raise CorruptFileError(f"{folder}: no {CONFIG_NAME}; a DINO folder needs config.json + "
                               f"{WEIGHTS_NAME} (native) or a transformers ViTModel folder")
    config = json.loads(cfg_path.read_text())
    weights = next((folder / n for n in (WEIGHTS_NAME, "pytorch_model.bin")
                    if (folder / n).is_file()), None)
    if weights is None:
        raise CorruptFileError(f"{folder}: no {WEIGHTS_NAME} or pytorch_model.bin")
    state = _read_state(weights)
    if config.get("format") == NATIVE_FORMAT:
        cfg = ViTConfig.from_json(config)
    elif config.get("model_type") == "vit":
        state, cfg = convert_hf_vit(state, config)
    else:
        raise CorruptFileError(f"{cfg_path}: neither a LiveLayers DINO config "
                               f"(format={NATIVE_FORMAT!r}) nor a transformers ViT config")
    return _build(state, cfg, str(folder))


def _build(state: dict, cfg: ViTConfig, where: str) -> ViT:
    state = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("head.")}
    model = ViT(cfg)
    try:
        model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except RuntimeError as e:
        raise CorruptFileError(f"{where}: weights do not match the config ({e})") from e
    return model


def _local_path(spec: str, offline: bool | None, search_dirs=()) -> Path:
    """Spec -> local file or folder, through the one resolver (engine/models/resolve.py).

    When the resolver answers with a hub repo (downloading allowed, found
    nowhere local), only the config and the safetensors weights are fetched.
    """
    from . import resolve
    found = resolve.resolve(spec, "dino", offline=offline, search_dirs=search_dirs)
    if found.path is not None:
        return Path(found.path)
    if found.hub is None or found.hub.startswith(("http://", "https://")):
        raise ModelNotFoundError(f"DINO model {spec!r} has no hub repo to download from; give a "
                                 f"folder with {CONFIG_NAME} + {WEIGHTS_NAME} or a .pth file")
    model_id = found.entry["id"] if found.entry else None
    return resolve.download_hub(found.hub.removeprefix("hf-hub:"), [CONFIG_NAME, WEIGHTS_NAME],
                                model_id=model_id)


def load_dino(spec: str, device: str | torch.device = "cpu", offline: bool | None = None,
              search_dirs=(), node: str = "LL_LoadDINO") -> DINOHandle:
    """Load a DINO ViT from ``spec``:

    - ``local-dir:/path`` or a folder path: native (``config.json`` with
      ``format: livelayers-dino``) or a transformers ViTModel folder;
    - a ``.pth`` / ``.safetensors`` file: an original DINO state dict;
    - a repo id (``facebook/dino-vitb8``, ``hf-hub:…``) or a catalogue id
      (``toy-dino``): through ``engine/models/resolve.py`` (download only
      where allowed).
    ``device``: "cpu", "cuda", "auto" (engine/device.py).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(node, "spec", f"is {spec!r}",
                         "a folder, a .pth/.safetensors file, 'local-dir:/path' or a repo id")
    spec = spec.strip()
    p = _local_path(spec, offline, search_dirs)
    if p.is_dir():
        model = _load_folder(p)
    elif p.is_file():
        state = _read_state(p)
        model = _build(state, config_from_dino_state(state), str(p))
    else:
        raise ModelNotFoundError(f"DINO model {spec!r} resolved to '{p}', which does not exist")
    from ..device import pick_device
    dev = device if isinstance(device, torch.device) else pick_device(device)
    return DINOHandle(model, source=spec, device=dev)
