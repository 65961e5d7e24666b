"""The pictures the viewer shows, as arrays, without Qt.

A ``Picture`` holds what is drawn (``display``: sRGB-encoded RGB, the
screen's encoding) and what the cursor reads (``linear`` scene-linear and
``encoded`` sRGB-encoded values, or ``data`` for a matte). Every colour
conversion goes through ``engine.io.colour`` (OpenColorIO), the same
transforms the EXR writer and the plate loader use.

Sources: a plate frame (``load_image``, network space = sRGB-encoded), a
written EXR (``read_exr_layers``: the edit's premultiplied scene-linear
R,G,B,A, ``composite``, ``source``, ``alpha``, ``relevancy`` …) and a matte
computed in the panel.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..engine.io import colour

CHECKER_PX = 8  # side of a checkerboard square, in image pixels
CHECKER_GREYS = (0.35, 0.65)  # sRGB-encoded greys of the squares
MATTE_TINT = np.array([1.0, 0.9, 0.3], np.float32)  # warm highlight of the live matte
MATTE_PLATE = 0.25  # how much plate shows under the matte (it stays dim: the matte reads)


@dataclass
class Picture:
    """One viewable image.

    display: (H, W, 3) float32, sRGB-encoded, what is drawn (clipped to [0, 1] on screen).
    linear / encoded: (H, W, C) float32 scene-linear / sRGB-encoded values (C = 3
    or 4), or None. ``derive`` says how the missing one is computed for the
    pixel under the cursor (one pixel through OpenColorIO, not the whole
    image): "linear" from encoded, "encoded" from linear, "straight" = the
    sRGB-encoded straight colour (and alpha) of premultiplied linear RGBA.
    data: (H, W) float32 for a matte, or None. space: the scene-linear space.
    """

    name: str
    display: np.ndarray
    linear: np.ndarray | None = None
    encoded: np.ndarray | None = None
    data: np.ndarray | None = None
    space: str = "lin_rec709"
    derive: str = ""

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.display.shape[0], self.display.shape[1]

    def values(self, x: int, y: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(linear, encoded) values at pixel (x, y)."""
        lin = self.linear[y, x] if self.linear is not None else None
        enc = self.encoded[y, x] if self.encoded is not None else None
        if self.derive == "linear" and enc is not None:
            lin = to_lin(enc[None, :3], self.space)[0]
        elif self.derive == "encoded" and lin is not None:
            enc = to_srgb(lin[None, :3], self.space)[0]
        elif self.derive == "straight" and lin is not None:
            a = float(lin[3])
            straight = lin[:3] / a if a > 1e-6 else np.zeros(3, np.float32)
            enc = np.append(to_srgb(straight[None].astype(np.float32), self.space)[0], a)
        return lin, enc

    def readout(self, x: int, y: int) -> str:
        """The values at pixel (x, y) as one line, '' outside the image."""
        h, w = self.size
        if not (0 <= x < w and 0 <= y < h):
            return ""
        parts = [f"{self.name}  x {x}  y {y}"]
        if self.data is not None:
            parts.append(f"value {self.data[y, x]:.4f}")
        lin, enc = self.values(x, y)
        if lin is not None:
            parts.append(f"linear ({self.space}) " + _fmt(lin))
        if enc is not None:
            parts.append("sRGB " + _fmt(enc))
        return "   ".join(parts)


def _fmt(values: np.ndarray) -> str:
    return " ".join(f"{v:.4f}" for v in values)


def to_srgb(linear_rgb: np.ndarray, space: str) -> np.ndarray:
    """(..., 3) scene-linear ``space`` -> sRGB-encoded (network space)."""
    return colour.convert_array(linear_rgb, space, colour.NETWORK_SPACE)


def to_lin(srgb_rgb: np.ndarray, space: str = "lin_rec709") -> np.ndarray:
    """(..., 3) sRGB-encoded -> scene-linear ``space``."""
    return colour.convert_array(srgb_rgb, colour.NETWORK_SPACE, space)


DISPLAY_LUT = 8192  # samples of the display curve: a step is < 1/255 even where sRGB is steepest (x12.92)


@lru_cache(maxsize=4)
def _display_lut(space: str) -> tuple[np.ndarray, np.ndarray]:
    """OpenColorIO's linear -> sRGB curve sampled on [0, 1] (a grey ramp)."""
    ramp = np.linspace(0, 1, DISPLAY_LUT, dtype=np.float32)
    return ramp, to_srgb(np.repeat(ramp[:, None], 3, axis=1), space)[:, 0].copy()


def display_srgb(linear_rgb: np.ndarray, space: str) -> np.ndarray:
    """(H, W, 3) scene-linear -> sRGB-encoded for the screen only (clipped to [0, 1]).

    For ``lin_rec709`` (per-channel: sRGB's own primaries) through a lookup
    table sampled from OpenColorIO's transform (a whole-frame transform takes
    about a second per 2 MPixel here); other spaces (a primaries matrix) go
    through the full transform."""
    if not colour.same_space(space, "lin_rec709"):
        return to_srgb(linear_rgb, space)
    _, curve = _display_lut(space)
    index = (np.clip(linear_rgb, 0, 1) * (DISPLAY_LUT - 1) + 0.5).astype(np.intp)
    return curve[index]


@lru_cache(maxsize=8)
def _checker(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    pick = ((yy // CHECKER_PX) + (xx // CHECKER_PX)) % 2
    grey = np.where(pick == 0, *CHECKER_GREYS).astype(np.float32)
    return np.repeat(grey[..., None], 3, axis=2)


def checkerboard(h: int, w: int) -> np.ndarray:
    """(H, W, 3) sRGB-encoded checkerboard (a copy)."""
    return _checker(h, w).copy()


def plate_picture(rgb: np.ndarray, space: str = "lin_rec709", name: str = "plate") -> Picture:
    """A network-space frame (H, W, 3) (what ``load_image`` returns) as a Picture."""
    rgb = np.ascontiguousarray(rgb, np.float32)
    return Picture(name, rgb, encoded=rgb, space=space, derive="linear")


def matte_picture(plate_rgb: np.ndarray, matte: np.ndarray, name: str = "matte") -> Picture:
    """The matte (H, W) in [0, 1] over a dimmed plate (H, W, 3): bright = where
    the text points (``display = 0.25·plate + 0.75·matte·tint``)."""
    m = np.clip(np.asarray(matte, np.float32), 0, 1)
    shown = MATTE_PLATE * np.asarray(plate_rgb, np.float32) + (1 - MATTE_PLATE) * m[..., None] * MATTE_TINT
    return Picture(name, shown.astype(np.float32), data=m)


def data_picture(values: np.ndarray, name: str) -> Picture:
    """A data layer (H, W) (alpha, relevancy) shown as grey, read as its value."""
    v = np.asarray(values, np.float32)
    return Picture(name, np.repeat(np.clip(v, 0, 1)[..., None], 3, axis=2), data=v)


def srgb_image_picture(rgb: np.ndarray, name: str) -> Picture:
    """An sRGB-encoded display image (an engine preview) as a Picture."""
    return plate_picture(rgb, name=name)


# ---------------------------------------------------------------- EXR results

def _place(arr: np.ndarray, display: tuple, data: tuple) -> np.ndarray:
    """Pixels of the data window (H_d, W_d, C) placed in the display window
    (zeros where the file holds no pixels; overscan outside it is cut)."""
    dx, dy, dw, dh = display
    x, y, w, h = data
    if (x, y, w, h) == (dx, dy, dw, dh):
        return arr
    out = np.zeros((dh, dw, arr.shape[2]), np.float32)
    x0, y0 = max(x, dx), max(y, dy)
    x1, y1 = min(x + w, dx + dw), min(y + h, dy + dh)
    if x1 > x0 and y1 > y0:
        out[y0 - dy:y1 - dy, x0 - dx:x1 - dx] = arr[y0 - y:y1 - y, x0 - x:x1 - x]
    return out


def read_result(path: str) -> dict[str, Picture]:
    """The viewable layers of a LiveLayers EXR: ``layer`` (the edit over a
    checkerboard), ``alpha``, ``composite``, ``relevancy`` — those the file has. Linear readouts are the file's own values."""
    from ..engine.io import read_exr_header, read_exr_layers
    header = read_exr_header(path)
    space = str(header.get("livelayers/colourspace") or header.get("oiio:ColorSpace") or "lin_rec709")
    if colour.resolve_colourspace(space) is None:
        space = "lin_rec709"
    windows = header["display_window"], header["data_window"]
    layers = {k: _place(v, *windows) for k, v in read_exr_layers(path).items()}
    out: dict[str, Picture] = {}
    edit = layers.get("edit", layers.get(""))
    if edit is not None and edit.shape[2] >= 4:
        out["layer"] = _edit_picture(edit[..., :4], space)
    if "composite" in layers and layers["composite"].shape[2] >= 3:
        lin = layers["composite"][..., :3]
        out["composite"] = Picture("composite", display_srgb(lin, space), linear=lin, space=space,
                                   derive="encoded")
    alpha = layers.get("alpha", edit[..., 3:4] if edit is not None and edit.shape[2] >= 4 else None)
    if alpha is not None:
        out["alpha"] = data_picture(alpha[..., 0], "alpha")
    if "relevancy" in layers:
        out["relevancy"] = data_picture(layers["relevancy"][..., 0], "relevancy")
    return out


@lru_cache(maxsize=4)
def _checker_linear(h: int, w: int, space: str) -> np.ndarray:
    return to_lin(checkerboard(h, w), space)


def _edit_picture(rgba: np.ndarray, space: str) -> Picture:
    """Premultiplied scene-linear RGBA -> the layer over a checkerboard (a
    compositor's linear Over), read as the file's premultiplied values and
    the straight sRGB-encoded colour."""
    premult, a = rgba[..., :3], rgba[..., 3:4]
    h, w = a.shape[:2]
    shown = display_srgb(premult + (1 - a) * _checker_linear(h, w, space), space)
    return Picture("layer", shown, linear=rgba.astype(np.float32), space=space, derive="straight")
