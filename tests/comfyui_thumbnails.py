"""Thumbnails of the shipped workflows for ComfyUI's Templates browser.

ComfyUI's frontend shows ``/api/workflow_templates/<pack>/<name>.jpg`` on a
custom node's template card, so every ``example_workflows/<name>.json`` has
a ``<name>.jpg`` beside it: the graph's input next to its result (the
composite layer of its EXR output), drawn from a headless run of
``examples/<name>.json`` in the repository root (outputs under ``out/``).

    python tests/comfyui_workflows.py thumbnails [name ...] [--outputs DIR]

(``--outputs``: take the results from a ComfyUI output folder instead.)
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZE = 256
PANEL = 116


def _middle(files: list[Path]) -> Path:
    return sorted(files)[len(files) // 2]


def _files(pattern: str, root: Path = ROOT) -> list[Path]:
    """Files of a path or #### pattern, relative to ``root``."""
    from livelayers.engine.io.sequence import parse_pattern
    p = parse_pattern(str(root / pattern))
    if not p.is_sequence:
        return [Path(p.text)] if Path(p.text).is_file() else []
    return [p.path(f) for f in p.discover()]


def _image(path: Path, layer: str | None = None) -> np.ndarray:
    """(H, W, 3) uint8 sRGB of one file (an EXR layer when given)."""
    from livelayers.engine.errors import CorruptFileError
    from livelayers.engine.io import load_image
    try:
        plate = load_image(str(path), layer=layer)
    except CorruptFileError:  # no such layer (an atlas image): its main colour
        plate = load_image(str(path))
    rgb = plate.rgb[0].clamp(0, 1).permute(1, 2, 0).numpy()
    return (rgb * 255).round().astype(np.uint8)


def _panel(rgb: np.ndarray):
    from PIL import Image
    img = Image.fromarray(rgb)
    scale = PANEL / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    # nearest keeps the toy images' pixels crisp when enlarged
    return img.resize(size, Image.NEAREST if scale >= 1 else Image.LANCZOS)


def thumbnail(title: str, source: np.ndarray, result: np.ndarray, out: Path) -> Path:
    from PIL import Image, ImageDraw
    canvas = Image.new("RGB", (SIZE, SIZE), (34, 36, 40))
    draw = ImageDraw.Draw(canvas)
    draw.text((10, 10), "LiveLayers", fill=(140, 180, 230))
    lines, line = [], ""
    for word in title.split():  # wrap the title to the card
        trial = f"{line} {word}".strip()
        if line and draw.textlength(trial) > SIZE - 20:
            lines.append(line)
            trial = word
        line = trial
    for i, text in enumerate([*lines, line][:2]):
        draw.text((10, 28 + 14 * i), text, fill=(235, 235, 235))
    for i, (label, rgb) in enumerate((("input", source), ("result", result))):
        panel = _panel(rgb)
        x = 8 + i * (PANEL + 8) + (PANEL - panel.width) // 2
        y = 70 + (PANEL - panel.height) // 2
        canvas.paste(panel, (x, y))
        draw.text((8 + i * (PANEL + 8), 70 + PANEL + 8), label, fill=(170, 170, 170))
    canvas.save(out, "JPEG", quality=90)
    return out


def _inputs_and_outputs(graph: dict) -> tuple[str | None, str | None]:
    load = next((n["inputs"] for _, n in sorted(graph.items(), key=lambda kv: int(kv[0]))
                 if n["class_type"] == "LL_LoadImage"), None)
    save = next((n["inputs"] for n in graph.values() if n["class_type"] == "LL_SaveEXR"), None)
    if save is None:  # a farm train graph: its product is the atlas edit in the trainer's run_dir
        train = next((n["inputs"] for n in graph.values() if n["class_type"] == "LL_Text2LIVEVideo"), {})
        save = {"path": f"{train['run_dir']}/atlas_edit.png"} if train.get("run_dir") else None
    return (load or {}).get("path"), (save or {}).get("path")


def make_thumbnails(names: list[str] | None = None, run: bool = True,
                    outputs: Path = ROOT) -> list[Path]:
    """Write example_workflows/<name>.jpg for ``names`` (default: every workflow).
    ``outputs``: where the graphs' relative output paths were written (the
    repository root for a headless run, or a ComfyUI output folder)."""
    written = []
    workflows = sorted((ROOT / "example_workflows").glob("*.json"))
    for wf in workflows:
        name = wf.stem
        if names and name not in names:
            continue
        graph = json.loads((ROOT / "examples" / f"{name}.json").read_text())
        source, output = _inputs_and_outputs(graph)
        if not source or not output:
            print(f"{name}: no LL_LoadImage path or LL_SaveEXR; skipped")
            continue
        if run and not _files(output, outputs):
            subprocess.run([sys.executable, "-m", "livelayers", "run", f"examples/{name}.json",
                            "--progress", "none"], cwd=ROOT, check=True)
        title = json.loads(wf.read_text()).get("extra", {}).get("livelayers_title", name.replace("_", " "))
        written.append(thumbnail(title, _image(_middle(_files(source))),
                                 _image(_middle(_files(output, outputs)), "composite"),
                                 wf.with_suffix(".jpg")))
    return written
