"""The Text2LIVE edit-layer generator: a Deep-Image-Prior "skip" U-Net.

Input: the raw RGB image in [0,1], ``(N, 3, H, W)``. Output: an RGBA edit
layer, colour ``(N, 3, H, W)`` (straight, sRGB) and alpha ``(N, 1, H, W)``.

Layout (Ulyanov et al., "Deep Image Prior", the ``skip`` architecture), one
level per scale ``i``::

    x ──┬── skip:  1x1 conv -> BN -> LReLU                    (c_skip ch) ──┐
        └── down:  3x3 conv s2 -> BN -> LReLU -> 3x3 conv -> BN -> LReLU     │
                   -> [next level] -> bilinear x2  ──────────────────────────┤ concat
                                                                              │
        up:   BN -> 3x3 conv -> BN -> LReLU -> 1x1 conv -> BN -> LReLU  <─────┘

and a head: 1x1 conv to 4 channels -> fixed decorrelated colour matrix on the
RGB channels -> sigmoid on all four. All convolutions use reflection padding.

The network is fully convolutional: it is trained on crops and run once on
the whole image. Any H x W works: the input is reflection-padded up to a
multiple of ``2**scales`` (and to at least ``2**(scales+1)`` so the deepest
feature map is >= 2 px, which reflection padding needs) and the output is
cropped back. Nothing is resized.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..atomic import atomic_path
from ..errors import CorruptFileError

GENERATOR_KIND = "livelayers.text2live.generator"
GENERATOR_VERSION = 1

# Square root of the RGB colour correlation of natural images (Olah et al.,
# "Feature Visualization", lucid), normalised by its largest column norm. The
# network predicts decorrelated colour; this fixed matrix maps it back to RGB.
_COLOR_CORRELATION_SQRT = torch.tensor([[0.26, 0.09, 0.02],
                                        [0.27, 0.00, -0.05],
                                        [0.27, -0.09, 0.03]])
COLOR_DECORRELATION = _COLOR_CORRELATION_SQRT / _COLOR_CORRELATION_SQRT.norm(dim=0).max()


@dataclass(frozen=True)
class GeneratorConfig:
    """Shape of the skip U-Net. Defaults are the Text2LIVE image settings (~3.1 M params)."""
    scales: int = 7
    channels_down: int = 128
    channels_up: int = 128
    channels_skip: int = 4
    in_channels: int = 3
    out_channels: int = 4
    leaky_slope: float = 0.2

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "GeneratorConfig":
        return cls(**json.loads(text))


def _conv(c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """Convolution with reflection padding (a 1x1 conv needs none)."""
    pad = (kernel - 1) // 2
    layers: list[nn.Module] = [nn.ReflectionPad2d(pad)] if pad else []
    layers.append(nn.Conv2d(c_in, c_out, kernel, stride=stride))
    return nn.Sequential(*layers)


def _bn_act(c: int, slope: float) -> list[nn.Module]:
    return [nn.BatchNorm2d(c), nn.LeakyReLU(slope)]


class _Level(nn.Module):
    """One scale of the skip U-Net: (N, c_in, h, w) -> (N, c_up, h, w)."""

    def __init__(self, c_in: int, cfg: GeneratorConfig, deeper: nn.Module | None):
        super().__init__()
        cd, cu, cs, s = cfg.channels_down, cfg.channels_up, cfg.channels_skip, cfg.leaky_slope
        self.skip = nn.Sequential(_conv(c_in, cs, 1), *_bn_act(cs, s)) if cs else None
        self.down = nn.Sequential(_conv(c_in, cd, 3, stride=2), *_bn_act(cd, s),
                                  _conv(cd, cd, 3), *_bn_act(cd, s))
        self.deeper = deeper
        c_deep = cu if deeper is not None else cd
        c_cat = cs + c_deep
        self.up = nn.Sequential(nn.BatchNorm2d(c_cat), _conv(c_cat, cu, 3), *_bn_act(cu, s),
                                _conv(cu, cu, 1), *_bn_act(cu, s))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.down(x)
        if self.deeper is not None:
            y = self.deeper(y)
        y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        if self.skip is not None:
            y = torch.cat([self.skip(x), y], dim=1)
        return self.up(y)


def _reflect_pad(x: torch.Tensor, bottom: int, right: int) -> torch.Tensor:
    """Reflection-pad bottom/right by any amount (repeats reflections when the
    pad is larger than the image, which ``F.pad`` alone refuses)."""
    while bottom > 0 or right > 0:
        b = min(bottom, x.shape[-2] - 1)
        r = min(right, x.shape[-1] - 1)
        x = F.pad(x, (0, r, 0, b), mode="reflect")
        bottom, right = bottom - b, right - r
    return x


class SkipGenerator(nn.Module):
    """Deep-Image-Prior skip U-Net, 3 -> 4 channels, for any H x W.

    ``forward(x)``: ``(N, 3, H, W)`` in [0,1] -> ``(N, 4, H, W)`` in (0,1):
    RGB colour (straight) then alpha.
    """

    def __init__(self, config: GeneratorConfig | None = None):
        super().__init__()
        self.config = cfg = config or GeneratorConfig()
        if cfg.scales < 1:
            raise ValueError(f"scales must be >= 1, got {cfg.scales}")
        level: nn.Module | None = None
        for i in reversed(range(cfg.scales)):  # build from the deepest level out
            c_in = cfg.in_channels if i == 0 else cfg.channels_down
            level = _Level(c_in, cfg, level)
        self.body = level
        self.head = nn.Conv2d(cfg.channels_up, cfg.out_channels, 1)
        self.register_buffer("color_matrix", COLOR_DECORRELATION.clone(), persistent=False)

    @property
    def multiple(self) -> int:
        return 2 ** self.config.scales

    def padded_size(self, h: int, w: int) -> tuple[int, int]:
        """Size the input is reflection-padded to: a multiple of 2**scales, >= 2**(scales+1)."""
        m = self.multiple

        def up(n: int) -> int:
            return max(-(-n // m) * m, 2 * m)
        return up(h), up(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = self.padded_size(h, w)
        y = self.head(self.body(_reflect_pad(x, ph - h, pw - w)))[..., :h, :w]
        # Decorrelated colour -> RGB, a fixed linear map over the channel axis.
        rgb = torch.einsum("ij,njhw->nihw", self.color_matrix.to(y.dtype), y[:, :3])
        return torch.sigmoid(torch.cat([rgb, y[:, 3:]], dim=1))


def split_rgba(rgba: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, 4, H, W)`` -> colour ``(N, 3, H, W)``, alpha ``(N, 1, H, W)``."""
    return rgba[:, :3], rgba[:, 3:4]


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --------------------------------------------------------------------------- inference

def _feather(size: int, overlap: int, at_start: bool, at_end: bool) -> torch.Tensor:
    """1-D blending weights of a tile: linear ramps over the overlap, except at image borders."""
    w = torch.ones(size)
    if overlap > 0:
        ramp = (torch.arange(overlap, dtype=torch.float32) + 0.5) / overlap
        if not at_start:
            w[:overlap] = ramp
        if not at_end:
            w[-overlap:] = torch.minimum(w[-overlap:], ramp.flip(0))
    return w


def _tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


@torch.no_grad()
def apply_generator(generator: SkipGenerator, images: torch.Tensor, tile: int | None = None,
                    overlap: int | None = None, progress=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a trained generator at full resolution, in eval mode (BN uses its stored statistics).

    ``images`` ``(N, 3, H, W)`` in [0,1] -> colour ``(N, 3, H, W)``, alpha ``(N, 1, H, W)``.
    ``tile``: when set, run on ``tile`` x ``tile`` windows overlapping by
    ``overlap`` pixels (default tile // 4) and blend them with feathered
    weights, for images that do not fit in memory at once. Images are run one
    at a time so memory does not grow with N. ``progress`` (an
    ``engine.progress.Progress``) gets an update per image: the Cancel point.
    """
    from ..progress import ensure
    progress = ensure(progress)
    was_training = generator.training
    generator.eval()
    device = next(generator.parameters()).device
    try:
        colours, alphas = [], []
        for img in images:
            rgba = _run_tiled(generator, img[None].to(device), tile, overlap) if tile \
                else generator(img[None].to(device))
            c, a = split_rgba(rgba.float())
            colours.append(c.to(images.device))
            alphas.append(a.to(images.device))
            progress.update(len(colours), images.shape[0])
        return torch.cat(colours), torch.cat(alphas)
    finally:
        generator.train(was_training)


def _run_tiled(generator: SkipGenerator, x: torch.Tensor, tile: int, overlap: int | None) -> torch.Tensor:
    """One image ``(1, 3, H, W)`` -> ``(1, 4, H, W)``, tile by tile with feathered blending."""
    from ..progress import check as check_stop
    h, w = x.shape[-2:]
    overlap = tile // 4 if overlap is None else overlap
    if tile <= overlap:
        raise ValueError(f"tile ({tile}) must be larger than overlap ({overlap})")
    out = torch.zeros(1, 4, h, w, device=x.device)
    weight = torch.zeros(1, 1, h, w, device=x.device)
    ys, xs = _tile_starts(h, tile, overlap), _tile_starts(w, tile, overlap)
    for y0 in ys:
        th = min(tile, h)
        wy = _feather(th, overlap, y0 == 0, y0 + th >= h).to(x.device)
        for x0 in xs:
            check_stop("tiled inference")  # one 4K image is many tiles
            tw = min(tile, w)
            wx = _feather(tw, overlap, x0 == 0, x0 + tw >= w).to(x.device)
            wt = (wy[:, None] * wx[None, :])[None, None]
            pred = generator(x[..., y0:y0 + th, x0:x0 + tw]).float()
            out[..., y0:y0 + th, x0:x0 + tw] += pred * wt
            weight[..., y0:y0 + th, x0:x0 + tw] += wt
    return out / weight


# --------------------------------------------------------------------------- files

def save_generator(generator: SkipGenerator, path: str | Path, metadata: dict | None = None) -> Path:
    """Write weights (incl. BN statistics) + config to one safetensors file, atomically."""
    from safetensors.torch import save_file
    state = {k: v.detach().float().cpu().contiguous() for k, v in generator.state_dict().items()}
    meta = {"kind": GENERATOR_KIND, "version": str(GENERATOR_VERSION),
            "config": generator.config.to_json(),
            "info": json.dumps(metadata or {}, sort_keys=True, default=str)}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return path


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> SkipGenerator:
    """Read a file written by :func:`save_generator`; returns the generator in eval mode."""
    from safetensors import safe_open
    from safetensors.torch import load_file
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such generator file (write one with LL_Text2LIVE's run_dir "
                                "or LL_SaveGenerator)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except Exception as e:
        raise CorruptFileError(f"{path}: not a readable safetensors generator file ({e})") from e
    if meta.get("kind") != GENERATOR_KIND:
        raise CorruptFileError(f"{path}: holds {meta.get('kind')!r}, expected {GENERATOR_KIND!r}")
    gen = SkipGenerator(GeneratorConfig.from_json(meta["config"]))
    try:
        gen.load_state_dict(state)
    except RuntimeError as e:
        raise CorruptFileError(f"{path}: weights do not match the stored config ({e})") from e
    gen.info = json.loads(meta.get("info", "{}"))
    return gen.to(device).eval()
