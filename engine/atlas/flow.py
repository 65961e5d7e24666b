"""Optical flow between neighbouring frames (OpenCV DIS), with NLA's
forward–backward consistency check."""
from __future__ import annotations

import cv2
import numpy as np
import torch


def _grey_u8(frame: torch.Tensor) -> np.ndarray:
    """(3, H, W) [0,1] → (H, W) uint8 grey."""
    rgb = (frame.permute(1, 2, 0).clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def dis_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense flow a → b, (H, W, 2) in pixels (x, y)."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(a, b, None)


def _consistent(fwd: np.ndarray, bwd: np.ndarray, threshold: float) -> np.ndarray:
    """Pixels whose forward flow, followed by the backward flow at its end,
    returns within ``threshold`` pixels (and lands inside the frame)."""
    h, w = fwd.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    tx, ty = xs + fwd[..., 0], ys + fwd[..., 1]
    back = cv2.remap(bwd, tx, ty, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    err = np.hypot(fwd[..., 0] + back[..., 0], fwd[..., 1] + back[..., 1])
    inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    return (err < threshold) & inside


def clip_flows(frames: torch.Tensor, threshold: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Flow of every frame to its next (+1) and previous (−1) frame.

    frames ``(N, 3, H, W)`` → ``flow (N, 2, H, W, 2)`` [direction 0 = to t+1,
    1 = to t−1; last dim (dx, dy) pixels] and ``valid (N, 2, H, W)`` bool
    (forward–backward error < ``threshold`` px; never valid off the clip's ends).
    """
    n, _, h, w = frames.shape
    grey = [_grey_u8(f) for f in frames]
    flow = np.zeros((n, 2, h, w, 2), np.float32)
    valid = np.zeros((n, 2, h, w), bool)
    for t in range(n - 1):
        fwd = dis_flow(grey[t], grey[t + 1])
        bwd = dis_flow(grey[t + 1], grey[t])
        flow[t, 0], valid[t, 0] = fwd, _consistent(fwd, bwd, threshold)
        flow[t + 1, 1], valid[t + 1, 1] = bwd, _consistent(bwd, fwd, threshold)
    return torch.from_numpy(flow), torch.from_numpy(valid)
