"""What the panel reads from a workflow besides its fields, without Qt.

The viewer shows the plate the graph loads (its ``LL_LoadImage``) and the
live matte uses the graph's own CLIP (its ``LL_LoadCLIP``) on that plate,
so both are found by following links upstream from the node that uses them.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..engine.executor import ancestors, is_link
from .fields import MATTE_INPUTS, node_order

PLATE_LOADER = "LL_LoadImage"
CLIP_LOADER = "LL_LoadCLIP"


@dataclass(frozen=True)
class PlateSpec:
    """The literal inputs of an ``LL_LoadImage`` node."""

    node_id: str
    path: str
    frames: str = ""
    colourspace: str = "auto"
    layer: str = ""


@dataclass(frozen=True)
class MatteSpec:
    """Everything the live matte needs: the node and input holding the region
    text, the CLIP model spec and device of the graph, the plate, the blocks."""

    node_id: str
    input_name: str
    model: str
    device: str
    plate: PlateSpec
    blocks: str = "all"


def _ids(workflow: dict) -> list[str]:
    return sorted((str(k) for k in workflow), key=node_order)


def _class(workflow: dict, node_id: str) -> str:
    return str((workflow.get(node_id) or {}).get("class_type", ""))


PICK_NONE = "(use path)"  # LL_LoadImage's 'image' choice meaning "load 'path'"


def _plate(workflow: dict, node_id: str) -> PlateSpec | None:
    inputs = workflow[node_id].get("inputs") or {}
    path = inputs.get("path")
    if not isinstance(path, str) or not path.strip():
        # the file picked (or uploaded) from ComfyUI's input folder
        path = inputs.get("image")
        if not isinstance(path, str) or not path.strip() or path == PICK_NONE:
            return None
    text = lambda k, d: inputs.get(k) if isinstance(inputs.get(k), str) else d  # noqa: E731
    return PlateSpec(node_id, path, text("frames", ""), text("colourspace", "auto"), text("layer", ""))


def edit_node(workflow: dict) -> str | None:
    """The node the artist edits: the first (in id order) with a literal prompt."""
    for nid in _ids(workflow):
        value = ((workflow[nid].get("inputs") or {}).get("prompt"))
        if isinstance(value, str):
            return nid
    return None


def plate_spec(workflow: dict) -> PlateSpec | None:
    """The plate to show: the nearest ``LL_LoadImage`` upstream of the edit node
    (through an ``image``/``frames`` link first), else the first one in the graph."""
    start = edit_node(workflow)
    candidates = ancestors(workflow, start) if start is not None else []
    candidates += [n for n in _ids(workflow) if n not in candidates]
    for nid in candidates:
        if _class(workflow, nid) == PLATE_LOADER:
            spec = _plate(workflow, nid)
            if spec is not None:
                return spec
    return None


def matte_spec(workflow: dict) -> MatteSpec | None:
    """The live matte's recipe from the first node with a region text input
    (``roi_text``) that has an ``LL_LoadCLIP`` and an ``LL_LoadImage`` upstream."""
    for nid in _ids(workflow):
        inputs = workflow[nid].get("inputs") or {}
        for name in MATTE_INPUTS:
            if name not in inputs or is_link(inputs[name]):
                continue
            up = ancestors(workflow, nid)
            clip = next((n for n in up if _class(workflow, n) == CLIP_LOADER), None)
            plate = next((p for p in (_plate(workflow, n) for n in up
                                      if _class(workflow, n) == PLATE_LOADER) if p), None)
            if clip is None or plate is None:
                continue
            clip_inputs = workflow[clip].get("inputs") or {}
            blocks = inputs.get("relevancy_blocks", inputs.get("blocks", "all"))
            return MatteSpec(nid, name, str(clip_inputs.get("model", "toy-clip")),
                             str(clip_inputs.get("device", "auto")), plate,
                             blocks if isinstance(blocks, str) else "all")
    return None


def resolve_input_path(path: str, search_dirs: list[str | Path] = ()) -> str:
    """Where a graph's relative path is found: as given (absolute, or relative to
    the working directory, as the runner reads it), else under each of
    ``search_dirs`` (the graph's folder, a ComfyUI input folder). Patterns
    (``plate.####.png``) are resolved by their folder."""
    path = os.path.expanduser(path.strip())
    if os.path.isabs(path):
        return path
    for base in ("", *[str(d) for d in search_dirs]):
        candidate = os.path.join(base, path) if base else path
        if os.path.isdir(os.path.dirname(candidate) or ".") and (
                os.path.exists(candidate) or _is_pattern(candidate)):
            return candidate
    return path


def _is_pattern(path: str) -> bool:
    return bool(re.search(r"#+|%0?\d*d|@+", os.path.basename(path)))


_FRAME = re.compile(r"(\d+)(?=\.[A-Za-z0-9]+$)")


def frame_of(path: str) -> int | None:
    """The frame number in ``name.1001.exr`` (None when the name has none)."""
    m = _FRAME.search(os.path.basename(path))
    return int(m.group(1)) if m else None


def exr_by_frame(paths: list[str]) -> dict[int | None, str]:
    """Written EXR files keyed by frame number (None for a file without one)."""
    return {frame_of(p): p for p in paths if p.lower().endswith(".exr")}
