"""Image, EXR and compositing nodes (area "io").

LL nodes use MASK = alpha (1 = opaque / edit present). ComfyUI's core
LoadImage returns MASK = 1 - alpha; to hand an LL alpha to core nodes that
expect that convention (JoinImageWithAlpha, inpainting), put an InvertMask
node in between. See docs/nodes-io.md.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import torch

from ..engine.errors import CorruptFileError, InputError
from ..engine.io import colour as io_colour
from ..engine.io import (COMPRESSIONS, MissingFramesError, PlateInfo, load_image, over,
                         resolve_files)
from ..engine.executor import ancestors, is_link
from ..engine.frames import parse_frames
from ..engine.io.preview import preview_frames, write_png8
from ..engine.io.save import (LAYER_INPUTS, LOSSY_COMPRESSIONS, expected_outputs, parse_metadata,
                              save_edit_exr)
from ..engine.io.sequence import parse_pattern
from ._convert import image_to_nchw, mask_to_n1hw, n1hw_to_mask, nchw_to_image
from ._runtime import animated_preview, comfy_dir, node_function, resolve_path

CATEGORY = "LiveLayers/io"


# ---- LL_LoadImage: ComfyUI's input folder as a file list, plus paths and patterns

PICK_NONE = "(use path)"  # the 'image' entry that means: load 'path'
_IMAGE_SUFFIXES = {".exr", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".hdr", ".webp", ".bmp",
                   ".dpx", ".tga"}
_FRAME_NAME = re.compile(r"^(.*?)(\d+)(\.[^.]+)$")
_LIST_LIMIT = 20000  # files looked at: /object_info asks for the list on every page load


def input_choices(folder: str | None) -> list[str]:
    """The image files under ``folder`` (ComfyUI's input folder), relative, with
    numbered frames of one padding collapsed into one ``name.####.ext`` entry
    per sequence; sorted, after ``PICK_NONE``. Hidden folders are skipped."""
    if not folder or not os.path.isdir(folder):
        return [PICK_NONE]
    groups: dict[tuple, list[str]] = {}
    seen = 0
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = os.path.relpath(root, folder)
        for name in files:
            seen += 1
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in _IMAGE_SUFFIXES:
                continue
            m = _FRAME_NAME.match(name)
            key = (rel, m.group(1), len(m.group(2)), m.group(3)) if m else (rel, name)
            groups.setdefault(key, []).append(name)
        if seen > _LIST_LIMIT:
            break
    entries = []
    for key, names in groups.items():
        if len(key) == 4 and len(names) > 1:
            rel, stem, width, ext = key
            names = [f"{stem}{'#' * width}{ext}"]
        entries += [os.path.normpath(os.path.join(key[0], n)) for n in names]
    return [PICK_NONE, *sorted(entries)]


def _source(path: str, image: str, node: str) -> str:
    """What to load: 'path' when given, else the picked 'image' (exactly one of them).
    Both may carry ComfyUI's folder annotation ("x.png [output]"); without one
    a relative name is in the input folder (``_runtime.resolve_path``)."""
    path = path.strip() if isinstance(path, str) else path
    picked = isinstance(image, str) and image.strip() not in ("", PICK_NONE)
    if path and picked:
        raise InputError(node, "image", f"is {image!r} while 'path' is {path!r}",
                         f"one of them: clear 'path' to load the picked file, or set 'image' to {PICK_NONE!r}")
    if picked:
        return resolve_path(image, "input")
    if not isinstance(path, str) or not path:
        raise InputError(node, "path", "is empty and no 'image' is picked",
                         "an image file or a pattern like plate.####.exr, or a file picked/uploaded in 'image'")
    return resolve_path(path, "input")


class LL_LoadImage:
    """Load an image or an image sequence (EXR layers, PNG, JPEG, TIFF) into network space."""

    DESCRIPTION = ("Loads a still or a frame sequence (plate.####.exr, plate.%04d.png, plate.@@@@.jpg) "
                   "with colour management into the networks' sRGB space: type a path or pattern, or pick "
                   "(or upload) a file of ComfyUI's input folder in 'image'. Returns the colour, the alpha "
                   "(1 = opaque; NOT inverted like core LoadImage) and the plate info (frames, windows, "
                   "colour space) for writing results back in register. HDR values above 1 are kept.")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("IMAGE", "MASK", "LL_PLATE")
    RETURN_NAMES = ("image", "alpha", "plate")
    OUTPUT_TOOLTIPS = ("Colour [B,H,W,3], sRGB-encoded, straight (un-premultiplied); one batch element per frame.",
                       "Alpha [B,H,W], 1 = opaque; all ones when the file has no alpha. "
                       "Core LoadImage's mask is 1 - alpha: use InvertMask to convert.",
                       "Plate info: files, frame numbers, display/data windows, source colour space.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "path": ("STRING", {"default": "", "tooltip":
                     "A file, or a sequence pattern: plate.####.exr, plate.%04d.exr, plate.@@@@.png. "
                     "Relative paths: ComfyUI's input folder (headless: the working directory); "
                     "end with ' [output]' to read a file an earlier graph wrote to ComfyUI's output folder. "
                     "Leave empty to load the file picked in 'image'."}),
            "frames": ("STRING", {"default": "", "tooltip":
                       "Frames to load, Open Job Description range (1001-1010, 1-9:2, 1,4,7); "
                       "'' = every frame on disk. Ignored for a single file (a still serves every frame)."}),
            "colourspace": (["auto", *io_colour.INPUT_SPACES], {"default": "auto", "tooltip":
                            "Colour space of the files. auto: EXR/HDR/float TIFF = lin_rec709 "
                            "(scene-linear), 8/16-bit PNG/JPEG/TIFF = sRGB (no conversion). raw = no conversion."}),
            "layer": ("STRING", {"default": "", "tooltip":
                      "EXR layer to read (e.g. 'composite' reads composite.R/G/B[/A]); '' = the unprefixed "
                      "R,G,B(,A), else the first layer. The error lists the file's layers."}),
        }, "optional": {
            "image": (input_choices(comfy_dir("input")), {"default": PICK_NONE, "image_upload": True,
                      "tooltip": "A file of ComfyUI's input folder (numbered frames are listed once, as "
                                 "name.####.ext), or upload one. Used when 'path' is empty; "
                                 f"{PICK_NONE!r} = load 'path'."}),
        }}

    @classmethod
    def IS_CHANGED(cls, path, frames="", colourspace="auto", layer="", image=PICK_NONE):
        """Re-run when any file of the sequence changes (size or modification time)."""
        try:
            _, paths, _ = resolve_files(_source(path, image, cls.__name__), frames)
        except Exception:
            return float("nan")  # let load() report the problem
        h = hashlib.sha256()
        for p in paths:
            st = os.stat(p)
            h.update(f"{p}:{st.st_size}:{st.st_mtime_ns};".encode())
        return h.hexdigest()

    @classmethod
    def LL_VALIDATE_FILES(cls, inputs: dict) -> None:
        """Before any node runs: every frame the range names is on disk (a still
        serves every frame), so a bad range is refused before hours of work."""
        path, image = inputs.get("path", ""), inputs.get("image", PICK_NONE)
        if not isinstance(path, str) or not isinstance(image, str):
            return
        frames = inputs.get("frames", "")
        try:
            resolve_files(_source(path, image, cls.__name__), frames if isinstance(frames, str) else "")
        except MissingFramesError as e:
            what = "path" if path.strip() else "image"
            raise InputError(cls.__name__, "frames" if e.missing else what, str(e),
                             "frames that exist on disk (check the pattern and --frames)") from e
        except ValueError as e:  # a bad frame expression or pattern
            raise InputError(cls.__name__, "frames" if "frame range" in str(e) else "path",
                             str(e)) from e

    @node_function
    def load(self, path, frames="", colourspace="auto", layer="", image=PICK_NONE):
        node = type(self).__name__
        source = _source(path, image, node)
        what = "path" if isinstance(path, str) and path.strip() else "image"
        space = colourspace if colourspace == "auto" else io_colour.resolve_colourspace(colourspace)
        if space is None:
            raise InputError(node, "colourspace", f"is {colourspace!r}", ", ".join(["auto", *io_colour.INPUT_SPACES]))
        try:
            plate = load_image(source, frames=frames, colourspace=colourspace,
                               layer=layer.strip() or None)
        except MissingFramesError as e:
            raise InputError(node, "frames" if e.missing else what, str(e),
                             "existing files (check the pattern and the frame range)") from e
        except CorruptFileError as e:
            raise InputError(node, "layer" if "layer" in str(e) and layer.strip() else what, str(e)) from e
        except ValueError as e:  # bad frame expression or pattern
            raise InputError(node, "frames" if "frame range" in str(e) else what, str(e)) from e
        alpha = plate.alpha if plate.alpha is not None else torch.ones_like(plate.rgb[:, :1])
        return nchw_to_image(plate.rgb), n1hw_to_mask(alpha), plate.info


class LL_Composite:
    """Straight-alpha Over of an edit layer on a background, in network (sRGB) space."""

    DESCRIPTION = ("Composites an edit layer (colour IMAGE + alpha MASK, 1 = edit present) over a "
                   "background: out = alpha*colour + (1-alpha)*background, in sRGB space, as the "
                   "networks do. Batches: each input has batch 1 or N; batch 1 is reused for every frame.")
    CATEGORY = CATEGORY
    FUNCTION = "composite"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("composite",)
    OUTPUT_TOOLTIPS = ("The composite [N,H,W,3], sRGB-encoded.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "layer_image": ("IMAGE", {"tooltip": "Edit colour, straight (not premultiplied), [B,H,W,3]."}),
            "layer_alpha": ("MASK", {"tooltip": "Edit alpha, 1 = edit present (LL convention; invert a core "
                                                "LoadImage mask first)."}),
            "background": ("IMAGE", {"tooltip": "The plate to composite over, same size as the layer."}),
        }}

    @node_function
    def composite(self, layer_image, layer_alpha, background):
        node = type(self).__name__
        colour = image_to_nchw(layer_image, node, "layer_image")
        bg = image_to_nchw(background, node, "background")
        alpha = mask_to_n1hw(layer_alpha, node, "layer_alpha")
        named = {"layer_image": colour, "layer_alpha": alpha, "background": bg}
        _check_sizes(named, node)
        n = _broadcast_batch(named, node)
        out = over(colour.expand(n, -1, -1, -1), alpha.expand(n, -1, -1, -1), bg.expand(n, -1, -1, -1))
        return (nchw_to_image(out),)


def _check_sizes(named: dict[str, torch.Tensor], node: str) -> None:
    first, ref = next(iter(named.items()))
    for name, t in named.items():
        if t.shape[-2:] != ref.shape[-2:]:
            raise InputError(node, name, f"is {t.shape[-1]}x{t.shape[-2]} pixels but '{first}' is "
                             f"{ref.shape[-1]}x{ref.shape[-2]}", "the same size (nothing is resized)")


def _broadcast_batch(named: dict[str, torch.Tensor], node: str) -> int:
    """Batch N shared by all inputs; batch-1 inputs are reused for every element."""
    n = max(t.shape[0] for t in named.values())
    for name, t in named.items():
        if t.shape[0] not in (1, n):
            raise InputError(node, name, f"has batch {t.shape[0]} while another input has {n}",
                             f"batch 1 (reused for every frame) or {n}")
    return n


class LL_SaveEXR:
    """Write edit layers as single-part multi-layer scene-linear EXR, one file per frame."""

    DESCRIPTION = ("Writes one layered EXR per batch element (out/edit.####.exr): the edit in the unprefixed "
                   "RGBA and 'edit' (premultiplied scene-linear; with 'source' connected it is solved so a "
                   "compositor's linear Over reproduces the network's composite exactly), plus any connected "
                   "layer (composite, source, alpha, relevancy, greenscreen, uv_fg, uv_bg, atlas). Colour is "
                   "half, data float32. Provenance goes into livelayers/* header attributes. Writes are "
                   "atomic. See docs/exr.md.")
    CATEGORY = CATEGORY
    FUNCTION = "save"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("paths",)
    OUTPUT_TOOLTIPS = ("The written files, one per line.",)

    @classmethod
    def INPUT_TYPES(cls):
        image = lambda tip: ("IMAGE", {"tooltip": tip})  # noqa: E731
        mask = lambda tip: ("MASK", {"tooltip": tip})  # noqa: E731
        return {
            "required": {
                "path": ("STRING", {"default": "out/edit.####.exr", "tooltip":
                         "Output file or pattern (####, %04d or @@@@ = frame number). Relative paths: "
                         "ComfyUI's output folder (headless: the working directory)."}),
            },
            "optional": {
                "edit_image": image("Edit colour, straight, sRGB [N,H,W,3]; needs edit_alpha. Written "
                                    "premultiplied scene-linear to R,G,B,A and edit.*."),
                "edit_alpha": mask("Edit alpha [N,H,W], 1 = edit present."),
                "source": image("The plate the edit is composited over; also used to solve the edit "
                                "layer so the compositor's linear Over is exact. Layer 'source'."),
                "composite": image("The network's composite. Layer 'composite' (half)."),
                "alpha": mask("A matte to store as data (float32), layer 'alpha' (channel alpha.A)."),
                "relevancy": mask("Relevancy map [N,H,W] in [0,1], layer 'relevancy' (relevancy.Y, float32)."),
                "greenscreen": image("Edit over green screen, layer 'greenscreen' (half)."),
                "uv_fg": image("Foreground atlas UVs (R=u, G=v, B as given), float32 data, layer 'uv_fg'."),
                "uv_bg": image("Background atlas UVs, float32 data, layer 'uv_bg'."),
                "atlas": image("An atlas image of the frames' size and batch; an atlas of another size "
                               "needs its own LL_SaveEXR (one EXR holds one size)."),
                "plate": ("LL_PLATE", {"tooltip": "Plate info from LL_LoadImage: display/data windows, "
                                                  "frame numbers and colour space are carried over."}),
                "frames": ("STRING", {"default": "", "tooltip":
                           "Frame numbers of the batch, OpenJD range (1001-1010); '' = the plate's "
                           "frames, else 1..N."}),
                "compression": (list(COMPRESSIONS), {"default": "zip", "tooltip":
                                "EXR compression. zip/piz/zips/rle/none are lossless; dwaa/dwab are "
                                "lossy and refused when data layers are connected."}),
                "colourspace": (["auto", *io_colour.LINEAR_SPACES], {"default": "auto", "tooltip":
                                "Scene-linear space of the colour layers; auto = the plate's if it is "
                                "linear, else lin_rec709."}),
                "colour_depth": (["half", "float"], {"default": "half", "tooltip":
                                 "Bit depth of the colour layers: half (16-bit float, the VFX norm) or "
                                 "float (32-bit). Data layers (UVs, alpha, relevancy) are always float."}),
                "keep_nonnegative": ("BOOLEAN", {"default": False, "tooltip":
                                     "Raise the edit's alpha minimally so its premultiplied linear colour "
                                     "is never negative (the Over stays exact). Off: negative values kept."}),
                "edit_layer": (["edit", "stylised"], {"default": "edit", "tooltip":
                               "Name of the layer edit_image/edit_alpha go to: 'edit', or 'stylised' for "
                               "LL_StyliseVideoObject's object layer. Either also fills the unprefixed R,G,B,A."}),
                "metadata": ("STRING", {"default": "", "multiline": True, "tooltip":
                             "Extra provenance as a JSON object, stored as livelayers/<key> header attributes."}),
                "edit_prompt": ("STRING", {"default": "", "tooltip":
                                "Deprecated: the prompt, seed and steps are now read from the graph "
                                "that ran (the nodes feeding this one). Used only when the graph names "
                                "no prompt; leave empty."}),
                "seed": ("INT", {"default": -1, "min": -1, "max": 2**63 - 1, "tooltip":
                         "Deprecated: the seed is read from the graph that ran. Used only when "
                         "the graph names no seed; -1 = not stored."}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO", "unique_id": "UNIQUE_ID"},
        }

    #: Inputs that only repeated a value of another node; front ends (the panel) hide them.
    LL_DEPRECATED_INPUTS = {"edit_prompt": "provenance is read from the graph",
                            "seed": "provenance is read from the graph"}

    @classmethod
    def LL_OUTPUT_PATHS(cls, **inputs) -> list[str]:
        """Files this node would write for literal ``path`` and ``frames`` inputs
        ([] when the frame numbers come from the batch or the plate)."""
        path = inputs.get("path", "out/edit.####.exr")
        frames = inputs.get("frames", "") or ""
        if not isinstance(path, str) or not isinstance(frames, str):
            return []
        return [str(p) for p in expected_outputs(resolve_path(path, "output"), frames)]

    @classmethod
    def LL_VALIDATE(cls, inputs: dict, linked: frozenset) -> None:
        """Before any node runs: the path is an .exr file or pattern, several
        frames need a frame token, edit_image and edit_alpha come together, and
        lossy compression is not asked of data layers."""
        node = cls.__name__
        for a, b in (("edit_image", "edit_alpha"), ("edit_alpha", "edit_image")):
            if a in linked and b not in linked:
                raise InputError(node, b, f"is not connected while '{a}' is",
                                 "edit_image and edit_alpha together (straight colour + alpha)")
        compression = inputs.get("compression", "zip")
        data = [k for k in sorted(linked) if LAYER_INPUTS.get(k, ("", ""))[1] == "data"]
        if isinstance(compression, str) and compression.lower() in LOSSY_COMPRESSIONS and data:
            raise InputError(node, "compression", f"is {compression} (lossy) but data layers are "
                             f"connected ({', '.join(data)})",
                             "zip, piz, zips, rle or none when data layers are saved")
        path, frames = inputs.get("path"), inputs.get("frames", "")
        if isinstance(path, str):
            _check_output_path(node, path, frames if isinstance(frames, str) else "")

    @node_function
    def save(self, path, edit_image=None, edit_alpha=None, source=None, composite=None, alpha=None,
             relevancy=None, greenscreen=None, uv_fg=None, uv_bg=None, atlas=None, plate=None,
             frames="", compression="zip", colourspace="auto", colour_depth="half",
             keep_nonnegative=False, metadata="", edit_layer="edit",
             edit_prompt="", seed=-1, prompt=None, extra_pnginfo=None, unique_id=None):
        node = type(self).__name__
        if not isinstance(path, str) or not path.strip():
            raise InputError(node, "path", "is empty", "a file or pattern like out/edit.####.exr")
        if plate is not None and not isinstance(plate, PlateInfo):
            raise InputError(node, "plate", f"is a {type(plate).__name__}", "LL_PLATE from LL_LoadImage")
        images = {"edit_image": edit_image, "source": source, "composite": composite,
                  "greenscreen": greenscreen, "uv_fg": uv_fg, "uv_bg": uv_bg, "atlas": atlas}
        masks = {"edit_alpha": edit_alpha, "alpha": alpha, "relevancy": relevancy}
        tensors = {k: image_to_nchw(v, node, k) for k, v in images.items() if v is not None}
        tensors.update({k: mask_to_n1hw(v, node, k) for k, v in masks.items() if v is not None})
        meta = _provenance(parse_metadata(metadata, node), edit_prompt, seed, prompt, extra_pnginfo,
                           unique_id)
        paths = save_edit_exr(resolve_path(path, "output"), tensors, plate=plate, frames=frames,
                              compression=compression, colourspace=colourspace, metadata=meta,
                              keep_nonnegative=bool(keep_nonnegative), colour_depth=colour_depth,
                              edit_layer=edit_layer, node=node)
        text = [str(p) for p in paths]
        ui = {**_preview_ui(tensors), "text": text, "written": text}
        files = _output_files(paths)
        if files:  # inside ComfyUI: what a client fetches through /view?type=output
            ui["exr"] = files
        return {"ui": ui, "result": ("\n".join(text),)}


def _check_output_path(node: str, path: str, frames: str) -> None:
    """An .exr path or pattern, with a frame token when ``frames`` names several frames."""
    text = path.strip()
    if not text:
        raise InputError(node, "path", "is empty", "a file or pattern like out/edit.####.exr")
    if Path(text).suffix.lower() != ".exr":
        raise InputError(node, "path", f"is {text!r}, which does not end in .exr",
                         "a file or pattern ending in .exr, like out/edit.####.exr")
    try:
        pattern = parse_pattern(text)
        numbers = parse_frames(frames)
    except ValueError as e:
        raise InputError(node, "frames" if "frame range" in str(e) else "path", str(e)) from e
    if numbers and len(numbers) > 1 and not pattern.is_sequence:
        raise InputError(node, "path", f"is {text!r}, which has no frame token, but 'frames' "
                         f"names {len(numbers)} frames ({frames})",
                         "a pattern with #### (or %04d, @@@@) for several frames")


def _output_files(paths) -> list[dict]:
    """ComfyUI's {"filename", "subfolder", "type": "output"} for files under its output folder."""
    out_dir = comfy_dir("output")
    if out_dir is None:
        return []
    entries = []
    root = Path(out_dir).resolve()
    for p in paths:
        try:
            rel = Path(p).resolve().relative_to(root)
        except ValueError:  # written outside the output folder (an absolute path)
            continue
        entries.append({"filename": rel.name, "subfolder": rel.parent.as_posix().strip("."),
                        "type": "output"})
    return entries


#: Inputs whose literal text says what an edit is, stored as livelayers/<name>.
_TEXT_PROVENANCE = ("prompt", "roi_text", "screen_prompt", "negative_prompt", "source_prompt")
#: Model loader inputs, stored as livelayers/models.
_MODEL_INPUTS = {"LL_LoadCLIP": "model", "LL_LoadDINO": "model", "LL_LoadDiffusion": "spec"}


def _literal(workflow: dict, value, want: type, hops: int = 4):
    """A literal input value, following links through text/primitive nodes
    (ComfyUI's PrimitiveString* hold theirs in 'value'); None if there is none."""
    while is_link(value) and hops > 0:
        inputs = (workflow.get(str(value[0])) or {}).get("inputs") or {}
        value = next((inputs[k] for k in ("value", "text", "string", "prompt") if k in inputs), None)
        hops -= 1
    ok = isinstance(value, want) and not isinstance(value, bool)
    return value if ok and (want is not str or value.strip()) else None


def graph_provenance(workflow: dict, node_id: str) -> dict:
    """What the graph that ran says about the edit node ``node_id`` saves.

    The nearest upstream node with a ``prompt`` is the edit's node: its
    prompt, roi_text, screen/negative/source prompts, seed and steps are
    returned (seed/steps from the nearest node having them when no node has
    a prompt), with ``edit_node`` ("3 LL_Text2LIVE") and ``models`` (the specs
    of the model loaders upstream).
    """
    upstream = ancestors(workflow, node_id)

    def value(nid, name, want):
        return _literal(workflow, (workflow[nid].get("inputs") or {}).get(name), want)

    source = next((n for n in upstream if value(n, "prompt", str) is not None), None)
    meta: dict = {}
    if source is not None:
        meta["edit_node"] = f"{source} {workflow[source].get('class_type', '')}".strip()
        meta.update({k: value(source, k, str).strip() for k in _TEXT_PROVENANCE
                     if value(source, k, str) is not None})
    for name in ("seed", "steps"):
        holders = ([source] if source is not None else []) + upstream
        found = next((value(n, name, int) for n in holders if value(n, name, int) is not None), None)
        if found is not None:
            meta[name] = int(found)
    models = [value(n, _MODEL_INPUTS[workflow[n].get("class_type")], str) for n in upstream
              if workflow[n].get("class_type") in _MODEL_INPUTS]
    if any(models):
        meta["models"] = [m for m in models if m]
    return meta


def _provenance(meta: dict, edit_prompt: str, seed: int, prompt, extra_pnginfo,
                unique_id=None) -> dict:
    """Metadata JSON, then what the graph that ran says (ComfyUI's hidden PROMPT +
    UNIQUE_ID), then the deprecated edit_prompt/seed copies, then the workflows."""
    meta = dict(meta)
    if isinstance(prompt, dict) and unique_id is not None and str(unique_id) in prompt:
        for k, v in graph_provenance(prompt, str(unique_id)).items():
            meta.setdefault(k, v)
    if edit_prompt:
        meta.setdefault("prompt", edit_prompt)
    if seed is not None and seed >= 0:
        meta.setdefault("seed", int(seed))
    if prompt is not None:
        meta.setdefault("api_workflow", prompt)
    if isinstance(extra_pnginfo, dict) and "workflow" in extra_pnginfo:
        meta.setdefault("workflow", extra_pnginfo["workflow"])
    return meta


def _preview_ui(tensors: dict[str, torch.Tensor]) -> dict:
    """What ComfyUI shows under the node (nothing headless): a sequence plays
    as one animated WEBP of what was saved, a single frame is a PNG."""
    temp = comfy_dir("temp")
    shown = preview_frames(tensors)
    if temp is None or shown is None:
        return {"images": []}
    if shown.shape[0] > 1:
        return animated_preview(shown)
    name = f"livelayers_{os.urandom(5).hex()}.png"
    write_png8(Path(temp) / name, shown[0])
    return {"images": [{"filename": name, "subfolder": "", "type": "temp"}]}


NODE_CLASS_MAPPINGS = {"LL_LoadImage": LL_LoadImage, "LL_Composite": LL_Composite, "LL_SaveEXR": LL_SaveEXR}
NODE_DISPLAY_NAME_MAPPINGS = {"LL_LoadImage": "Load Image / Sequence (LiveLayers)",
                              "LL_Composite": "Composite Layer Over (LiveLayers)",
                              "LL_SaveEXR": "Save Layered EXR (LiveLayers)"}
