"""Every number of a Text2LIVE run (image: ``Text2LIVESettings``, video:
``VideoSettings``), with the paper's / official defaults."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

from .augment import CropSettings, ViewSettings
from .generator import GeneratorConfig

# The 14 text templates of the official code.
TEMPLATES = (
    "photo of {}.", "high quality photo of {}.", "a photo of {}.", "the photo of {}.",
    "image of {}.", "an image of {}.", "high quality image of {}.",
    "a high quality image of {}.", "the {}.", "a {}.", "{}.", "{}", "{}!", "{}...",
)
# The green-screen texts; "{}" is the edit prompt T.
SCREEN_TEMPLATES = ("{} over a green screen.", "{} in front of a green screen.")

RELEVANCY_BLOCKS = ("last", "all")
DISTANCES = ("spherical", "cosine")


class _SettingsJSON:
    """What every settings dataclass offers: its JSON (for fingerprints) and field names."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def _objective_checks(s) -> list[tuple[str, bool, str]]:
    """The checks of the fields the image and video objectives share."""
    checks = [
        ("bootstrap_steps", s.bootstrap_steps >= 0, ">= 0"),
        ("templates_per_step", 0 <= s.templates_per_step, ">= 0"),
        ("distance", s.distance in DISTANCES, " | ".join(DISTANCES)),
        ("relevancy_blocks", s.relevancy_blocks in RELEVANCY_BLOCKS, " | ".join(RELEVANCY_BLOCKS)),
        ("lr", s.lr > 0, "> 0"),
        ("checkpoint_every", s.checkpoint_every >= 1, ">= 1"),
    ]
    for name in ("lambda_comp", "lambda_screen", "lambda_structure", "lambda_sparsity",
                 "lambda_l1", "lambda_l0", "bootstrap_weight"):
        checks.append((name, getattr(s, name) >= 0, ">= 0"))
    return checks


def _raise_first_bad(s, checks: list[tuple[str, bool, str]]) -> None:
    """ValueError naming the first failing field of ``s``, its value and what is allowed."""
    for name, ok, allowed in checks + _objective_checks(s):
        if not ok:
            raise ValueError(f"{type(s).__name__}.{name} = {getattr(s, name)!r}; allowed: {allowed}")


@dataclass(frozen=True)
class Text2LIVESettings(_SettingsJSON):
    """Settings of ``train_text2live``. Defaults = the Text2LIVE image configuration."""
    steps: int = 1000
    resolution: int = 512            # training image short side (0 = keep the input size)
    # loss weights
    lambda_comp: float = 1.0         # L_clip(I_o, T) + L_dir
    lambda_screen: float = 1.0       # L_clip(I_screen, "{T} over a green screen.")
    lambda_structure: float = 2.0    # token self-similarity MSE
    lambda_sparsity: float = 6.0     # λ_r: scales the alpha regulariser
    lambda_l1: float = 0.01
    lambda_l0: float = 0.01
    bootstrap_weight: float = 10.0   # initial weight of MSE(α, relevancy/mask)
    bootstrap_steps: int = 1000      # annealed linearly to 0 over these steps
    direction: bool = True           # include L_dir in L_comp
    distance: str = "spherical"      # CLIP distance: spherical (official) | cosine
    templates_per_step: int = 0      # 0 = a random number 1..14 drawn with replacement (official)
    relevancy_blocks: str = "last"   # "last" | "all" (rollout over all blocks; needed on tiny ViTs)
    # CLIP views
    views: int = 16
    view_aug: ViewSettings = field(default_factory=ViewSettings)
    # internal dataset
    crop_aug: CropSettings = field(default_factory=CropSettings)
    whole_every: int = 75            # the whole unaugmented image every N steps
    # optimiser: MADGRAD, lr ← max(min_lr, lr_decay·lr) every step
    lr: float = 2.5e-3
    momentum: float = 0.9
    weight_decay: float = 0.01
    lr_decay: float = 0.99
    min_lr: float = 1e-5
    # generator
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    # running
    checkpoint_every: int = 100
    device: str = "auto"
    precision: str = "auto"          # autocast on CUDA (bf16/fp16), fp32 on CPU

    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""
        checks = [
            ("steps", self.steps >= 1, ">= 1"),
            ("resolution", self.resolution == 0 or self.resolution >= 32, "0 or >= 32"),
            ("views", self.views >= 1, ">= 1"),
            ("whole_every", self.whole_every >= 1, ">= 1"),
        ]
        _raise_first_bad(self, checks)


VIDEO_LAYERS = ("fg", "bg")


@dataclass(frozen=True)
class VideoSettings(_SettingsJSON):
    """Settings of ``train_text2live_video``. Defaults = the Text2LIVE video
    configuration (768×432 frames); the objective's fields mean what they mean
    in ``Text2LIVESettings`` (only the defaults differ)."""
    steps: int = 3000
    layer: str = "fg"                # the atlas layer to edit: fg (the object) | bg (the scene)
    # loss weights (video: stronger structure, far weaker sparsity than for images)
    lambda_comp: float = 1.0
    lambda_screen: float = 1.0
    lambda_structure: float = 3.0
    lambda_sparsity: float = 0.1
    lambda_l1: float = 0.01
    lambda_l0: float = 0.005
    bootstrap_weight: float = 10.0
    bootstrap_steps: int = 1000
    direction: bool = True
    distance: str = "spherical"
    templates_per_step: int = 0
    relevancy_blocks: str = "last"
    # CLIP views, per frame of a space-time crop
    views: int = 6
    view_aug: ViewSettings = field(default_factory=ViewSettings)
    # space-time crops
    frame_offset: int = 2            # a step sees frames t - offset, t, t + offset (clamped to the clip)
    box_threshold: float = 0.95      # fg box: pixels with NLA opacity >= this ...
    box_margin: int = 30             # ... grown by this many frame pixels ...
    box_min_size: int = 129          # ... to at least this many pixels a side (frame pixels)
    bg_crop: tuple[float, float] = (0.95, 1.0)  # bg: one random crop of this side fraction, all frames
    opacity_threshold: float = 0.05  # frame pixels whose layer opacity is below this do not size the atlas crop
    whole_every: int = 75            # the whole atlas (and whole frames) every N steps
    # the official code's 4th example: the generator also edits one raw frame crop of the
    # layer per step, judged by the same losses (ties the atlas edit to what frames look like)
    frame_example: bool = True
    atlas_resolution: int = 0        # longer side of the atlas image; 0 = 2 atlas pixels per frame pixel
    fg_atlas_margin: float = 0.25    # black margin around the fg atlas image the generator sees (× its side)
    # optimiser: MADGRAD, lr ← max(min_lr, lr_decay·lr) every step
    lr: float = 2.5e-3
    momentum: float = 0.9
    weight_decay: float = 0.01
    lr_decay: float = 0.999
    min_lr: float = 1e-5
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    # running
    checkpoint_every: int = 100
    device: str = "auto"
    precision: str = "auto"

    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""
        lo, hi = self.bg_crop
        checks = [
            ("steps", self.steps >= 1, ">= 1"),
            ("layer", self.layer in VIDEO_LAYERS, " | ".join(VIDEO_LAYERS)),
            ("views", self.views >= 1, ">= 1"),
            ("frame_offset", self.frame_offset >= 1, ">= 1"),
            ("box_threshold", 0 < self.box_threshold <= 1, "in (0, 1]"),
            ("box_margin", self.box_margin >= 0, ">= 0"),
            ("box_min_size", self.box_min_size >= 1, ">= 1"),
            ("bg_crop", 0 < lo <= hi <= 1, "0 < low <= high <= 1"),
            ("opacity_threshold", 0 <= self.opacity_threshold < 1, "in [0, 1)"),
            ("whole_every", self.whole_every >= 1, ">= 1"),
            ("fg_atlas_margin", 0 <= self.fg_atlas_margin <= 2, "0..2"),
            ("atlas_resolution", self.atlas_resolution == 0 or 16 <= self.atlas_resolution <= 8192,
             "0 (auto) or 16..8192"),
        ]
        _raise_first_bad(self, checks)
