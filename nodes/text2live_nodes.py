"""Text2LIVE image nodes: train an edit-layer generator from a prompt, apply it,
save and load it. The work is in engine/text2live/; these classes only map
widgets to engine calls. MASK outputs are the edit's alpha (1 = edit present)."""
from __future__ import annotations

import os

import torch

from ..engine.errors import InputError
from ..engine.text2live.generator import SkipGenerator, load_generator, save_generator
from ..engine.text2live.settings import DISTANCES, RELEVANCY_BLOCKS, Text2LIVESettings
from ..engine.text2live.trainer import render, train_text2live
from . import _widgets as W
from ._convert import image_to_nchw, mask_to_n1hw, n1hw_to_mask, nchw_to_image
from ._runtime import node_function, progress_for, resolve_path

CATEGORY = "LiveLayers/text2live"
_D = Text2LIVESettings()

_ALPHA_TIP = ("Alpha of the edit layer [B,H,W], 1 = edit present (LL convention; core compositing "
              "nodes expect 1 - alpha: use InvertMask before JoinImageWithAlpha).")


def _check_generator(generator, node: str) -> SkipGenerator:
    if not isinstance(generator, SkipGenerator):
        raise InputError(node, "generator", f"is a {type(generator).__name__}",
                         "LL_GENERATOR from LL_Text2LIVE or LL_LoadGenerator")
    return generator


def _tile(tile: int, node: str) -> int | None:
    if tile != 0 and tile < 64:
        raise InputError(node, "tile", f"is {tile}", "0 (one pass) or >= 64 pixels")
    return tile or None


class LL_Text2LIVE:
    DESCRIPTION = ("Text2LIVE (Bar-Tal et al. 2022): trains a small generator on this one image so that "
                   "its RGBA edit layer, composited over the image, matches the prompt under CLIP, while "
                   "the rest of the image stays as it is. The ROI text (e.g. 'circle') says where to "
                   "edit: its relevancy map (or the optional mask) guides alpha early on. Returns the "
                   "edit layer (straight colour + alpha), the composite, the layer over a green screen, "
                   "the bootstrap relevancy and the generator (reusable by LL_ApplyGenerator). "
                   "Checkpoints to run_dir; the same inputs and run_dir resume. See docs/text2live.md.")
    CATEGORY = CATEGORY
    LL_TRAINS = True  # trains per run: a farm export keeps it out of the chunked render step
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE", "MASK", "IMAGE", "IMAGE", "MASK", "LL_GENERATOR")
    RETURN_NAMES = ("edit", "alpha", "composite", "greenscreen", "relevancy", "generator")
    OUTPUT_TOOLTIPS = (
        "Edit layer colour [1,H,W,3], straight (not premultiplied), sRGB.",
        _ALPHA_TIP,
        "alpha*edit + (1-alpha)*image, sRGB, at the input's full resolution.",
        "The edit layer over green (0, 177, 64)/255: what the screen loss sees.",
        "Bootstrap target [1,H,W] in [0,1]: relevancy of roi_text (or the given mask); zeros when "
        "bootstrapping is off.",
        "The trained generator; LL_ApplyGenerator runs it on other frames/sizes, LL_SaveGenerator writes it.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "clip": W.text2live_clip(),
                "image": ("IMAGE", {"tooltip": "The image to edit [1,H,W,3] (one image; both sides >= 32)."}),
                "prompt": ("STRING", {"default": "", "multiline": False, "tooltip":
                           "The edit target text T, e.g. 'blue circle' or 'fire'. Templates such as "
                           "'a photo of {}.' are applied automatically."}),
                "roi_text": ("STRING", {"default": "", "tooltip":
                             "Text of the region to edit (T_ROI), e.g. 'circle'. Origin of the direction "
                             "loss and text of the relevancy bootstrap. '' = no direction loss, and no "
                             "bootstrap unless a mask is given."}),
                "steps": W.steps(_D.steps, "Training steps (paper: 1000), one crop per step."),
                "seed": W.seed("Seed of the generator's init and every augmentation; same seed = same "
                               "result on CPU."),
                "resolution": ("INT", {"default": _D.resolution, "min": 0, "max": 8192, "tooltip":
                               "Short side of the image the generator trains on (paper: 512); 0 = the "
                               "input's own size. Outputs are always at the input's full size."}),
            },
            "optional": {
                "screen_prompt": W.screen_prompt(),
                "bootstrap_mask": ("MASK", {"tooltip":
                                   "Optional [1,H,W] mask (1 = edit here) of the image's size; replaces "
                                   "the relevancy map as the bootstrap target."}),
                "views": ("INT", {"default": _D.views, "min": 1, "max": 64, "tooltip":
                          "CLIP views per loss (paper: 16): the whole image plus random augmented crops."}),
                "lambda_comp": W.weight(_D.lambda_comp, "Weight of the composition loss (CLIP + direction)."),
                "lambda_screen": W.lambda_screen(_D),
                "lambda_structure": W.weight(_D.lambda_structure, "Weight of the structure (token "
                                             "self-similarity) loss; higher keeps the layout closer."),
                "lambda_sparsity": W.weight(_D.lambda_sparsity, "Weight of the alpha sparsity regulariser "
                                            "(λ_r); higher = smaller edit area."),
                "lambda_l1": W.weight(_D.lambda_l1, "L1 share of the sparsity term (mean alpha).", 0.001),
                "lambda_l0": W.weight(_D.lambda_l0, "Soft-L0 share of the sparsity term "
                                      "(mean of 2*sigmoid(5*alpha) - 1).", 0.001),
                **W.bootstrap_inputs(_D, "alpha"),
                **W.generator_inputs(_D.generator),
                "run_dir": W.run_dir("Folder for checkpoints and generator.safetensors; running again "
                                     "with the same inputs and folder resumes. '' = no checkpoints. "
                                     "Relative: ComfyUI's output folder (headless: the working directory)."),
                "tile": ("INT", {"default": 0, "min": 0, "max": 16384, "tooltip":
                         "Final full-resolution pass in tiles of this size (>= 64) with feathered "
                         "overlap, when one pass does not fit in memory; 0 = one pass."}),
            },
        }

    @node_function
    def run(self, clip, image, prompt, roi_text, steps, seed, resolution, screen_prompt="",
            bootstrap_mask=None, views=_D.views, lambda_comp=_D.lambda_comp,
            lambda_screen=_D.lambda_screen, lambda_structure=_D.lambda_structure,
            lambda_sparsity=_D.lambda_sparsity, lambda_l1=_D.lambda_l1, lambda_l0=_D.lambda_l0,
            bootstrap_weight=_D.bootstrap_weight, bootstrap_steps=_D.bootstrap_steps,
            relevancy_blocks=_D.relevancy_blocks, distance=_D.distance,
            generator_scales=_D.generator.scales, generator_channels=_D.generator.channels_down,
            run_dir="", tile=0):
        node = type(self).__name__
        if not hasattr(clip, "image_forward"):
            raise InputError(node, "clip", f"is a {type(clip).__name__}", "LL_CLIP from LL_LoadCLIP")
        x = image_to_nchw(image, node, "image")
        if x.shape[0] != 1:
            raise InputError(node, "image", f"has {x.shape[0]} images",
                             "one image (batch 1); render other frames with LL_ApplyGenerator")
        if resolution != 0 and resolution < 32:
            raise InputError(node, "resolution", f"is {resolution}", "0 (the input's size) or >= 32")
        for name, value, allowed in (("relevancy_blocks", relevancy_blocks, RELEVANCY_BLOCKS),
                                     ("distance", distance, DISTANCES)):
            if value not in allowed:
                raise InputError(node, name, f"is {value!r}", " | ".join(allowed))
        mask = None
        if bootstrap_mask is not None:
            mask = mask_to_n1hw(bootstrap_mask, node, "bootstrap_mask", size=tuple(x.shape[-2:]))
            if mask.shape[0] != 1:
                raise InputError(node, "bootstrap_mask", f"has {mask.shape[0]} masks", "one mask (batch 1)")
        tile_px = _tile(tile, node)
        settings = Text2LIVESettings(
            steps=steps, resolution=resolution, views=views, lambda_comp=lambda_comp,
            lambda_screen=lambda_screen, lambda_structure=lambda_structure,
            lambda_sparsity=lambda_sparsity, lambda_l1=lambda_l1, lambda_l0=lambda_l0,
            bootstrap_weight=bootstrap_weight, bootstrap_steps=bootstrap_steps,
            relevancy_blocks=relevancy_blocks, distance=distance,
            generator=W.generator_config(generator_scales, generator_channels))
        result = train_text2live(clip, x, prompt.strip(), roi_text=roi_text.strip() or None,
                                 screen_text=screen_prompt.strip() or None, bootstrap_mask=mask,
                                 settings=settings, seed=seed,
                                 run_dir=resolve_path(run_dir, "output") or None,
                                 progress=progress_for(node), node=node)
        out = render(result.generator, x, tile=tile_px)
        relevancy = result.relevancy if result.relevancy is not None else torch.zeros_like(out["alpha"])
        generator = result.generator.cpu()
        return (nchw_to_image(out["colour"]), n1hw_to_mask(out["alpha"]), nchw_to_image(out["composite"]),
                nchw_to_image(out["greenscreen"]), n1hw_to_mask(relevancy), generator)


class LL_ApplyGenerator:
    DESCRIPTION = ("Runs a trained Text2LIVE generator on images of any size and number (each image in one "
                   "pass, or in feathered tiles): the edit layer and its composite over each image.")
    CATEGORY = CATEGORY
    FUNCTION = "apply"
    RETURN_TYPES = ("IMAGE", "MASK", "IMAGE")
    RETURN_NAMES = ("edit", "alpha", "composite")
    OUTPUT_TOOLTIPS = ("Edit layer colour [B,H,W,3], straight, sRGB.", _ALPHA_TIP,
                       "alpha*edit + (1-alpha)*image, sRGB.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "generator": ("LL_GENERATOR", {"tooltip": "From LL_Text2LIVE or LL_LoadGenerator."}),
                "image": ("IMAGE", {"tooltip": "Images [B,H,W,3], any size, any number of frames."}),
            },
            "optional": {
                "tile": ("INT", {"default": 0, "min": 0, "max": 16384, "tooltip":
                         "Run in tiles of this size (>= 64) with feathered overlap; 0 = one pass per image."}),
            },
        }

    @node_function
    def apply(self, generator, image, tile=0):
        node = type(self).__name__
        gen = _check_generator(generator, node)
        x = image_to_nchw(image, node, "image")
        out = render(gen, x, tile=_tile(tile, node), progress=progress_for(node))
        return nchw_to_image(out["colour"]), n1hw_to_mask(out["alpha"]), nchw_to_image(out["composite"])


class LL_SaveGenerator:
    DESCRIPTION = ("Writes a Text2LIVE generator (weights, BN statistics and shape) to one .safetensors "
                   "file, atomically, for LL_LoadGenerator / a render farm.")
    CATEGORY = CATEGORY
    FUNCTION = "save"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("path",)
    OUTPUT_TOOLTIPS = ("The written file.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "generator": ("LL_GENERATOR", {"tooltip": "From LL_Text2LIVE."}),
            "path": ("STRING", {"default": "text2live/generator.safetensors", "tooltip":
                     "File to write (.safetensors). Relative: ComfyUI's output folder (headless: the "
                     "working directory)."}),
        }}

    @node_function
    def save(self, generator, path):
        node = type(self).__name__
        gen = _check_generator(generator, node)
        if not isinstance(path, str) or not path.strip().endswith(".safetensors"):
            raise InputError(node, "path", f"is {path!r}", "a file name ending in .safetensors")
        written = str(save_generator(gen, resolve_path(path, "output")))
        return {"ui": {"text": [written]}, "result": (written,)}


class LL_LoadGenerator:
    DESCRIPTION = "Reads a Text2LIVE generator written by LL_SaveGenerator or LL_Text2LIVE's run_dir."
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("LL_GENERATOR",)
    RETURN_NAMES = ("generator",)
    OUTPUT_TOOLTIPS = ("The generator, for LL_ApplyGenerator.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "path": ("STRING", {"default": "", "tooltip":
                     "A .safetensors generator file, or a run_dir holding generator.safetensors. "
                     "Relative: ComfyUI's output folder (headless: the working directory)."}),
        }}

    @classmethod
    def IS_CHANGED(cls, path):
        try:
            st = os.stat(cls._file(path))
            return f"{st.st_size}:{st.st_mtime_ns}"
        except (OSError, TypeError):
            return float("nan")

    @staticmethod
    def _file(path: str) -> str:
        p = resolve_path(path, "output")
        return os.path.join(p, "generator.safetensors") if os.path.isdir(p) else p

    @node_function
    def load(self, path):
        node = type(self).__name__
        if not isinstance(path, str) or not path.strip():
            raise InputError(node, "path", "is empty", "a .safetensors generator file or a run_dir")
        file = self._file(path)
        if not os.path.isfile(file):
            raise InputError(node, "path", f"'{file}' does not exist",
                             "a generator file written by LL_SaveGenerator or LL_Text2LIVE's run_dir")
        return (load_generator(file),)


NODE_CLASS_MAPPINGS = {
    "LL_Text2LIVE": LL_Text2LIVE,
    "LL_ApplyGenerator": LL_ApplyGenerator,
    "LL_SaveGenerator": LL_SaveGenerator,
    "LL_LoadGenerator": LL_LoadGenerator,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "LL_Text2LIVE": "Text2LIVE edit layer (LiveLayers)",
    "LL_ApplyGenerator": "Apply Text2LIVE generator (LiveLayers)",
    "LL_SaveGenerator": "Save Text2LIVE generator (LiveLayers)",
    "LL_LoadGenerator": "Load Text2LIVE generator (LiveLayers)",
}
