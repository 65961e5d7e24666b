"""Box proposals around anchors, box masks, and RoI-aligned DINO features."""
from __future__ import annotations

from typing import Sequence

import torch
from torchvision.ops import roi_align

DEFAULT_BOX_SIZES = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)  # fractions of the shorter side (M = 7)


def box_proposals(anchors: torch.Tensor, sizes: Sequence[float], image_hw: tuple[int, int]) -> torch.Tensor:
    """M square boxes centred on each anchor, clipped to the image.

    anchors (K, 2) (x, y) pixels; sizes: M side lengths as fractions of the
    shorter image side -> boxes (K, M, 4) float (x0, y0, x1, y1) in pixels,
    snapped to whole pixels (so the mask is exactly the box) and at least
    one pixel wide. A box that crosses the border is clipped (it is then no
    longer square).
    """
    H, W = image_hw
    side = torch.tensor([float(s) for s in sizes]) * min(H, W)           # (M,)
    half = side.view(1, -1) / 2
    x, y = anchors[:, :1], anchors[:, 1:2]                               # (K, 1)
    x0 = (x - half).round().clamp(0, W - 1)
    y0 = (y - half).round().clamp(0, H - 1)
    x1 = torch.maximum((x + half).round().clamp(1, W), x0 + 1)
    y1 = torch.maximum((y + half).round().clamp(1, H), y0 + 1)
    return torch.stack([x0, y0, x1, y1], dim=-1)


def box_mask(box: torch.Tensor | Sequence[float], image_hw: tuple[int, int]) -> torch.Tensor:
    """A box (x0, y0, x1, y1) in whole pixels -> binary mask (1, 1, H, W)."""
    H, W = image_hw
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    m = torch.zeros(1, 1, H, W)
    m[..., y0:y1, x0:x1] = 1.0
    return m


def roi_features(feature_map: torch.Tensor, boxes: torch.Tensor, image_hw: tuple[int, int],
                 output_size: int = 7) -> torch.Tensor:
    """RoI-align DINO patch features inside each box.

    feature_map (1, C, h, w) covering the whole image; boxes (B, 4) image
    pixels -> (B, C, l, l), l = ``output_size``. Boxes are mapped to feature
    coordinates per axis (the feature grid may have another aspect than
    the image).
    """
    H, W = image_hw
    h, w = feature_map.shape[-2:]
    scale = torch.tensor([w / W, h / H, w / W, h / H], dtype=feature_map.dtype,
                         device=feature_map.device)
    rois = torch.cat([torch.zeros(boxes.shape[0], 1, dtype=feature_map.dtype, device=feature_map.device),
                      boxes.to(feature_map) * scale], dim=1)
    return roi_align(feature_map, rois, output_size=output_size, spatial_scale=1.0,
                     sampling_ratio=2, aligned=True)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / area) if area > 0 else 0.0
