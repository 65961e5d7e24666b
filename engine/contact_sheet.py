"""Contact sheets: many same-layered images in one grid, each tile labelled.

Pure array functions plus two writers (OpenImageIO): a layered EXR whose
channels are the tiles' own channels laid out in the grid, bit for bit, with
the labels in a data channel ``label.Y``; and an 8-bit PNG for a quick look.
Labels are drawn with OpenImageIO's ``render_text`` and its built-in font
(no font file, works offline). Nothing is resized: a cell is as large as its
largest tile (and its label), smaller tiles sit top-left on black.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import OpenImageIO as oiio

from .atomic import atomic_path
from .io.preview import write_png8

FONT_SIZE = 10  # pixels; OpenImageIO's built-in font stays readable down to ~9
LINE_GAP = 2
PAD = 4
GUTTER = 4  # black pixels between columns and rows


@dataclass
class Tile:
    """One cell: ``pixels`` (H, W, C) float32 and its label lines."""

    pixels: np.ndarray
    label: list[str]


def label_size(lines: list[str], font_size: int = FONT_SIZE) -> tuple[int, int]:
    """(width, height) in pixels the label needs, padding included."""
    if not lines:
        return 0, 0
    width = max(oiio.ImageBufAlgo.text_size(line, font_size, "").width for line in lines)
    return width + 2 * PAD, len(lines) * (font_size + LINE_GAP) + PAD


def render_label(lines: list[str], width: int, height: int,
                 font_size: int = FONT_SIZE) -> np.ndarray:
    """The label as a coverage mask (height, width) float32 in [0,1] (1 = ink)."""
    buf = oiio.ImageBuf(oiio.ImageSpec(max(width, 1), max(height, 1), 1, oiio.FLOAT))
    for i, line in enumerate(lines):
        baseline = PAD // 2 + (i + 1) * (font_size + LINE_GAP) - LINE_GAP
        if line and not oiio.ImageBufAlgo.render_text(buf, PAD, baseline, line, font_size, "",
                                                      (1.0,)):
            raise RuntimeError(f"OpenImageIO could not draw the label {line!r}: {oiio.geterror()}")
    return np.asarray(buf.get_pixels(oiio.FLOAT), np.float32).reshape(height, width)


def layout(tiles: list[Tile], cols: int, font_size: int = FONT_SIZE):
    """Cell size and tile boxes: ((cell_w, cell_h, label_h), [(x, y, w, h), ...]).

    Row-major: tile i is in row i // cols, column i % cols, cells
    ``GUTTER`` pixels apart; its label is drawn in a band of ``label_h``
    pixels under it.
    """
    if not tiles or cols < 1:
        raise ValueError("a contact sheet needs at least one tile and one column")
    sizes = [label_size(t.label, font_size) for t in tiles]
    cell_w = max(max(t.pixels.shape[1] for t in tiles), max(s[0] for s in sizes))
    label_h = max(s[1] for s in sizes)
    cell_h = max(t.pixels.shape[0] for t in tiles) + label_h
    boxes = [((i % cols) * (cell_w + GUTTER), (i // cols) * (cell_h + GUTTER),
              t.pixels.shape[1], t.pixels.shape[0]) for i, t in enumerate(tiles)]
    return (cell_w, cell_h, label_h), boxes


def build_sheet(tiles: list[Tile], cols: int, font_size: int = FONT_SIZE):
    """Tiles into one grid: (sheet (H, W, C) float32, labels (H, W) float32, boxes).

    Every tile must have the same channel count C; ``boxes[i]`` = (x, y, w, h)
    of tile i's pixels in the sheet, so ``sheet[y:y+h, x:x+w] == tiles[i].pixels``.
    """
    channels = {t.pixels.shape[2] for t in tiles}
    if len(channels) != 1:
        raise ValueError(f"tiles have different channel counts {sorted(channels)}; allowed: one")
    (cell_w, cell_h, label_h), boxes = layout(tiles, cols, font_size)
    rows = -(-len(tiles) // cols)
    sheet = np.zeros((rows * (cell_h + GUTTER) - GUTTER, cols * (cell_w + GUTTER) - GUTTER,
                      channels.pop()), np.float32)
    labels = np.zeros(sheet.shape[:2], np.float32)
    for tile, (x, y, w, h) in zip(tiles, boxes):
        sheet[y:y + h, x:x + w] = tile.pixels
        band = y + cell_h - label_h
        labels[band:band + label_h, x:x + cell_w] = render_label(tile.label, cell_w, label_h,
                                                                 font_size)
    return sheet, labels, boxes


def write_sheet_exr(path: str | os.PathLike, sheet: np.ndarray, channel_names: list[str],
                    channel_formats: list[str], labels: np.ndarray,
                    metadata: dict | None = None) -> Path:
    """Write the sheet's channels (their own names and half/float formats) plus
    ``label.Y`` (float), zip-compressed, atomically. ``metadata`` values go in
    as ``livelayers/<key>`` header attributes (non-strings as JSON)."""
    height, width, n = sheet.shape
    if len(channel_names) != n or len(channel_formats) != n:
        raise ValueError(f"{n} channels but {len(channel_names)} names / "
                         f"{len(channel_formats)} formats")
    spec = oiio.ImageSpec(width, height, n + 1, oiio.FLOAT)
    spec.channelnames = tuple(channel_names) + ("label.Y",)
    formats = [oiio.TypeDesc(f) for f in channel_formats] + [oiio.TypeDesc("float")]
    spec.channelformats = tuple(formats)
    spec.attribute("compression", "zip")
    for key, value in (metadata or {}).items():
        spec.attribute(f"livelayers/{key}", value if isinstance(value, str) else json.dumps(value))
    pixels = np.concatenate([sheet, labels[..., None]], axis=2).astype(np.float32)
    path = Path(path)
    with atomic_path(path) as tmp:
        out = oiio.ImageOutput.create(str(tmp))
        if out is None or not out.open(str(tmp), spec):
            raise OSError(f"cannot write {path}: {oiio.geterror()}")
        try:
            if not out.write_image(pixels):
                raise OSError(f"cannot write {path}: {out.geterror()}")
        finally:
            out.close()
    return path


def write_sheet_png(path: str | os.PathLike, rgb: np.ndarray, labels: np.ndarray) -> Path:
    """An 8-bit sRGB PNG of display-referred ``rgb`` (H, W, 3) in [0,1] with the
    labels drawn in white over it; atomically."""
    ink = labels[..., None]
    return write_png8(path, np.clip(rgb, 0.0, 1.0) * (1.0 - ink) + ink)
