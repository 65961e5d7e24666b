"""Colour spaces: network space (sRGB-encoded) <-> scene-linear, through
OpenImageIO's colour management (OCIO, OIIO's built-in ACES/studio config).

Network space is what every model sees: sRGB-encoded Rec.709, values in
[0,1] for display-referred images (HDR plates keep values > 1; nothing is
clamped here). EXR files hold scene-linear light, by default ``lin_rec709``.

Colour-space names are OCIO names or aliases from OIIO's built-in config,
e.g. ``"lin_rec709"``, ``"ACEScg"``, ``"lin_rec2020"``, ``"srgb_tx"``.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import OpenImageIO as oiio
import torch

# The OCIO name of network space in OIIO's built-in config ("sRGB Encoded Rec.709").
NETWORK_SPACE = "srgb_tx"

# Scene-linear spaces offered for EXR output (aliases in OIIO's built-in config).
LINEAR_SPACES = ("lin_rec709", "ACEScg", "lin_rec2020", "lin_p3d65", "ACES2065-1")

# Input spaces offered when loading (besides "auto"): the linear ones, the
# display-encoded ones a plate usually comes in, and "raw" (no conversion).
INPUT_SPACES = ("srgb_tx", "lin_rec709", "ACEScg", "lin_rec2020", "lin_p3d65",
                "ACES2065-1", "g22_rec709", "g24_rec709", "srgb_p3d65", "raw")


@lru_cache(maxsize=1)
def _config() -> oiio.ColorConfig:
    return oiio.ColorConfig()


def available_colourspaces() -> list[str]:
    """Every colour-space name OIIO's config knows (canonical names, not aliases)."""
    return list(_config().getColorSpaceNames())


def resolve_colourspace(name: str) -> str | None:
    """Canonical name for ``name`` (alias or canonical), or None when unknown.

    ``"raw"`` resolves to the config's data space (no conversion)."""
    if not isinstance(name, str) or not name.strip():
        return None
    resolved = _config().resolve(name.strip())
    # OIIO's resolve() echoes unknown names; accept only real colour spaces.
    return resolved if resolved in _config().getColorSpaceNames() else None


def is_linear(name: str) -> bool:
    """Whether ``name`` is a scene-linear space (the EXR side)."""
    canonical = resolve_colourspace(name)
    return bool(canonical) and bool(_config().isColorSpaceLinear(canonical))


def same_space(a: str, b: str) -> bool:
    """Whether two names denote the same colour space (so no conversion is needed)."""
    ra, rb = resolve_colourspace(a), resolve_colourspace(b)
    return ra is not None and ra == rb


def check_colourspace(name: str, what: str = "colourspace") -> str:
    """Return the canonical name or raise ValueError listing what is offered."""
    canonical = resolve_colourspace(name)
    if canonical is None:
        raise ValueError(f"{what} {name!r} is not a colour space of OpenImageIO's built-in "
                         f"config; allowed: {', '.join(INPUT_SPACES)} "
                         f"(or any of: {', '.join(available_colourspaces())})")
    return canonical


def convert_array(pixels: np.ndarray, src: str, dst: str) -> np.ndarray:
    """Convert the RGB colour of ``pixels`` (..., 3) float32 from ``src`` to ``dst``.

    Uses ``ImageBufAlgo.colorconvert``; values outside [0,1] pass through the
    transform's extension (no clamping). Returns a new float32 array.
    """
    src_c, dst_c = check_colourspace(src, "source colour space"), check_colourspace(dst, "target colour space")
    arr = np.ascontiguousarray(pixels, dtype=np.float32)
    if arr.shape[-1] != 3:
        raise ValueError(f"convert_array needs (..., 3) RGB, got shape {arr.shape}")
    raw = _config().getColorSpaceNameByRole("data")
    if src_c == dst_c or raw in (src_c, dst_c):
        return arr.copy()
    shape = arr.shape
    # colorconvert is per pixel: lay every pixel of every frame out as one row.
    flat = arr.reshape(1, -1, 3)
    if flat.shape[1] == 0:
        return arr.copy()
    out = oiio.ImageBufAlgo.colorconvert(oiio.ImageBuf(flat), src_c, dst_c, unpremult=False)
    if out.has_error:
        raise RuntimeError(f"OpenImageIO colorconvert {src_c} -> {dst_c} failed: {out.geterror()}")
    return np.asarray(out.get_pixels(oiio.FLOAT), dtype=np.float32).reshape(shape)


def convert(x: torch.Tensor, src: str, dst: str) -> torch.Tensor:
    """Convert ``x`` (N,3,H,W) or (3,H,W) from ``src`` to ``dst``; same dtype/device, no grad."""
    channels_last = x.detach().float().cpu().movedim(-3, -1).numpy()
    out = torch.from_numpy(convert_array(channels_last, src, dst)).movedim(-1, -3)
    return out.to(device=x.device, dtype=x.dtype)


def to_linear(x: torch.Tensor, colourspace: str = "lin_rec709") -> torch.Tensor:
    """Network space (sRGB-encoded) -> scene-linear ``colourspace``.

    Args: x (N,3,H,W) or (3,H,W). Returns the same shape. Not differentiable
    (runs in OpenColorIO); use it at the I/O boundary only.
    """
    return convert(x, NETWORK_SPACE, colourspace)


def from_linear(x: torch.Tensor, colourspace: str = "lin_rec709") -> torch.Tensor:
    """Scene-linear ``colourspace`` -> network space. x (N,3,H,W) or (3,H,W)."""
    return convert(x, colourspace, NETWORK_SPACE)
