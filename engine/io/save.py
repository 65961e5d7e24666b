"""Saving an edit and its companion layers as an EXR sequence (what LL_SaveEXR does).

Takes engine tensors (NCHW, network space), validates them as node inputs
(InputError naming the input), solves the linear-light edit layer and writes
one single-part multi-layer EXR per batch element.
"""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import torch

from ..errors import InputError
from ..frames import format_frames, parse_frames
from . import colour
from .exr import (COMPRESSIONS, LOSSY_COMPRESSIONS, PRIMARY_LAYERS, LayerSpec, output_paths,
                  write_exr_sequence)
from .layer import linear_premultiplied_layer
from .read import PlateInfo
from .sequence import parse_pattern

# Node input -> (EXR layer, kind). edit_image/edit_alpha are handled apart.
LAYER_INPUTS = {
    "source": ("source", "colour"),
    "composite": ("composite", "colour"),
    "greenscreen": ("greenscreen", "colour"),
    "atlas": ("atlas", "colour"),
    "alpha": ("alpha", "data"),
    "relevancy": ("relevancy", "data"),
    "uv_fg": ("uv_fg", "data"),
    "uv_bg": ("uv_bg", "data"),
}


def output_colourspace(choice: str, plate: PlateInfo | None) -> str:
    """"auto" = the plate's colour space when it is scene-linear, else lin_rec709."""
    if choice != "auto":
        return choice
    if plate is not None and colour.is_linear(plate.colourspace):
        return plate.colourspace
    return "lin_rec709"


def frame_numbers(frames: str, n: int, plate: PlateInfo | None, node: str) -> list[int]:
    """Frame numbers for a batch of n: ``frames`` (OpenJD), else the plate's, else 1..n."""
    try:
        parsed = parse_frames(frames)
    except ValueError as e:
        raise InputError(node, "frames", f"is {frames!r}: {e}", "an OpenJD range like 1001-1010") from e
    if parsed is None:
        if plate is not None and plate.frames and len(plate.frames) == n:
            return list(plate.frames)
        return list(range(1, n + 1))
    if len(parsed) != n and n != 1:  # a batch of 1 (a still) is written to every frame named
        raise InputError(node, "frames", f"names {len(parsed)} frames ({format_frames(parsed)}) "
                         f"but the inputs hold {n}", f"exactly {n} frame numbers, or '' for "
                         "the plate's frames / 1..N (a batch of 1 serves any number)")
    return parsed


def parse_metadata(text: str, node: str) -> dict:
    """The metadata input: a JSON object (or empty)."""
    if not text or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(node, "metadata", f"is not valid JSON ({e})", 'a JSON object like {"shot": "sh010"}') from e
    if not isinstance(value, dict):
        raise InputError(node, "metadata", f"is JSON {type(value).__name__}", "a JSON object")
    return value


def _check_batches(tensors: dict[str, torch.Tensor], plate: PlateInfo | None, node: str) -> tuple[int, int, int]:
    """All inputs share batch size and (H, W), and match the plate -> (N, H, W)."""
    first_name, first = next(iter(tensors.items()))
    n, (h, w) = first.shape[0], first.shape[-2:]
    for name, t in tensors.items():
        if t.shape[0] != n:
            raise InputError(node, name, f"has batch {t.shape[0]} but '{first_name}' has {n}",
                             "every layer input with the same batch size (one frame each)")
        if tuple(t.shape[-2:]) != (h, w):
            raise InputError(node, name, f"is {t.shape[-1]}x{t.shape[-2]} pixels but "
                             f"'{first_name}' is {w}x{h}",
                             "every layer the same size; save an atlas of another size with its own LL_SaveEXR")
    if plate is not None and plate.size != (h, w):
        raise InputError(node, "plate", f"is {plate.size[1]}x{plate.size[0]} pixels but the layers "
                         f"are {w}x{h}", "a plate of the layers' size")
    return n, h, w


def save_edit_exr(path: str | os.PathLike, inputs: dict[str, torch.Tensor | None], *,
                  plate: PlateInfo | None = None, frames: str = "", compression: str = "zip",
                  colourspace: str = "auto", metadata: dict | None = None,
                  keep_nonnegative: bool = False, colour_depth: str = "half",
                  edit_layer: str = "edit", node: str = "LL_SaveEXR") -> list[Path]:
    """Write the connected layers, one EXR per batch element.

    Args:
        inputs: engine tensors by node input name: edit_image (N,3,H,W) and
            edit_alpha (N,1,H,W) (the edit: straight colour + alpha), source,
            composite, greenscreen, atlas (N,3,H,W) colour; alpha, relevancy
            (N,1,H,W) and uv_fg, uv_bg (N,C,H,W) data. None = not connected.
        plate: windows, frame numbers and colour space of the source plate.
        frames: OpenJD range naming the N frames ("" = plate frames or 1..N);
            with N = 1 it may name any number: the still is written to each.
        colourspace: scene-linear output space, or "auto" (plate's if linear).
        edit_layer: the name of the layer holding edit_image/edit_alpha
            ("edit", or "stylised" for a stylised object layer); either one
            also fills the unprefixed R,G,B,A.
    Returns: the written paths.
    """
    given = {k: v for k, v in inputs.items() if v is not None}
    if not given:
        raise InputError(node, "edit_image", "and every other layer input are unconnected",
                         "at least one of edit_image+edit_alpha, " + ", ".join(LAYER_INPUTS))
    for a, b in (("edit_image", "edit_alpha"), ("edit_alpha", "edit_image")):
        if a in given and b not in given:
            raise InputError(node, b, f"is missing while '{a}' is connected",
                             "edit_image and edit_alpha together (straight colour + alpha)")
    compression = (compression or "zip").lower()
    if compression not in COMPRESSIONS:
        raise InputError(node, "compression", f"is {compression!r}", ", ".join(COMPRESSIONS))
    data_inputs = [k for k in given if LAYER_INPUTS.get(k, ("", ""))[1] == "data"]
    if compression in LOSSY_COMPRESSIONS and data_inputs:
        raise InputError(node, "compression", f"is {compression} (lossy) but data layers are "
                         f"connected ({', '.join(data_inputs)})",
                         "zip, piz, zips, rle or none when data layers are saved (DWA only for colour)")
    if edit_layer not in PRIMARY_LAYERS:
        raise InputError(node, "edit_layer", f"is {edit_layer!r}", " | ".join(PRIMARY_LAYERS))
    space = output_colourspace(colourspace, plate)
    if not colour.is_linear(space):
        raise InputError(node, "colourspace", f"is {space!r}, not scene-linear",
                         ", ".join(("auto",) + colour.LINEAR_SPACES))
    n, _, _ = _check_batches(given, plate, node)
    numbers = frame_numbers(frames, n, plate, node)
    try:
        paths = output_paths(path, numbers)
    except ValueError as e:
        raise InputError(node, "path", str(e), "a pattern with #### (or %04d, @@@@) for several frames") from e
    layers, solve = _layers(given, space, keep_nonnegative, edit_layer)
    if len(numbers) != n:  # a still held over a frame range (views: computed once, no copies)
        layers = {k: replace(s, pixels=s.pixels.expand(len(numbers), *s.pixels.shape[1:]))
                  for k, s in layers.items()}
    meta = {"edit_solve": solve, "output_colourspace": space, **(metadata or {})}
    if plate is not None:
        meta.setdefault("source_plate", plate.pattern or (plate.paths[0] if plate.paths else ""))
        meta.setdefault("source_colourspace", plate.colourspace)
    if colour_depth not in ("half", "float"):
        raise InputError(node, "colour_depth", f"is {colour_depth!r}", "half | float")
    write_exr_sequence(path, numbers, layers, info=plate, compression=compression,
                       metadata=meta, colourspace=space, half_colour=colour_depth == "half")
    return paths


def _layers(given: dict[str, torch.Tensor], space: str, keep_nonnegative: bool,
            edit_layer: str = "edit") -> tuple[dict, str | None]:
    """EXR layer specs (batched) and how the edit layer was solved."""
    layers: dict[str, LayerSpec] = {}
    solve = None
    if "edit_image" in given:
        c, a, src = given["edit_image"], given["edit_alpha"], given.get("source")
        if src is not None:
            p, a2 = linear_premultiplied_layer(c, a, src, space, keep_nonnegative=keep_nonnegative)
            layers[edit_layer] = LayerSpec(torch.cat([p, a2], dim=1), kind="colour", encoding="linear")
            solve = "over_source" + ("_nonnegative" if keep_nonnegative else "")
        else:
            # No plate to solve against: alpha * lin(colour) (the Over is then approximate).
            layers[edit_layer] = LayerSpec(torch.cat([c, a], dim=1), kind="colour", encoding="network")
            solve = "alpha_times_linear_colour"
    for name, (layer, kind) in LAYER_INPUTS.items():
        if name in given:
            layers[layer] = LayerSpec(given[name], kind=kind)
    return layers, solve


def expected_outputs(path: str, frames: str) -> list[Path]:
    """Files a save would write from literal inputs, or [] when that depends on the batch."""
    pattern = parse_pattern(path)
    if not pattern.is_sequence:
        return [Path(path)]
    numbers = parse_frames(frames)
    return pattern.paths(numbers) if numbers else []
