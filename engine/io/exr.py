"""Writing (and inspecting) single-part multi-layer OpenEXR files.

Layout (docs/exr.md): the unprefixed R,G,B,A channels hold the edit layer
(premultiplied, scene-linear) so every reader shows it; each named layer is
stored as ``<layer>.<channel>`` (``edit.R``, ``composite.G``, ``alpha.A``,
``relevancy.Y``, ``uv_fg.R``). Colour layers are half (float32 with
``half_colour=False``), data layers are float32. Provenance goes into header
attributes ``livelayers/<key>``. Files are written to a temp file in the
same folder and moved into place (engine.atomic): no partial file ever
exists at the final path.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

import numpy as np
import OpenImageIO as oiio
import torch

from ..atomic import atomic_path
from .. import progress
from . import colour
from .read import PlateInfo, Window, split_channel
from .sequence import parse_pattern

try:
    from importlib.metadata import version as _pkg_version
    VERSION = _pkg_version("livelayers")
except Exception:  # running from a source tree that is not installed
    VERSION = "0.1.0"

COLOUR_LAYERS = ("edit", "stylised", "composite", "source", "greenscreen", "atlas")
# The layer that also fills the unprefixed R,G,B,A (the first one present):
# an edit layer, or a stylised object layer (engine/stylise).
PRIMARY_LAYERS = ("edit", "stylised")
DATA_LAYERS = ("alpha", "relevancy", "uv_fg", "uv_bg", "stmap", "depth")
COMPRESSIONS = ("zip", "piz", "zips", "rle", "none", "dwaa", "dwab")
LOSSY_COMPRESSIONS = ("dwaa", "dwab")
_SIMPLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]*$")


@dataclass
class LayerSpec:
    """One named layer of an EXR.

    pixels: (C,H,W) or (1,C,H,W) tensor/array, C in 1..4 (for sequences
        (N,C,H,W), one frame per file).
    kind: "colour" (half, colour-converted, DWA allowed) or "data" (float32,
        stored exactly as given, never DWA).
    encoding: for colour layers, "network" (sRGB-encoded straight colour:
        converted to the output linear space; a 4th channel is alpha and the
        colour is premultiplied by it) or "linear" (already scene-linear and,
        with alpha, premultiplied: written as is).
    channels: channel names; default by C: 1 -> Y (A for the ``alpha``
        layer), 2 -> R,G, 3 -> R,G,B, 4 -> R,G,B,A.
    """

    pixels: torch.Tensor | np.ndarray
    kind: str = "colour"
    encoding: str = "network"
    channels: tuple[str, ...] | None = None


def identity_stmap(height: int, width: int) -> torch.Tensor:
    """The identity STMap (2,H,W): R = u = (col+0.5)/W, G = v = 1 - (row+0.5)/H.

    Nuke's STMap convention (v up). A warp is stored as this map sampled
    through the warp, in a float32 ``stmap`` layer."""
    u = (torch.arange(width, dtype=torch.float32) + 0.5) / width
    v = 1 - (torch.arange(height, dtype=torch.float32) + 0.5) / height
    return torch.stack([u.expand(height, width), v[:, None].expand(height, width)])


def _default_spec(name: str, value) -> LayerSpec:
    if isinstance(value, LayerSpec):
        return value
    kind = "colour" if name in COLOUR_LAYERS else "data"
    return LayerSpec(value, kind=kind)


def _hwc(pixels, name: str) -> np.ndarray:
    """(C,H,W) / (1,C,H,W) tensor or array -> (H,W,C) float32 numpy."""
    arr = pixels.detach().float().cpu().numpy() if isinstance(pixels, torch.Tensor) else np.asarray(pixels, np.float32)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or not 1 <= arr.shape[0] <= 4:
        raise ValueError(f"layer {name!r} has shape {tuple(arr.shape)}; allowed: (C,H,W) or "
                         "(1,C,H,W) with 1 to 4 channels")
    return np.ascontiguousarray(arr.transpose(1, 2, 0), dtype=np.float32)


def _channel_names(name: str, spec: LayerSpec, c: int) -> tuple[str, ...]:
    if spec.channels is not None:
        if len(spec.channels) != c:
            raise ValueError(f"layer {name!r} has {c} channels but names {spec.channels}")
        return tuple(spec.channels)
    if c == 1:
        return ("A",) if name == "alpha" else ("Y",)
    return ("R", "G", "B", "A")[:c] if c != 2 else ("R", "G")


def _encode(name: str, spec: LayerSpec, arr: np.ndarray, space: str) -> np.ndarray:
    """Network-space colour -> scene-linear premultiplied; data and linear layers as is."""
    if spec.kind == "data" or spec.encoding == "linear":
        return arr
    if spec.encoding != "network":
        raise ValueError(f"layer {name!r}: encoding {spec.encoding!r}; allowed: network, linear")
    if arr.shape[-1] < 3:
        raise ValueError(f"colour layer {name!r} has {arr.shape[-1]} channel(s); allowed: 3 or 4 "
                         "(use kind='data' for other data)")
    out = arr.copy()
    out[..., :3] = colour.convert_array(arr[..., :3], colour.NETWORK_SPACE, space)
    if arr.shape[-1] == 4:
        out[..., :3] *= arr[..., 3:4]  # EXR colour is premultiplied
    return out


@dataclass
class _Prepared:
    names: list[str]
    formats: list[str]
    pixels: np.ndarray  # (H, W, C) all channels
    has_data: bool


def _prepare(layers: Mapping, space: str, half_colour: bool) -> _Prepared:
    """Validate layer names/shapes and build the channel list (edit also unprefixed)."""
    if not layers:
        raise ValueError("write_layered_exr needs at least one layer")
    names, formats, planes, size, has_data = [], [], [], None, False
    items = list(layers.items())
    # The edit layer also fills the unprefixed channels, first, so every reader shows it.
    primary = next((name for name in PRIMARY_LAYERS if name in layers), None)
    if primary is not None:
        items = [("", layers[primary])] + items
    for name, value in items:
        if name != "" and not _SIMPLE_NAME.match(name):
            raise ValueError(f"layer name {name!r} is not simple; allowed: a letter, then "
                             "letters, digits or '_' (e.g. edit, uv_fg)")
        spec = _default_spec(name or primary, value)
        if spec.kind not in ("colour", "data"):
            raise ValueError(f"layer {name!r}: kind {spec.kind!r}; allowed: colour, data")
        arr = _hwc(spec.pixels, name or primary)
        if size is None:
            size = arr.shape[:2]
        elif arr.shape[:2] != size:
            raise ValueError(f"layer {name!r} is {arr.shape[1]}x{arr.shape[0]} pixels but "
                             f"layer {items[0][0] or 'edit'!r} is {size[1]}x{size[0]}; "
                             "allowed: every layer the same size (nothing is resized)")
        arr = _encode(name or primary, spec, arr, space)
        fmt = "half" if spec.kind == "colour" and half_colour else "float"
        has_data |= spec.kind == "data"
        for i, ch in enumerate(_channel_names(name or primary, spec, arr.shape[-1])):
            names.append(f"{name}.{ch}" if name else ch)
            formats.append(fmt)
            planes.append(arr[..., i])
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate EXR channel names: {names}")
    return _Prepared(names, formats, np.stack(planes, axis=-1), has_data)


def _windows(info: PlateInfo | None, h: int, w: int) -> tuple[Window, Window]:
    """(display, data) windows to write: the plate's display window, and its
    data window clipped to the display window (the pixels we hold)."""
    if info is None:
        return (0, 0, w, h), (0, 0, w, h)
    display = tuple(info.display_window)
    if (display[3], display[2]) != (h, w):
        raise ValueError(f"layers are {w}x{h} pixels but the plate's display window is "
                         f"{display[2]}x{display[3]}; allowed: the plate's size")
    dx, dy, dw, dh = display
    x, y, ww, hh = info.data_window
    x0, y0 = max(x, dx), max(y, dy)
    x1, y1 = min(x + ww, dx + dw), min(y + hh, dy + dh)
    if x1 <= x0 or y1 <= y0:  # no overlap: keep the whole display window
        return display, display
    return display, (x0, y0, x1 - x0, y1 - y0)


def _attribute_value(value):
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float, str)):
        return value
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return json.dumps(value, sort_keys=True, default=str)


def _header_attributes(metadata: Mapping | None, space: str) -> dict:
    attrs = {"livelayers/version": VERSION, "livelayers/colourspace": space}
    for key, value in (metadata or {}).items():
        key = str(key)
        if not _KEY.match(key):
            raise ValueError(f"metadata key {key!r}; allowed: letters, digits, '_', '.', '/', '-'")
        if value is None:
            continue
        full = key if key.startswith("livelayers/") else f"livelayers/{key}"
        attrs[full] = _attribute_value(value)
    return attrs


def write_layered_exr(path: str | os.PathLike, layers: Mapping[str, LayerSpec | torch.Tensor | np.ndarray],
                      info: PlateInfo | None = None, compression: str = "zip",
                      metadata: Mapping | None = None, half_colour: bool = True,
                      colourspace: str = "lin_rec709") -> Path:
    """Write one single-part multi-layer EXR atomically; returns the final path.

    Args:
        layers: {name: LayerSpec or tensor}. Tensors (C,H,W) are colour (half,
            network space -> ``colourspace``) for edit/composite/source/
            greenscreen/atlas and data (float32, as is) for every other name.
            ``edit`` is also written to the unprefixed R,G,B,A.
        info: the source PlateInfo: its display window and data window
            (clipped to the display window) are written; layers must be the
            display window's size.
        compression: zip (default), piz, zips, rle, none; dwaa/dwab only when
            no data layer is present (DWA is lossy).
        metadata: extra provenance, stored as ``livelayers/<key>`` header
            attributes (str/int/float as is, anything else as JSON).
        colourspace: the scene-linear space colour layers are written in.
    """
    colour.check_colourspace(colourspace, "output colour space")
    space = colourspace  # keep the caller's (short, well-known) name in the header
    compression = (compression or "zip").lower()
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression {compression!r}; allowed: {', '.join(COMPRESSIONS)}")
    prepared = _prepare(layers, space, half_colour)
    if compression in LOSSY_COMPRESSIONS and prepared.has_data:
        data = sorted({split_channel(n)[0] for n, f in zip(prepared.names, prepared.formats) if f == "float"})
        raise ValueError(f"compression {compression!r} is lossy (DWA quantises R/G/B/Y) and would "
                         f"damage the data layers {', '.join(data)}; allowed with data: "
                         "zip, piz, zips, rle, none")
    h, w = prepared.pixels.shape[:2]
    display, data = _windows(info, h, w)
    pixels = _crop(prepared.pixels, display, data)
    spec = _spec(prepared, display, data, compression, _header_attributes(metadata, space), space)
    final = Path(path)
    if final.suffix.lower() != ".exr":
        raise ValueError(f"EXR path {str(final)!r} must end in .exr")
    with atomic_path(final) as tmp:
        _write(tmp, spec, pixels)
    return final


def _crop(pixels: np.ndarray, display: Window, data: Window) -> np.ndarray:
    dx, dy = display[0], display[1]
    x, y, w, h = data
    return np.ascontiguousarray(pixels[y - dy:y - dy + h, x - dx:x - dx + w])


def _spec(prepared: _Prepared, display: Window, data: Window, compression: str,
          attrs: dict, space: str) -> oiio.ImageSpec:
    # OIIO honours per-channel formats only when they differ; a single format
    # must be the spec's own (else an all-float file would be written as half).
    uniform = len(set(prepared.formats)) == 1
    spec = oiio.ImageSpec(data[2], data[3], len(prepared.names),
                          prepared.formats[0] if uniform else "float")
    spec.x, spec.y = data[0], data[1]
    spec.full_x, spec.full_y, spec.full_width, spec.full_height = display
    spec.channelnames = tuple(prepared.names)
    if not uniform:
        spec.channelformats = tuple(prepared.formats)
    # The unprefixed A (when present) is the alpha the readers premultiply by.
    spec.alpha_channel = prepared.names.index("A") if "A" in prepared.names else -1
    spec.attribute("compression", compression)
    spec.attribute("oiio:ColorSpace", space)
    for key, value in attrs.items():
        spec.attribute(key, value)
    return spec


def _write(tmp: Path, spec: oiio.ImageSpec, pixels: np.ndarray) -> None:
    out = oiio.ImageOutput.create(str(tmp))
    if out is None:
        raise OSError(f"OpenImageIO cannot create an EXR writer: {oiio.geterror()}")
    try:
        if not out.open(str(tmp), spec):
            raise OSError(f"cannot open {tmp} for writing: {out.geterror()}")
        if not out.write_image(pixels):
            raise OSError(f"writing {tmp} failed: {out.geterror()}")
    finally:
        out.close()


def write_exr_sequence(pattern: str | os.PathLike, frames: list[int] | None,
                       layers: Mapping[str, LayerSpec | torch.Tensor | np.ndarray],
                       info: PlateInfo | None = None, **kwargs) -> list[Path]:
    """Write one EXR per frame: layers carry a leading batch axis (N,C,H,W).

    ``frames`` gives the N frame numbers (None: the plate's frames, else
    1..N); ``pattern`` must hold a frame token (``####``) when N > 1. Every
    frame is validated before the first file is written. kwargs go to
    write_layered_exr; metadata gets ``livelayers/frame`` per file.
    """
    specs = {k: _default_spec(k, v) for k, v in layers.items()}
    counts = {k: _batch(s.pixels) for k, s in specs.items()}
    n = next(iter(counts.values()), 0)
    if any(c != n for c in counts.values()):
        raise ValueError(f"layers have different frame counts: {counts}; allowed: all equal")
    frames = list(frames) if frames is not None else (
        list(info.frames) if info is not None and info.frames else list(range(1, n + 1)))
    if len(frames) != n:
        raise ValueError(f"{len(frames)} frame numbers for {n} frames; allowed: one per frame")
    paths = output_paths(pattern, frames)
    per_frame = [{k: replace(s, pixels=s.pixels[i]) for k, s in specs.items()} for i in range(n)]
    # Validate every frame first, so a bad frame leaves no files behind.
    space = colour.check_colourspace(kwargs.get("colourspace", "lin_rec709"))
    for layer_set in per_frame:
        _prepare(layer_set, space, kwargs.get("half_colour", True))
    base_meta = dict(kwargs.pop("metadata", None) or {})
    written = []
    for path, frame, layer_set in zip(paths, frames, per_frame):
        progress.check("EXR sequence")  # stop between frames: each written one is whole
        written.append(write_layered_exr(path, layer_set, info=info,
                                         metadata={**base_meta, "frame": frame}, **kwargs))
    return written


def _batch(pixels) -> int:
    shape = tuple(pixels.shape)
    if len(shape) != 4:
        raise ValueError(f"sequence layer has shape {shape}; allowed: (N,C,H,W)")
    return shape[0]


def output_paths(pattern: str | os.PathLike, frames: list[int]) -> list[Path]:
    """The files a sequence write produces (one per frame)."""
    parsed = parse_pattern(os.fspath(pattern))
    if not parsed.is_sequence:
        if len(frames) > 1:
            raise ValueError(f"path {str(pattern)!r} has no frame token but {len(frames)} frames "
                             "are to be written; allowed: a pattern like out/edit.####.exr")
        return [Path(parsed.text)]
    return parsed.paths(frames)


# ---------------------------------------------------------------- reading back

def read_exr_header(path: str | os.PathLike) -> dict:
    """Header of an EXR: every attribute by name, plus 'channels', 'channelformats'
    ({channel: "half"/"float"}), 'display_window' and 'data_window' (x, y, w, h)."""
    inp = oiio.ImageInput.open(os.fspath(path))
    if inp is None:
        raise FileNotFoundError(f"cannot open {path}: {oiio.geterror()}")
    try:
        spec = inp.spec()
        header = {p.name: p.value for p in spec.extra_attribs}
        formats = [str(f) for f in spec.channelformats] or [str(spec.format)] * spec.nchannels
        header.update(channels=list(spec.channelnames),
                      channelformats=dict(zip(spec.channelnames, formats)),
                      display_window=(spec.full_x, spec.full_y, spec.full_width, spec.full_height),
                      data_window=(spec.x, spec.y, spec.width, spec.height))
        return header
    finally:
        inp.close()


def read_exr_layers(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All layers of an EXR as float32 arrays (H, W, C) over the data window.

    Keys: layer names; ``""`` = the unprefixed channels. Channel order within
    a layer follows the file (R,G,B,A first). Use read_exr_header for names."""
    inp = oiio.ImageInput.open(os.fspath(path))
    if inp is None:
        raise FileNotFoundError(f"cannot open {path}: {oiio.geterror()}")
    try:
        spec = inp.spec()
        pixels = inp.read_image(0, 0, 0, spec.nchannels, oiio.FLOAT)
        if pixels is None:
            raise OSError(f"{path}: pixels could not be read: {inp.geterror()}")
    finally:
        inp.close()
    pixels = np.asarray(pixels, np.float32).reshape(spec.height, spec.width, spec.nchannels)
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(spec.channelnames):
        groups.setdefault(split_channel(name)[0], []).append(i)
    return {layer: pixels[..., idx] for layer, idx in groups.items()}


def exr_is_complete(path: str | os.PathLike) -> bool:
    """True when ``path`` is an image file OpenImageIO opens and reads every pixel
    of (every part); False for missing, truncated or corrupt files."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        return False
    inp = oiio.ImageInput.open(path)
    if inp is None:
        oiio.geterror()  # clear the global error
        return False
    try:
        sub = 0
        while inp.seek_subimage(sub, 0):
            spec = inp.spec()
            if inp.read_image(sub, 0, 0, spec.nchannels, oiio.FLOAT) is None or inp.has_error:
                inp.geterror()
                return False
            sub += 1
        return sub > 0
    finally:
        inp.close()
