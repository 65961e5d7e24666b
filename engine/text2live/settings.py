"""Every number of a Text2LIVE image run, with the paper's / official defaults."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

from .augment import CropSettings, ViewSettings
from .generator import GeneratorConfig

# The 14 text templates of the official code (REFERENCE.md).
TEMPLATES = (
    "photo of {}.", "high quality photo of {}.", "a photo of {}.", "the photo of {}.",
    "image of {}.", "an image of {}.", "high quality image of {}.",
    "a high quality image of {}.", "the {}.", "a {}.", "{}.", "{}", "{}!", "{}...",
)
# The green-screen texts; "{}" is the edit prompt T.
SCREEN_TEMPLATES = ("{} over a green screen.", "{} in front of a green screen.")

RELEVANCY_BLOCKS = ("last", "all")
DISTANCES = ("spherical", "cosine")


@dataclass(frozen=True)
class Text2LIVESettings:
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
            ("bootstrap_steps", self.bootstrap_steps >= 0, ">= 0"),
            ("templates_per_step", 0 <= self.templates_per_step, ">= 0"),
            ("distance", self.distance in DISTANCES, " | ".join(DISTANCES)),
            ("relevancy_blocks", self.relevancy_blocks in RELEVANCY_BLOCKS, " | ".join(RELEVANCY_BLOCKS)),
            ("lr", self.lr > 0, "> 0"),
            ("checkpoint_every", self.checkpoint_every >= 1, ">= 1"),
        ]
        for name in ("lambda_comp", "lambda_screen", "lambda_structure", "lambda_sparsity",
                     "lambda_l1", "lambda_l0", "bootstrap_weight"):
            checks.append((name, getattr(self, name) >= 0, ">= 0"))
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"Text2LIVESettings.{name} = {getattr(self, name)!r}; allowed: {allowed}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]
