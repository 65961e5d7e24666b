"""Frame-pixel ↔ field coordinates.

x, y are divided by half the LARGER frame side and centred, so pixels stay
square in field space (rigidity is isotropic) and the longer axis spans
(-1, 1); t runs from -1 (first frame) to 1 (last frame).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ClipGeometry:
    n_frames: int
    height: int
    width: int

    @property
    def half_side(self) -> float:
        return max(self.height, self.width) / 2

    @property
    def unit_per_pixel(self) -> float:
        """Field-space length of one frame pixel."""
        return 1 / self.half_side

    def xyt(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Pixel indices (or continuous pixel positions; centres at integers)
        and frame indices, each ``(B,)`` → ``(B, 3)`` field coordinates."""
        xn = (x + 0.5 - self.width / 2) / self.half_side
        yn = (y + 0.5 - self.height / 2) / self.half_side
        tn = t * (2 / (self.n_frames - 1)) - 1 if self.n_frames > 1 else t * 0.0
        return torch.stack([xn, yn, tn], 1).float()

    def frame_grid(self, t: int, device=None) -> torch.Tensor:
        """All pixels of frame ``t`` in row-major order: ``(H·W, 3)``."""
        ys, xs = torch.meshgrid(torch.arange(self.height, device=device, dtype=torch.float32),
                                torch.arange(self.width, device=device, dtype=torch.float32),
                                indexing="ij")
        x, y = xs.reshape(-1), ys.reshape(-1)
        return self.xyt(x, y, torch.full_like(x, float(t)))
