"""Reading plates (single images and frame sequences) into network space.

``load_image`` returns a :class:`Plate`: colour (N,3,H,W) float32 sRGB-encoded
("network space"), straight (un-premultiplied) colour, alpha (N,1,H,W) or None,
and a :class:`PlateInfo` with everything needed to write results back in
register (windows, frame numbers, colour space).

Windows: the tensors cover the file's *display window*. Pixels inside the
display window but outside the data window are 0 (colour and alpha);
data-window pixels outside the display window (overscan) are not loaded and
``PlateInfo.overscan`` says so. Both windows are kept in PlateInfo.

Values are never clamped: an HDR plate keeps values > 1 (and a linear plate
with negative values keeps them) after conversion to network space.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import torch

from ..errors import CorruptFileError, LiveLayersError
from ..frames import parse_frames
from . import colour
from .sequence import FramePattern, missing_frames_message, parse_pattern

Window = tuple[int, int, int, int]  # (x, y, width, height), EXR pixel coordinates

_NAMES = {"r": "R", "red": "R", "g": "G", "green": "G", "b": "B", "blue": "B",
          "a": "A", "alpha": "A", "y": "Y", "luminance": "Y"}


class MissingFramesError(LiveLayersError, FileNotFoundError):
    """Some frames of a sequence (or a single file) do not exist; ``missing`` lists them."""

    def __init__(self, message: str, missing: list[int] | None = None):
        super().__init__(message)
        self.missing = missing or []


@dataclass
class PlateInfo:
    """Where a plate came from, so results can be written back in register.

    display_window / data_window: (x, y, width, height) in EXR pixel
    coordinates (for PNG/JPEG both are (0, 0, W, H)). colourspace: the
    canonical OCIO name the files were converted *from*. frames: frame
    numbers, or None for a single file. bit_depth: the stored sample format of
    the loaded channels (e.g. "half", "uint8"). alpha_associated: whether the
    file stored premultiplied colour (EXR) — the loaded colour is always
    straight.
    """

    paths: list[str]
    frames: list[int] | None
    display_window: Window
    data_window: Window
    colourspace: str
    channels: tuple[str, ...]
    bit_depth: str
    file_format: str = ""
    layer: str | None = None
    all_channels: tuple[str, ...] = ()
    alpha_associated: bool = False
    overscan: bool = False
    pattern: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the loaded tensors = the display window."""
        return self.display_window[3], self.display_window[2]


@dataclass
class Plate:
    """rgb (N,3,H,W) float32 network space; alpha (N,1,H,W) float32 or None."""

    rgb: torch.Tensor
    alpha: torch.Tensor | None
    info: PlateInfo


# ---------------------------------------------------------------- channels

def split_channel(name: str) -> tuple[str, str]:
    """``"edit.R"`` -> ("edit", "R"); ``"R"`` -> ("", "R"); ``"a.b.G"`` -> ("a.b", "G")."""
    layer, _, ch = name.rpartition(".")
    return layer, ch


def list_layers(channel_names) -> dict[str, dict[str, int]]:
    """Group channels into layers: {layer: {canonical channel (R/G/B/A/Y or as is): index}}.

    The unprefixed channels form layer ``""``; insertion order follows the file."""
    layers: dict[str, dict[str, int]] = {}
    for i, name in enumerate(channel_names):
        layer, ch = split_channel(name)
        layers.setdefault(layer, {}).setdefault(_NAMES.get(ch.lower(), ch), i)
    return layers


def _is_image_layer(chans: dict[str, int]) -> bool:
    return {"R", "G", "B"} <= chans.keys() or "Y" in chans


def _layer_label(name: str) -> str:
    return "(unprefixed R,G,B)" if name == "" else name


def _pick_layer(channel_names, layer: str | None, path: str) -> tuple[str, list[int], int | None]:
    """Choose the channels to load -> (layer name, [r, g, b] indices, alpha index or None)."""
    layers = list_layers(channel_names)
    if layer is None or layer == "":
        candidates = [n for n, c in layers.items() if _is_image_layer(c)]
        # Unnamed grey/colour channels (no R/G/B names) still load by count.
        if not candidates and "" in layers and len(channel_names) in (1, 2, 3, 4):
            return "", _by_count(len(channel_names)), 1 if len(channel_names) == 2 else (
                3 if len(channel_names) == 4 else None)
        if not candidates:
            raise CorruptFileError(f"{path}: no colour layer (R,G,B or Y channels) to load; "
                                   f"channels: {', '.join(channel_names)}")
        name = "" if "" in candidates else candidates[0]
    else:
        name = layer
        if name not in layers or not _is_image_layer(layers[name]):
            avail = [_layer_label(n) for n, c in layers.items() if _is_image_layer(c)]
            raise CorruptFileError(f"{path}: layer {layer!r} not found; layers with colour "
                                   f"channels: {', '.join(avail) or 'none'}")
    chans = layers[name]
    rgb = [chans["R"], chans["G"], chans["B"]] if {"R", "G", "B"} <= chans.keys() else [chans["Y"]] * 3
    return name, rgb, chans.get("A")


def _by_count(n: int) -> list[int]:
    return [0, 0, 0] if n in (1, 2) else [0, 1, 2]


# ---------------------------------------------------------------- one file

def _open(path: str) -> oiio.ImageInput:
    """Open for reading, asking OIIO to keep unassociated (straight) alpha as stored."""
    if not os.path.isfile(path):
        raise MissingFramesError(f"image file not found: {path}")
    config = oiio.ImageSpec()
    config.attribute("oiio:UnassociatedAlpha", 1)
    inp = oiio.ImageInput.open(path, config)
    if inp is None:
        raise CorruptFileError(f"{path}: not a readable image ({oiio.geterror() or 'unknown format'})")
    return inp


def _subimage_specs(inp: oiio.ImageInput) -> list[oiio.ImageSpec]:
    specs = []
    while inp.seek_subimage(len(specs), 0):
        specs.append(inp.spec().copy())
    return specs


def _auto_space(file_format: str, bit_depth: str) -> str:
    """'auto' colour space: float data is scene-linear, integer data is sRGB."""
    if file_format in ("openexr", "hdr") or bit_depth in ("half", "float", "double"):
        return "lin_rec709"
    return colour.NETWORK_SPACE


@dataclass
class _Frame:
    rgb: np.ndarray          # (H, W, 3) network space, straight colour
    alpha: np.ndarray | None  # (H, W)
    display: Window
    data: Window
    space: str
    channels: tuple[str, ...]
    all_channels: tuple[str, ...]
    bit_depth: str
    file_format: str
    layer: str
    associated: bool
    overscan: bool


def _read_file(path: str, colourspace: str, layer: str | None) -> _Frame:
    inp = _open(path)
    try:
        specs = _subimage_specs(inp)
        all_names = [n for s in specs for n in s.channelnames]
        sub, name, rgb_idx, a_idx = _find_layer(specs, layer, path, all_names)
        spec = specs[sub]
        inp.seek_subimage(sub, 0)
        pixels = inp.read_image(sub, 0, 0, spec.nchannels, oiio.FLOAT)
        if pixels is None:
            raise CorruptFileError(f"{path}: pixels could not be read (truncated or corrupt file?): "
                                   f"{inp.geterror()}")
        file_format = inp.format_name()
    finally:
        inp.close()
    pixels = np.asarray(pixels, dtype=np.float32).reshape(spec.height, spec.width, spec.nchannels)
    bit_depth = str(spec.channelformat(rgb_idx[0]))
    # Files that store straight alpha (PNG, some TIFFs) come back as stored
    # thanks to the open hint and say so; everything else is premultiplied.
    associated = a_idx is not None and not spec.get_int_attribute("oiio:UnassociatedAlpha", 0)
    rgb = pixels[..., rgb_idx]
    alpha = pixels[..., a_idx] if a_idx is not None else None
    if associated:
        # EXR stores premultiplied colour; the network works on straight colour.
        safe = np.where(alpha > 0, alpha, 1.0)[..., None]
        rgb = np.where(alpha[..., None] > 0, rgb / safe, rgb)
    space = _auto_space(file_format, bit_depth) if colourspace == "auto" else colourspace
    space = colour.check_colourspace(space, "input colour space")
    rgb = colour.convert_array(rgb, space, colour.NETWORK_SPACE)
    display = (spec.full_x, spec.full_y, spec.full_width, spec.full_height)
    data = (spec.x, spec.y, spec.width, spec.height)
    rgb, alpha, overscan = _to_display_window(rgb, alpha, display, data)
    names = tuple(spec.channelnames[i] for i in dict.fromkeys(rgb_idx + ([a_idx] if a_idx is not None else [])))
    return _Frame(rgb, alpha, display, data, space, names, tuple(all_names), bit_depth,
                  file_format, name, associated, overscan)


def _find_layer(specs, layer, path, all_names):
    """Search every subimage (EXR part) for the layer; error lists all layers."""
    errors = []
    for sub, spec in enumerate(specs):
        try:
            name, rgb, a = _pick_layer(list(spec.channelnames), layer, path)
            return sub, name, rgb, a
        except CorruptFileError as e:
            errors.append(e)
    if len(specs) == 1:
        raise errors[0]
    avail = [_layer_label(n) for n, c in list_layers(all_names).items() if _is_image_layer(c)]
    raise CorruptFileError(f"{path}: layer {layer!r} not found in any of {len(specs)} parts; "
                           f"layers with colour channels: {', '.join(avail) or 'none'}")


def _to_display_window(rgb, alpha, display: Window, data: Window):
    """Place data-window pixels on a zero display-window canvas -> (rgb, alpha, overscan)."""
    if display == data:
        return rgb, alpha, False
    dx, dy, dw, dh = display
    x, y, w, h = data
    canvas = np.zeros((dh, dw, 3), np.float32)
    a_canvas = np.zeros((dh, dw), np.float32) if alpha is not None else None
    # Overlap of the two windows, in display coordinates.
    x0, y0 = max(x, dx), max(y, dy)
    x1, y1 = min(x + w, dx + dw), min(y + h, dy + dh)
    if x1 > x0 and y1 > y0:
        src = (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x))
        dst = (slice(y0 - dy, y1 - dy), slice(x0 - dx, x1 - dx))
        canvas[dst] = rgb[src]
        if alpha is not None:
            a_canvas[dst] = alpha[src]
    overscan = x < dx or y < dy or x + w > dx + dw or y + h > dy + dh
    return canvas, a_canvas, overscan


# ---------------------------------------------------------------- public API

def resolve_files(path_or_pattern: str | os.PathLike, frames=None) -> tuple[FramePattern, list[Path], list[int] | None]:
    """Files a load would read -> (pattern, paths, frames or None for a single file).

    Raises MissingFramesError naming every missing frame at once."""
    pattern = parse_pattern(os.fspath(path_or_pattern))
    if not pattern.is_sequence:
        p = Path(pattern.text)
        if not p.is_file():
            raise MissingFramesError(f"image file not found: {p}")
        return pattern, [p], None
    wanted = parse_frames(frames)
    if wanted is None:
        wanted = pattern.discover()
        if not wanted:
            raise MissingFramesError(f"no frames of {pattern.text!r} found on disk "
                                     f"(looked for {pattern.path(1).name}-style names in "
                                     f"{Path(pattern.prefix).parent})")
    missing = sorted({f for f in wanted if not pattern.path(f).is_file()})
    if missing:
        raise MissingFramesError(missing_frames_message(pattern, missing, wanted), missing)
    return pattern, pattern.paths(wanted), wanted


def load_image(path_or_pattern: str | os.PathLike, frames=None, colourspace: str = "auto",
               layer: str | None = None) -> Plate:
    """Load a single image or a frame sequence into network space.

    Args:
        path_or_pattern: a file, or a sequence pattern (``plate.####.exr``,
            ``plate.%04d.exr``, ``plate.@@@@.png``).
        frames: Open Job Description range (``"1001-1010"``, ``"1-9:2"``), a
            list of ints, or None/"" = every frame found on disk. Ignored for a
            single file (a still serves every frame).
        colourspace: the files' colour space, or "auto" (EXR/HDR/float TIFF ->
            lin_rec709, 8/16-bit files -> sRGB, i.e. no conversion).
        layer: EXR layer to read (``"composite"`` reads composite.R/G/B[/A]);
            None = unprefixed R,G,B(,A), else the first layer with colour.

    Returns:
        Plate(rgb (N,3,H,W), alpha (N,1,H,W) or None, info). Frames of
        different sizes, windows or channel sets raise CorruptFileError.
    """
    pattern, paths, frame_numbers = resolve_files(path_or_pattern, frames)
    loaded = [_read_file(str(p), colourspace, layer or None) for p in paths]
    _check_consistent(loaded, paths)
    first = loaded[0]
    rgb = torch.from_numpy(np.stack([f.rgb for f in loaded])).permute(0, 3, 1, 2).contiguous()
    alpha = None
    if first.alpha is not None:
        alpha = torch.from_numpy(np.stack([f.alpha for f in loaded]))[:, None].contiguous()
    info = PlateInfo(paths=[str(p) for p in paths], frames=frame_numbers,
                     display_window=first.display, data_window=first.data,
                     colourspace=first.space, channels=first.channels, bit_depth=first.bit_depth,
                     file_format=first.file_format, layer=first.layer,
                     all_channels=first.all_channels, alpha_associated=first.associated,
                     overscan=first.overscan, pattern=pattern.text)
    return Plate(rgb, alpha, info)


def _check_consistent(loaded: list[_Frame], paths: list[Path]) -> None:
    """Every frame of a sequence must match the first in size, windows and alpha."""
    first = loaded[0]
    for f, p in zip(loaded[1:], paths[1:]):
        if f.display != first.display or f.data != first.data:
            raise CorruptFileError(
                f"sequence frames differ in size: {paths[0]} has display window {first.display} / "
                f"data window {first.data} (x, y, w, h), {p} has {f.display} / {f.data}; "
                "allowed: every frame the same size (nothing is resized)")
        if (f.alpha is None) != (first.alpha is None):
            raise CorruptFileError(f"sequence frames differ in channels: {paths[0]} has "
                                   f"{', '.join(first.channels)}, {p} has {', '.join(f.channels)}")
