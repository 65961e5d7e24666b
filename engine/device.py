"""Device and precision choice, in one place."""
from __future__ import annotations

import torch

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` = CUDA if present, else MPS, else CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name not in DEVICES and not name.startswith("cuda:"):
        raise ValueError(f"device {name!r} is not one of {DEVICES} or 'cuda:N'")
    return torch.device(name)


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for mixed precision, or None for plain fp32.

    ``auto`` picks bf16 on GPUs that support it (no loss scaling needed), fp16
    on older CUDA GPUs, and fp32 on the CPU (CPU autocast is slower than fp32
    for these small convolutions and breaks bit-exact determinism).
    """
    if precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16":
        return torch.bfloat16
    if precision != "auto":
        raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None
