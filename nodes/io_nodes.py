"""Image, EXR and compositing nodes (area "io").

LL nodes use MASK = alpha (1 = opaque / edit present). ComfyUI's core
LoadImage returns MASK = 1 - alpha; to hand an LL alpha to core nodes that
expect that convention (JoinImageWithAlpha, inpainting), put an InvertMask
node in between. See docs/nodes-io.md.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from ..engine.errors import CorruptFileError, InputError
from ..engine.io import colour as io_colour
from ..engine.io import (COMPRESSIONS, MissingFramesError, PlateInfo, load_image, over,
                         resolve_files)
from ..engine.io.save import expected_outputs, parse_metadata, save_edit_exr
from ._convert import image_to_nchw, mask_to_n1hw, n1hw_to_mask, nchw_to_image

CATEGORY = "LiveLayers/io"


def _comfy_dir(kind: str) -> str | None:
    """ComfyUI's input/output/temp directory when running inside ComfyUI."""
    try:
        import folder_paths
    except ImportError:
        return None
    return {"input": folder_paths.get_input_directory,
            "output": folder_paths.get_output_directory,
            "temp": folder_paths.get_temp_directory}[kind]()


def _resolve(path: str, kind: str) -> str:
    """Relative paths are relative to ComfyUI's input/output folder inside
    ComfyUI, and to the working directory headless."""
    path = os.path.expanduser(path.strip())
    base = _comfy_dir(kind)
    if base and not os.path.isabs(path):
        return os.path.join(base, path)
    return path


class LL_LoadImage:
    """Load an image or an image sequence (EXR layers, PNG, JPEG, TIFF) into network space."""

    DESCRIPTION = ("Loads a still or a frame sequence (plate.####.exr, plate.%04d.png, plate.@@@@.jpg) "
                   "with colour management into the networks' sRGB space. Returns the colour, the alpha "
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
                     "Relative paths: ComfyUI's input folder (headless: the working directory)."}),
            "frames": ("STRING", {"default": "", "tooltip":
                       "Frames to load, Open Job Description range (1001-1050, 1-9:2, 1,4,7); "
                       "'' = every frame on disk. Ignored for a single file (a still serves every frame)."}),
            "colourspace": (["auto", *io_colour.INPUT_SPACES], {"default": "auto", "tooltip":
                            "Colour space of the files. auto: EXR/HDR/float TIFF = lin_rec709 "
                            "(scene-linear), 8/16-bit PNG/JPEG/TIFF = sRGB (no conversion). raw = no conversion."}),
            "layer": ("STRING", {"default": "", "tooltip":
                      "EXR layer to read (e.g. 'composite' reads composite.R/G/B[/A]); '' = the unprefixed "
                      "R,G,B(,A), else the first layer. The error lists the file's layers."}),
        }}

    @classmethod
    def IS_CHANGED(cls, path, frames="", colourspace="auto", layer=""):
        """Re-run when any file of the sequence changes (size or modification time)."""
        try:
            _, paths, _ = resolve_files(_resolve(path, "input"), frames)
        except Exception:
            return float("nan")  # let load() report the problem
        h = hashlib.sha256()
        for p in paths:
            st = os.stat(p)
            h.update(f"{p}:{st.st_size}:{st.st_mtime_ns};".encode())
        return h.hexdigest()

    def load(self, path, frames="", colourspace="auto", layer=""):
        node = type(self).__name__
        if not isinstance(path, str) or not path.strip():
            raise InputError(node, "path", "is empty", "an image file or a pattern like plate.####.exr")
        space = colourspace if colourspace == "auto" else io_colour.resolve_colourspace(colourspace)
        if space is None:
            raise InputError(node, "colourspace", f"is {colourspace!r}", ", ".join(["auto", *io_colour.INPUT_SPACES]))
        try:
            plate = load_image(_resolve(path, "input"), frames=frames, colourspace=colourspace,
                               layer=layer.strip() or None)
        except MissingFramesError as e:
            raise InputError(node, "frames" if e.missing else "path", str(e),
                             "existing files (check the pattern and the frame range)") from e
        except CorruptFileError as e:
            raise InputError(node, "layer" if "layer" in str(e) and layer.strip() else "path", str(e)) from e
        except ValueError as e:  # bad frame expression or pattern
            raise InputError(node, "frames" if "frame range" in str(e) else "path", str(e)) from e
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


_IMAGE_LAYERS = ("source", "composite", "greenscreen", "uv_fg", "uv_bg", "atlas")
_MASK_LAYERS = ("alpha", "relevancy")


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
                "metadata": ("STRING", {"default": "", "multiline": True, "tooltip":
                             "Extra provenance as a JSON object, stored as livelayers/<key> header attributes."}),
                "edit_prompt": ("STRING", {"default": "", "tooltip":
                                "The text prompt, stored as livelayers/prompt ('' = not stored)."}),
                "seed": ("INT", {"default": -1, "min": -1, "max": 2**63 - 1, "tooltip":
                         "The seed, stored as livelayers/seed (-1 = not stored)."}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    @classmethod
    def LL_OUTPUT_PATHS(cls, **inputs) -> list[str]:
        """Files this node would write for literal ``path`` and ``frames`` inputs
        ([] when the frame numbers come from the batch or the plate)."""
        path = inputs.get("path", "out/edit.####.exr")
        frames = inputs.get("frames", "") or ""
        if not isinstance(path, str) or not isinstance(frames, str):
            return []
        return [str(p) for p in expected_outputs(_resolve(path, "output"), frames)]

    def save(self, path, edit_image=None, edit_alpha=None, source=None, composite=None, alpha=None,
             relevancy=None, greenscreen=None, uv_fg=None, uv_bg=None, atlas=None, plate=None,
             frames="", compression="zip", colourspace="auto", colour_depth="half",
             keep_nonnegative=False, metadata="",
             edit_prompt="", seed=-1, prompt=None, extra_pnginfo=None):
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
        meta = _provenance(parse_metadata(metadata, node), edit_prompt, seed, prompt, extra_pnginfo)
        paths = save_edit_exr(_resolve(path, "output"), tensors, plate=plate, frames=frames,
                              compression=compression, colourspace=colourspace, metadata=meta,
                              keep_nonnegative=bool(keep_nonnegative), colour_depth=colour_depth,
                              node=node)
        text = [str(p) for p in paths]
        return {"ui": {"images": _previews(tensors), "text": text, "written": text},
                "result": ("\n".join(text),)}


def _provenance(meta: dict, edit_prompt: str, seed: int, prompt, extra_pnginfo) -> dict:
    """Metadata JSON + prompt/seed widgets + ComfyUI's hidden workflow."""
    meta = dict(meta)
    if edit_prompt:
        meta.setdefault("prompt", edit_prompt)
    if seed is not None and seed >= 0:
        meta.setdefault("seed", int(seed))
    if prompt is not None:
        meta.setdefault("api_workflow", prompt)
    if isinstance(extra_pnginfo, dict) and "workflow" in extra_pnginfo:
        meta.setdefault("workflow", extra_pnginfo["workflow"])
    return meta


def _previews(tensors: dict[str, torch.Tensor], limit: int = 16) -> list[dict]:
    """PNG previews in ComfyUI's temp folder (none headless)."""
    temp = _comfy_dir("temp")
    if temp is None:
        return []
    if "composite" in tensors:
        shown = tensors["composite"]
    elif "edit_image" in tensors:
        bg = tensors.get("source", torch.full_like(tensors["edit_image"], 0.5))
        shown = over(tensors["edit_image"], tensors["edit_alpha"], bg)
    else:
        shown = next((tensors[k] for k in _IMAGE_LAYERS if k in tensors), None)
    if shown is None:
        return []
    import OpenImageIO as oiio
    entries = []
    stamp = hashlib.sha1(os.urandom(8)).hexdigest()[:10]
    for i, frame in enumerate(shown[:limit]):
        name = f"livelayers_{stamp}_{i:04d}.png"
        pixels = np.ascontiguousarray(frame.clamp(0, 1).permute(1, 2, 0).cpu().numpy())  # display only
        oiio.ImageBuf(pixels).write(str(Path(temp) / name), "uint8")
        entries.append({"filename": name, "subfolder": "", "type": "temp"})
    return entries


NODE_CLASS_MAPPINGS = {"LL_LoadImage": LL_LoadImage, "LL_Composite": LL_Composite, "LL_SaveEXR": LL_SaveEXR}
NODE_DISPLAY_NAME_MAPPINGS = {"LL_LoadImage": "Load Image / Sequence (LiveLayers)",
                              "LL_Composite": "Composite Layer Over (LiveLayers)",
                              "LL_SaveEXR": "Save Layered EXR (LiveLayers)"}
