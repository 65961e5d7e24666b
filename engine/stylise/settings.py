"""Every number of a stylisation run, with the paper's defaults where the
paper gives one (Loeschcke, Belongie, Benaim 2022) and ours otherwise
(docs/stylise.md says which is which)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

# The paper's neutral prefixes, sampled per step for both texts. A count of
# 4 uses the first four, 0 uses the bare text.
PREFIXES = ("a photo of a {}", "a {}", "an image of a {}", "the {}", "image of a {}",
            "image of the {}", "photo of a {}", "photo of the {}")
PREFIX_COUNTS = (0, 4, 8)
TERMS = ("global", "local", "temporal", "sparsity")


_ARTICLES = ("a", "an", "the")


def apply_prefix(prefix: str, text: str) -> str:
    """``prefix`` (holding ``{}``) around ``text``, without a doubled article:
    ``("a photo of a {}", "a blue circle")`` -> ``"a photo of a blue circle"``
    (the text's own article wins over the prefix's)."""
    head, _, tail = prefix.partition("{}")
    words = text.split()
    if words and words[0].lower() in _ARTICLES:
        before = head.rstrip().split(" ")
        if before and before[-1].lower() in _ARTICLES:
            head = " ".join(before[:-1])
            head = head + " " if head else ""
    return f"{head}{text}{tail}"


@dataclass(frozen=True)
class StyliseSettings:
    """Settings of ``stylise_atlas``. ``use_*`` switch each loss term off
    without touching its weight (ablations from the node)."""
    steps: int = 2000                      # paper
    lr: float = 1e-4                       # paper (Adam); a hash-grid field may want more
    mlp_lr_ratio: float = 0.1              # ours: hash atlases' MLP at lr × this (the decomposition's split)
    lr_decay: float = 0.9                  # paper: lr × 0.9 ...
    lr_every: int = 200                    # ... every 200 iterations
    batch_frames: int = 3                  # paper: 3 frames per step (t1 < t2 < t3)
    n_global: int = 2                      # ours (not in our notes of the paper)
    n_local: int = 6                       # ours
    global_scale: tuple[float, float] = (0.9, 1.0)   # paper: area fraction of the object crop
    local_scale: tuple[float, float] = (0.1, 0.5)    # paper
    aspect: tuple[float, float] = (0.8, 1.2)         # paper (width / height of a view)
    min_object: float = 1 / 3              # paper: a local view is at least 1/3 object
    local_tries: int = 16                  # ours: candidate crops per local view
    perspective_p: float = 0.5             # paper
    distortion: tuple[float, float] = (0.1, 0.5)     # paper: U(.1, .5)
    bg_removal_p: float = 0.5              # paper: background -> black
    prefixes: int = 8                      # paper: all 8 prefixes
    lambda_global: float = 1.0             # paper
    lambda_local: float = 1.0              # paper
    lambda_temporal: float = 1.0           # ours
    lambda_sparsity: float = 1.0           # ours (squared norm, see losses.sparsity_loss)
    use_global: bool = True
    use_local: bool = True
    use_temporal: bool = True
    use_sparsity: bool = True
    sigma: float = 5.0                     # paper: Gaussian of t3 − t1, in frames
    box_threshold: float = 0.5             # ours: the object is where the opacity >= this
    margin: float = 0.1                    # ours: box grown by this fraction of its longer side
    alpha_cutoff: float = 0.02             # ours: layer alpha below this is exactly 0
    checkpoint_every: int = 200

    def weight(self, term: str) -> float:
        """The weight of ``term`` as used (0 when it is switched off)."""
        return getattr(self, f"lambda_{term}") if getattr(self, f"use_{term}") else 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "StyliseSettings":
        known = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()
                 if k in cls.__dataclass_fields__}
        return cls(**known)

    def validate(self, node: str = "LL_StyliseVideoObject") -> None:
        """Raise ``InputError`` naming the node input of the first bad value."""
        from ..errors import InputError
        ints = [("steps", 1), ("lr_every", 1), ("batch_frames", 1), ("n_global", 0),
                ("n_local", 0), ("local_tries", 1), ("checkpoint_every", 1)]
        for name, low in ints:
            if int(getattr(self, name)) < low:
                raise InputError(node, name, f"is {getattr(self, name)}", f"an integer >= {low}")
        if self.prefixes not in PREFIX_COUNTS:
            raise InputError(node, "prefixes", f"is {self.prefixes}", "0, 4 or 8")
        if not self.lr > 0:
            raise InputError(node, "lr", f"is {self.lr}", "> 0")
        if not 0 < self.mlp_lr_ratio <= 1:
            raise InputError(node, "mlp_lr_ratio", f"is {self.mlp_lr_ratio}", "in (0, 1]")
        if not 0 < self.lr_decay <= 1:
            raise InputError(node, "lr_decay", f"is {self.lr_decay}", "in (0, 1]")
        for term in TERMS:
            if getattr(self, f"lambda_{term}") < 0:
                raise InputError(node, f"lambda_{term}", f"is {getattr(self, f'lambda_{term}')}", ">= 0")
        for name in ("global_scale", "local_scale", "aspect", "distortion"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi or (name != "aspect" and hi > 1):
                raise InputError(node, name, f"is {(lo, hi)}", "0 < low <= high (<= 1 for scales)")
        for name in ("min_object", "perspective_p", "bg_removal_p", "box_threshold"):
            if not 0 <= getattr(self, name) <= 1:
                raise InputError(node, name, f"is {getattr(self, name)}", "in [0, 1]")
        if not 0 <= self.alpha_cutoff < 1:
            raise InputError(node, "alpha_cutoff", f"is {self.alpha_cutoff}", "in [0, 1)")
        if self.margin < 0:
            raise InputError(node, "margin", f"is {self.margin}", ">= 0")
        if self.sigma <= 0:
            raise InputError(node, "sigma", f"is {self.sigma}", "> 0")
        if self.use_global + self.use_local == 0 or (self.weight("global") + self.weight("local")) == 0:
            raise InputError(node, "use_global", "and 'use_local' leave no CLIP text term on",
                             "at least one of the global / local terms on with a weight > 0")
        if self.weight("global") > 0 and self.n_global == 0:
            raise InputError(node, "n_global", "is 0 while the global term is on", ">= 1")
        if self.weight("local") > 0 and self.n_local == 0:
            raise InputError(node, "n_local", "is 0 while the local term is on", ">= 1")
        if self.weight("temporal") > 0 and self.n_global + self.n_local == 0:
            raise InputError(node, "n_global", "and 'n_local' are 0", "views for the temporal term")
