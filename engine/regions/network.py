"""The region networks and a seeded straight-through Gumbel-softmax.

- ``RegionNetwork``: the paper's per-image network (2 conv + 2 linear over
  each box's RoI features -> one logit per box size), trained from scratch
  on one image's edited proposals.
- ``AmortisedRegionNetwork``: the same RoI branch plus the prompt's text
  embedding and the box geometry, trained once across many images and
  prompts (``toyworld/train_regions.py``) to predict which box of
  each anchor gives the lowest exact loss, so that at inference the editor
  runs only on its top-r boxes.
"""
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


GEOMETRY_FEATURES = 4  # see box_geometry
CUE_FEATURES = 3       # see dino_cues


def box_geometry(boxes: torch.Tensor, sizes, image_hw: tuple[int, int]) -> torch.Tensor:
    """What the amortised network knows about each box besides its content.

    boxes (K, M, 4) pixels; sizes: the M nominal sides (fractions of the
    shorter side) -> (K, M, 4): nominal side, width and height (fractions
    of the shorter side) and the area kept after clipping at the border
    (1 = not clipped). Resolution-free, so one network serves every size.
    """
    H, W = image_hw
    short = float(min(H, W))
    side = torch.as_tensor([float(v) for v in sizes], dtype=torch.float32).view(1, -1).expand(
        boxes.shape[0], -1)
    w = (boxes[..., 2] - boxes[..., 0]).float() / short
    h = (boxes[..., 3] - boxes[..., 1]).float() / short
    kept = (w * h / side.pow(2)).clamp(max=1.0)
    return torch.stack([side, w, h, kept], dim=-1)


def _box_sums(integral: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Sums of a map over boxes from its integral image (H+1, W+1); boxes (..., 4) whole pixels."""
    x0, y0, x1, y1 = (boxes[..., i].long() for i in range(4))
    return integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]


def _integral(m: torch.Tensor) -> torch.Tensor:
    return F.pad(m.cumsum(0).cumsum(1), (1, 0, 1, 0))


def dino_cues(feature_map: torch.Tensor, saliency: torch.Tensor, anchors: torch.Tensor,
              boxes: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
    """What DINO says about each box's extent, as numbers the network can compare.

    feature_map (1, C, h, w), saliency (h, w), anchors (K, 2) pixels, boxes
    (K, M, 4) pixels -> (K, M, 3):
    - the share of the anchor's affinity map inside the box (affinity =
      cosine of each patch's DINO feature with the anchor patch's, >= 0: the
      "same object as the anchor" map DINO is known for);
    - the mean affinity on the one-pixel ring just outside the box (high
      when the box cuts through the anchor's object);
    - the share of the CLS attention inside the box.
    Maps are upsampled (bilinear) to the image's pixels.
    """
    H, W = image_hw
    h, w = feature_map.shape[-2:]
    f = F.normalize(feature_map[0].float(), dim=0)                          # (C, h, w)
    col = (anchors[:, 0] * w / W).long().clamp(0, w - 1)
    row = (anchors[:, 1] * h / H).long().clamp(0, h - 1)
    affinity = torch.einsum("chw,kc->khw", f, f[:, row, col].T).clamp(min=0)  # (K, h, w)
    up = lambda m: F.interpolate(m[None], size=(H, W), mode="bilinear", align_corners=False)[0]  # noqa: E731
    aff, sal = up(affinity), up(saliency[None].float())[0]
    out = []
    sal_int = _integral(sal)
    for a in range(boxes.shape[0]):
        integ = _integral(aff[a])
        inside = _box_sums(integ, boxes[a])
        grown = boxes[a].clone()
        grown[:, :2] = (grown[:, :2] - 1).clamp(min=0)
        grown[:, 2] = (grown[:, 2] + 1).clamp(max=W)
        grown[:, 3] = (grown[:, 3] + 1).clamp(max=H)
        area = lambda b: ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).float()  # noqa: E731
        ring = (_box_sums(integ, grown) - inside) / (area(grown) - area(boxes[a])).clamp(min=1)
        out.append(torch.stack([inside / integ[-1, -1].clamp(min=1e-8), ring,
                                _box_sums(sal_int, boxes[a]) / sal_int[-1, -1].clamp(min=1e-8)], dim=-1))
    return torch.stack(out)


def box_inputs(boxes: torch.Tensor, sizes, image_hw: tuple[int, int], feature_map: torch.Tensor,
               saliency: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """The amortised network's per-box numbers: ``box_geometry`` and
    ``dino_cues`` side by side, (K, M, GEOMETRY_FEATURES + CUE_FEATURES)."""
    return torch.cat([box_geometry(boxes, sizes, image_hw),
                      dino_cues(feature_map, saliency, anchors, boxes, image_hw)], dim=-1)


class AmortisedRegionNetwork(nn.Module):
    """Box-size logits per anchor from DINO RoI features, the prompt and the box geometry.

    roi (K, M, C, l, l), text (D,), (1, D) or one per anchor (K, D)
    (L2-normalised CLIP text embedding), geometry (K, M, G) (``box_inputs``:
    box geometry and DINO's extent cues) -> logits (K, M). Each box gets an
    embedding from its RoI features (2 convs + a linear, ReLU), modulated by
    the text (scale and shift) and added to its geometry; the mean embedding
    of the anchor's boxes is appended as context (a box is good relative to
    its neighbours), and an MLP gives the logit.
    """

    def __init__(self, feature_dim: int, text_dim: int, hidden: int = 64, roi_size: int = 7,
                 geometry_dim: int = GEOMETRY_FEATURES + CUE_FEATURES):
        super().__init__()
        self.feature_dim, self.text_dim, self.hidden = feature_dim, text_dim, hidden
        self.roi_size, self.geometry_dim = roi_size, geometry_dim
        self.convs = nn.Sequential(
            nn.Conv2d(feature_dim, hidden // 2, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden // 2, hidden // 4, 3, padding=1), nn.ReLU())
        self.roi_fc = nn.Linear(hidden // 4 * roi_size * roi_size, hidden)
        self.text = nn.Linear(text_dim, 2 * hidden)
        self.geometry = nn.Linear(geometry_dim, hidden)
        self.head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def config(self) -> dict:
        return {"feature_dim": self.feature_dim, "text_dim": self.text_dim, "hidden": self.hidden,
                "roi_size": self.roi_size, "geometry_dim": self.geometry_dim}

    def forward(self, roi: torch.Tensor, text: torch.Tensor, geometry: torch.Tensor) -> torch.Tensor:
        k, m = roi.shape[:2]
        r = self.roi_fc(self.convs(roi.flatten(0, 1)).flatten(1)).view(k, m, -1)
        scale, shift = self.text(text.reshape(-1, self.text_dim)).unsqueeze(1).chunk(2, dim=-1)
        e = F.relu(r * (1 + scale) + shift + self.geometry(geometry))               # (K, M, h)
        context = e.mean(dim=1, keepdim=True).expand(-1, m, -1)
        return self.head(torch.cat([e, context], dim=-1)).squeeze(-1)


class BoundRegionNetwork(nn.Module):
    """An amortised network fixed to one anchor's text and box geometry, so
    that per-image fine-tuning (``train_anchor``) sees roi (m, C, l, l) ->
    logits (m,) like the paper's per-image network."""

    def __init__(self, network: AmortisedRegionNetwork, text: torch.Tensor, geometry: torch.Tensor):
        super().__init__()
        self.network = network
        self.register_buffer("text_embedding", text.detach().reshape(1, -1))
        self.register_buffer("box_geometry", geometry.detach())           # (m, G)

    def forward(self, roi: torch.Tensor) -> torch.Tensor:
        return self.network(roi[None], self.text_embedding, self.box_geometry[None])[0]


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
