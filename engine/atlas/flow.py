"""Optical flow between neighbouring frames, with NLA's forward–backward
consistency check.

Methods: OpenCV's DIS (default) or Farneback, or torchvision's RAFT when its
weights are on this machine (``raft_weights``: a safetensors file or a
``weights_only`` torch file of ``raft_large``/``raft_small``; nothing is
downloaded).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from ..errors import CorruptFileError, InputError, ModelNotFoundError
from .. import progress

FLOW_METHODS = ("dis", "farneback", "raft")


def _grey_u8(frame: torch.Tensor) -> np.ndarray:
    """(3, H, W) [0,1] → (H, W) uint8 grey."""
    rgb = (frame.permute(1, 2, 0).clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def dis_flow(a: np.ndarray, b: np.ndarray, finest_scale: int = 1) -> np.ndarray:
    """Dense flow a → b, (H, W, 2) in pixels (x, y). ``finest_scale`` 1 is the
    MEDIUM preset's (flow found at half resolution and upsampled); 0 refines
    it at full resolution. On small frames half resolution loses sub-pixel
    motion: on a 64 px toy clip the preset found 1.30 of a true 1.5 px/frame
    object motion (a painted atlas mark then lags its object), full
    resolution 1.48."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    dis.setFinestScale(int(finest_scale))
    return dis.calc(a, b, None)


def farneback_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense Farneback flow a → b, (H, W, 2) in pixels (x, y)."""
    return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 4, 15, 5, 5, 1.1, 0)


@lru_cache(maxsize=2)
def load_raft(weights: str) -> torch.nn.Module:
    """torchvision RAFT (large or small, told apart by the weights) from a local file."""
    from torchvision.models.optical_flow import raft_large, raft_small

    path = Path(weights)
    if not path.is_file():
        raise ModelNotFoundError(
            f"RAFT weights {path} not found: save torchvision's Raft_Large_Weights (or small) "
            "state dict there, as .safetensors or a torch file; nothing is downloaded")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for build in (raft_large, raft_small):  # whichever the weights fit
        model = build(weights=None, progress=False)
        try:
            model.load_state_dict(state)
        except RuntimeError:
            continue
        return model.eval()
    raise CorruptFileError(f"{path}: not the weights of torchvision's raft_large or raft_small")


def raft_flow(model: torch.nn.Module, a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """RAFT flow a → b for (3, H, W) [0,1] frames, (H, W, 2) in pixels. The
    frames are padded (replicate) to multiples of 8, as RAFT needs, and cropped back."""
    h, w = a.shape[-2:]
    if min(h, w) < 128:  # RAFT's correlation pyramid needs 1/8-resolution maps >= 16
        raise InputError("LL_AtlasDecompose", "flow", f"is raft on {w}x{h} frames",
                         "raft on frames of at least 128x128, or dis/farneback")
    ph, pw = (-h) % 8, (-w) % 8
    pair = torch.stack([a, b]) * 2 - 1
    pair = torch.nn.functional.pad(pair, (0, pw, 0, ph), mode="replicate")
    with torch.no_grad():
        flow = model(pair[:1], pair[1:], num_flow_updates=12)[-1][0]
    return flow[:, :h, :w].permute(1, 2, 0).cpu().numpy().astype(np.float32)


def dis_finest_scale(height: int, width: int, min_side: int) -> int:
    """DIS's finest pyramid level for a frame size: 0 (full resolution) when the
    shorter side is below ``min_side``, else the preset's 1 (half resolution,
    then upsampled)."""
    return 0 if min(height, width) < min_side else 1


def flow_function(method: str = "dis", raft_weights: str | None = None,
                  node: str = "LL_AtlasDecompose",
                  dis_finest_scale: int = 1) -> Callable[[torch.Tensor, torch.Tensor], np.ndarray]:
    """A flow estimator ``(frame_a, frame_b) -> (H, W, 2)`` for ``method``
    (``dis_finest_scale``: see ``dis_flow``)."""
    if method == "dis":
        return lambda a, b: dis_flow(_grey_u8(a), _grey_u8(b), dis_finest_scale)
    if method == "farneback":
        return lambda a, b: farneback_flow(_grey_u8(a), _grey_u8(b))
    if method == "raft":
        if not raft_weights:
            raise InputError(node, "raft_weights", "is empty",
                             "the path of local RAFT weights when flow = raft")
        model = load_raft(str(raft_weights))
        return lambda a, b: raft_flow(model, a, b)
    raise InputError(node, "flow", f"is {method!r}", " | ".join(FLOW_METHODS))


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


def clip_flows(frames: torch.Tensor, threshold: float = 1.0, method: str = "dis",
               raft_weights: str | None = None, min_side: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Flow of every frame to its next (+1) and previous (−1) frame.

    frames ``(N, 3, H, W)`` → ``flow (N, 2, H, W, 2)`` [direction 0 = to t+1,
    1 = to t−1; last dim (dx, dy) pixels] and ``valid (N, 2, H, W)`` bool
    (forward–backward error < ``threshold`` px; never valid off the clip's ends).
    ``min_side``: DIS refines to full resolution on frames whose shorter side
    is below this (0 = never; see ``dis_flow``).
    """
    n, _, h, w = frames.shape
    estimate = flow_function(method, raft_weights, dis_finest_scale=dis_finest_scale(h, w, min_side))
    frames = frames.detach().float().cpu()
    flow = np.zeros((n, 2, h, w, 2), np.float32)
    valid = np.zeros((n, 2, h, w), bool)
    for t in range(n - 1):
        progress.check("optical flow")
        fwd = estimate(frames[t], frames[t + 1])
        bwd = estimate(frames[t + 1], frames[t])
        flow[t, 0], valid[t, 0] = fwd, _consistent(fwd, bwd, threshold)
        flow[t + 1, 1], valid[t + 1, 1] = bwd, _consistent(bwd, fwd, threshold)
    return torch.from_numpy(flow), torch.from_numpy(valid)
