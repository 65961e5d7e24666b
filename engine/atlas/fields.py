"""The five neural fields of a layered-atlas decomposition.

* foreground / background mapping  (x, y, t) → (u, v) in (-1, 1)
* opacity                          (x, y, t) → α in (0, 1)
* foreground / background atlas    (u, v)    → rgb in (0, 1)

Each field is an encoding (``"hash"``: multi-resolution hash grid + a small
MLP, Hashing-NVD style; ``"positional"``: NLA's original positional-encoding
MLPs) followed by an output activation.

Mappings start as ``uv = 0.8 · xy`` exactly (NLA pre-trains its mappings to
that for a few thousand iterations; we build it in: the MLP's last layer is
zero and its output is added to ``atanh(0.8 · xy)`` before the ``tanh``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .encoding import HashGrid, PositionalEncoding

ENCODINGS = ("hash", "positional")
UV_SCALE = 0.8  # NLA's mapping scale: uv ≈ 0.8·xy leaves room around the frame in the atlas


@dataclass
class AtlasSettings:
    """Everything that defines a decomposition run (stored in the atlas file).

    Loss weights are NLA's divided by 1000 (Hashing-NVD) and then tuned on the
    toy clips; docs/atlas.md lists both.
    """
    encoding: str = "hash"
    steps: int = 1500
    batch: int = 2048                 # random pixels per iteration
    lr_grid: float = 1e-2             # hash tables (Hashing-NVD)
    lr_mlp: float = 1e-3              # MLPs in hash mode
    lr_positional: float = 5e-4       # all weights in positional mode (NLA: 1e-4)
    lr_final_ratio: float = 0.1       # cosine decay to lr · ratio at the last step
    # hash grids: atlas (2-D) and mapping/opacity (3-D)
    levels: int = 12
    features: int = 2
    log2_table: int = 14
    base: int = 8
    scale: float = 1.4
    map_levels: int = 6               # mappings: coarser grids keep them smooth
    map_base: int = 4
    map_scale: float = 1.5
    hidden: int = 64                  # MLP width in hash mode
    # loss weights (NLA value / 1000 in comments)
    w_rgb: float = 5.0                # NLA 5000
    w_grad: float = 1.0               # NLA 1000
    w_sparsity: float = 1.0           # NLA 1000
    w_bootstrap: float = 2.0          # NLA 2000, until step ``bootstrap_until``
    bootstrap_until: float = 0.6      # fraction of the steps; linearly annealed to 0
    # text bootstrap (no masks, object_text): soft, confidence-weighted BCE against
    # the per-frame relevancy sharpened between text_low and text_high (bootstrap.py)
    w_text_bootstrap: float = 2.0
    text_bootstrap_until: float = 0.6 # fraction of the steps; linearly annealed to 0
    text_refine: float = 1.0          # guided-filter radius in CLIP patches (0 = off)
    text_refine_eps: float = 0.01     # guided-filter regularisation (larger = smoother)
    text_low: float = 0.1             # refined relevancy below: background (target 0)
    text_high: float = 0.2            # refined relevancy above: object (target 1)
    w_flow: float = 0.05              # NLA 5 (×10: few iterations here)
    w_alpha_flow: float = 0.05        # NLA 49
    w_rigidity: float = 0.001         # NLA 1
    w_global_rigidity_fg: float = 0.005   # NLA 5
    w_global_rigidity_bg: float = 0.05    # NLA 50
    global_rigidity_until: float = 0.3    # fraction of the steps (NLA: 5000 of 400k)
    flow_fb_threshold: float = 1.0    # forward–backward flow error in pixels
    flow_method: str = "dis"          # dis | farneback | raft (engine/atlas/flow.py)
    flow_min_side: int = 256          # dis: full-resolution refinement below this shorter side
    raft_weights: str = ""            # local RAFT weights when flow_method = raft
    checkpoint_every: int = 250

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "AtlasSettings":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def validate(self, node: str = "LL_AtlasDecompose") -> None:
        from ..errors import InputError
        if self.encoding not in ENCODINGS:
            raise InputError(node, "encoding", f"is {self.encoding!r}", " or ".join(ENCODINGS))
        if self.steps < 1:
            raise InputError(node, "steps", f"is {self.steps}", "an integer >= 1")
        if not 0 <= self.flow_min_side <= 4096:
            raise InputError(node, "flow_min_side", f"is {self.flow_min_side}", "0 (off) to 4096 pixels")
        if self.batch < 16:
            raise InputError(node, "batch", f"is {self.batch}", "an integer >= 16")
        if not 0 <= self.text_low < self.text_high <= 1:
            raise InputError(node, "text_low", f"is {self.text_low} with text_high {self.text_high}",
                             "0 <= text_low < text_high <= 1")
        if not 0 <= self.text_refine <= 16 or not self.text_refine_eps > 0:
            raise InputError(node, "text_refine", f"is {self.text_refine} (eps {self.text_refine_eps})",
                             "0 to 16 patches, with text_refine_eps > 0")
        from .flow import FLOW_METHODS
        if self.flow_method not in FLOW_METHODS:
            raise InputError(node, "flow", f"is {self.flow_method!r}", " | ".join(FLOW_METHODS))
        if self.flow_method == "raft" and not self.raft_weights:
            raise InputError(node, "raft_weights", "is empty", "local RAFT weights when flow = raft")


def mlp(n_in: int, width: int, depth: int, n_out: int, skips: tuple[int, ...] = ()) -> "SkipMLP":
    return SkipMLP(n_in, width, depth, n_out, skips)


class SkipMLP(nn.Module):
    """ReLU MLP with ``depth`` hidden layers; the input is concatenated back in
    before the layers listed in ``skips`` (NLA: 4 and 7). ``(B, n_in)`` → ``(B, n_out)``."""

    def __init__(self, n_in: int, width: int, depth: int, n_out: int, skips: tuple[int, ...] = ()):
        super().__init__()
        self.skips = set(skips)
        layers = []
        for i in range(depth):
            fan_in = n_in if i == 0 else width + (n_in if i in self.skips else 0)
            layers.append(nn.Linear(fan_in, width))
        self.hidden = nn.ModuleList(layers)
        self.out = nn.Linear(width, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for i, layer in enumerate(self.hidden):
            if i in self.skips:
                h = torch.cat([h, x], 1)
            h = layer(h).relu_()  # in place: one big allocation less per layer
        return self.out(h)


class Field(nn.Module):
    """encoding + MLP: ``(B, n_in)`` in [-1,1] → raw ``(B, n_out)`` (no activation)."""

    def __init__(self, encoding: nn.Module, net: nn.Module):
        super().__init__()
        self.encoding, self.net = encoding, net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.encoding(x))


def _hash_field(s: AtlasSettings, dim: int, n_out: int, mapping: bool) -> Field:
    if mapping:
        grid = HashGrid(dim, s.map_levels, s.features, s.log2_table, s.map_base, s.map_scale)
    else:
        grid = HashGrid(dim, s.levels, s.features, s.log2_table, s.base, s.scale)
    return Field(grid, mlp(grid.out_dim, s.hidden, 2, n_out))


def _positional_field(dim: int, n_freqs: int, depth: int, n_out: int) -> Field:
    enc = PositionalEncoding(dim, n_freqs)
    skips = tuple(k for k in (4, 7) if k < depth)
    return Field(enc, mlp(enc.out_dim, 256, depth, n_out, skips))


class AtlasFields(nn.Module):
    """All five fields. Coordinates: x, y normalised by the larger frame side
    (square pixels; the longer axis spans [-1, 1]), t over the clip to [-1, 1]."""

    def __init__(self, settings: AtlasSettings):
        super().__init__()
        s = settings
        if s.encoding == "hash":
            self.map_fg = _hash_field(s, 3, 2, mapping=True)
            self.map_bg = _hash_field(s, 3, 2, mapping=True)
            self.alpha_net = _hash_field(s, 3, 1, mapping=False)
            self.atlas_fg = _hash_field(s, 2, 3, mapping=False)
            self.atlas_bg = _hash_field(s, 2, 3, mapping=False)
        else:  # NLA: fg mapping 6×256, bg 4×256 (no encoding); alpha 8×256 L=5; atlas 8×256 L=10
            self.map_fg = _positional_field(3, 0, 6, 2)
            self.map_bg = _positional_field(3, 0, 4, 2)
            self.alpha_net = _positional_field(3, 5, 8, 1)
            self.atlas_fg = _positional_field(2, 10, 8, 3)
            self.atlas_bg = _positional_field(2, 10, 8, 3)
        for m in (self.map_fg, self.map_bg):  # identity-like start: uv = 0.8·xy
            nn.init.zeros_(m.net.out.weight)
            nn.init.zeros_(m.net.out.bias)

    def grid_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if n.endswith("encoding.table")]

    def mlp_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.endswith("encoding.table")]

    @staticmethod
    def _uv(field: Field, xyt: torch.Tensor) -> torch.Tensor:
        start = torch.atanh(UV_SCALE * xyt[:, :2])
        return torch.tanh(start + field(xyt))

    def uv_fg(self, xyt: torch.Tensor) -> torch.Tensor:
        """``(B, 3)`` xyt → ``(B, 2)`` foreground atlas coordinates."""
        return self._uv(self.map_fg, xyt)

    def uv_bg(self, xyt: torch.Tensor) -> torch.Tensor:
        return self._uv(self.map_bg, xyt)

    def alpha(self, xyt: torch.Tensor) -> torch.Tensor:
        """``(B, 3)`` → ``(B, 1)`` opacity, kept inside (1e-4, 1 − 1e-4) for the BCE."""
        return torch.sigmoid(self.alpha_net(xyt)).clamp(1e-4, 1 - 1e-4)

    def rgb_fg(self, uv: torch.Tensor) -> torch.Tensor:
        """``(B, 2)`` uv → ``(B, 3)`` colour in (0, 1)."""
        return torch.sigmoid(self.atlas_fg(uv))

    def rgb_bg(self, uv: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.atlas_bg(uv))

    def forward(self, xyt: torch.Tensor) -> dict[str, torch.Tensor]:
        """Everything at once for ``(B, 3)`` points."""
        uv_f, uv_b, a = self.uv_fg(xyt), self.uv_bg(xyt), self.alpha(xyt)
        c_f, c_b = self.rgb_fg(uv_f), self.rgb_bg(uv_b)
        return {"uv_fg": uv_f, "uv_bg": uv_b, "alpha": a, "rgb_fg": c_f, "rgb_bg": c_b,
                "rgb": a * c_f + (1 - a) * c_b}
