"""The region network and a seeded straight-through Gumbel-softmax."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class RegionNetwork(nn.Module):
    """Scores the M box proposals of one anchor: logits over box sizes.

    Each box's RoI features (C, l, l) go through 2 convs + 2 linears (ReLU)
    to one score; a learnable per-size bias is added, so the network can
    learn both "this content looks like a good region" and a size prior.
    Input (M, C, l, l) -> logits (M,).
    """

    def __init__(self, in_channels: int, n_sizes: int, roi_size: int = 7, hidden: int = 64):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, hidden // 2, 3, padding=1), nn.ReLU())
        self.fc = nn.Sequential(
            nn.Linear(hidden // 2 * roi_size * roi_size, hidden), nn.ReLU(),
            nn.Linear(hidden, 1))
        self.size_bias = nn.Parameter(torch.zeros(n_sizes))

    def forward(self, roi: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convs(roi).flatten(1)).squeeze(1) + self.size_bias


def gumbel_softmax_st(logits: torch.Tensor, generator: torch.Generator, tau: float = 1.0
                      ) -> tuple[torch.Tensor, int]:
    """Straight-through Gumbel-softmax sample from our own generator.

    ``torch.nn.functional.gumbel_softmax`` draws from the global RNG; this
    one is reproducible from ``generator`` alone. logits (M,) -> (y (M,),
    index): y is exactly one-hot in the forward pass and carries the
    gradient of softmax((logits + g) / tau) in the backward pass.
    """
    u = torch.rand(logits.shape, generator=generator, device=generator.device)
    u = u.to(logits.device).clamp(1e-10, 1 - 1e-10)
    gumbel = -torch.log(-torch.log(u))
    soft = F.softmax((logits + gumbel) / tau, dim=-1)
    index = int(soft.argmax())
    hard = F.one_hot(torch.tensor(index, device=logits.device), logits.shape[-1]).to(soft)
    return hard - soft.detach() + soft, index
