"""Text2LIVE video node: a text-driven RGBA edit of one layer of a clip's
neural layered atlas, trained on the frames (the paper's video method). The
work is in engine/text2live/video.py; this class only maps widgets to the
engine call. Render the atlas edit with LL_AtlasRender (any frame range,
farm chunks from the saved files)."""
from __future__ import annotations

from pathlib import Path

from ..engine.device import PRECISIONS
from ..engine.errors import InputError
from ..engine.text2live.settings import DISTANCES, RELEVANCY_BLOCKS, VIDEO_LAYERS, VideoSettings
from ..engine.text2live.video import EDIT_FILE, GENERATOR_FILE, render_video, train_text2live_video
from . import _widgets as W
from ._convert import image_to_nchw, mask_to_n1hw, n1hw_to_mask, nchw_to_image
from ._runtime import node_function, progress_for, resolve_path

CATEGORY = "LiveLayers/video"
_D = VideoSettings()


class LL_Text2LIVEVideo:
    DESCRIPTION = ("Text2LIVE for video (Bar-Tal et al. 2022): trains a generator on one layer of the "
                   "clip's neural layered atlas (fg = the object, bg = the scene) so that its RGBA edit, "
                   "mapped into the frames through the atlas UVs, makes the frames match the prompt under "
                   "CLIP. Each step sees a centre frame and its neighbours at +-2 (a crop around the "
                   "object), runs the generator on the matching atlas crop and judges the frames; the ROI "
                   "text's relevancy on every frame guides the alpha early on. Because the edit lives on "
                   "the atlas it is the same on every frame. Returns the atlas edit (colour + alpha; wire "
                   "it into LL_AtlasRender's fg_edit or bg_edit), the generator and a rendered preview "
                   "frame. With run_dir it writes generator.safetensors and atlas_edit.png (16-bit RGBA) "
                   "for farm render chunks; the same inputs and run_dir resume. See docs/video.md.")
    CATEGORY = CATEGORY
    LL_TRAINS = True  # trains per run: a farm export keeps it out of the chunked render step
    FUNCTION = "run"
    OUTPUT_NODE = True   # a farm train graph may end here: its products are the run_dir files
    RETURN_TYPES = ("IMAGE", "MASK", "LL_GENERATOR", "IMAGE")
    RETURN_NAMES = ("atlas_edit", "atlas_edit_alpha", "generator", "preview")
    OUTPUT_TOOLTIPS = (
        "The edit on the atlas image [1,Ha,Wa,3], straight colour, sRGB: LL_AtlasRender's fg_edit "
        "(layer fg) or bg_edit (layer bg). Its size is the atlas at atlas_resolution.",
        "Alpha of the atlas edit [1,Ha,Wa], 1 = edit: LL_AtlasRender's fg_edit_alpha / bg_edit_alpha.",
        "The trained generator (LL_SaveGenerator writes it; run it on the atlas image with "
        "LL_ApplyGenerator).",
        "The middle frame rendered with the edit over the plate [1,H,W,3].",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "clip": W.text2live_clip(),
                "atlas": ("LL_ATLAS", {"tooltip": "The clip's decomposition (LL_AtlasDecompose or "
                                                  "LL_LoadAtlas); at least 3 frames."}),
                "frames": ("IMAGE", {"tooltip": "The plate: every frame of the atlas [N,H,W,3], at the "
                                                "atlas's frame size (nothing is resized). The ROI "
                                                "relevancy is computed on these."}),
                "prompt": ("STRING", {"default": "", "tooltip":
                           "The edit target text T, e.g. 'blue circle' or 'a golden crown'. Templates such "
                           "as 'a photo of {}.' are applied automatically."}),
                "roi_text": ("STRING", {"default": "", "tooltip":
                             "Text of what is there now (T_ROI), e.g. 'red circle': origin of the direction "
                             "loss and text of the per-frame relevancy bootstrap. '' = neither."}),
                "layer": (list(VIDEO_LAYERS), {"default": _D.layer, "tooltip":
                          "Which atlas layer to edit: fg = the foreground object, bg = the background "
                          "scene (one at a time, as in the paper)."}),
                "steps": W.steps(_D.steps, "Training steps (paper, video: 3000), one space-time crop each."),
                "seed": W.seed("Seed of the generator's init, the crops and every augmentation; same seed = "
                               "same result on the CPU."),
                "atlas_resolution": ("INT", {"default": _D.atlas_resolution, "min": 0, "max": 8192,
                                     "tooltip": "Longer side of the atlas image the generator runs on "
                                                "and the edit is made at; 0 = about 2 atlas pixels per "
                                                "frame pixel (the paper's 2000-px UV grid at 768x432). "
                                                "Use the same value in LL_AtlasExtract for STMaps."}),
                "views": ("INT", {"default": _D.views, "min": 1, "max": 64, "tooltip":
                          "CLIP views per loss and per frame of a crop (paper, video: 6)."}),
            },
            "optional": {
                "screen_prompt": W.screen_prompt(),
                "bootstrap_masks": ("MASK", {"tooltip":
                                    "Optional [N,H,W] masks (1 = edit here), one per frame; replace the "
                                    "relevancy maps as the bootstrap target."}),
                "run_dir": W.run_dir("Folder for checkpoint.pt, generator.safetensors and atlas_edit.png "
                                     "(the file farm render graphs load). The same inputs and folder "
                                     "resume. '' = no files. Relative: ComfyUI's output folder (headless: "
                                     "the working directory)."),
                "device": W.device("auto = the CLIP model's device."),
                "precision": (list(PRECISIONS), {"default": _D.precision, "tooltip":
                              "Generator arithmetic: auto = bf16/fp16 autocast on CUDA, fp32 on the CPU."}),
                "lambda_structure": W.weight(_D.lambda_structure, "Weight of the structure (token "
                                             "self-similarity) loss (paper, video: 3)."),
                "lambda_sparsity": W.weight(_D.lambda_sparsity, "Weight of the alpha sparsity regulariser "
                                            "on the atlas edit (paper, video: 0.1)."),
                "lambda_screen": W.lambda_screen(_D),
                **W.bootstrap_inputs(_D, "frame alpha"),
                "box_margin": ("INT", {"default": _D.box_margin, "min": 0, "max": 4096, "tooltip":
                               "fg crops: frame pixels added around the object (opacity >= 0.95); "
                               "paper: 30 at 768x432."}),
                "box_min_size": ("INT", {"default": _D.box_min_size, "min": 1, "max": 8192, "tooltip":
                                 "fg crops: at least this many frame pixels a side (paper: 129); larger "
                                 "than the frame = whole frames."}),
                "whole_every": ("INT", {"default": _D.whole_every, "min": 1, "max": 100000, "tooltip":
                                "The whole atlas (and whole frames) every N steps (paper: 75)."}),
                "frame_example": ("BOOLEAN", {"default": _D.frame_example, "tooltip":
                                  "Also run the generator directly on one frame crop per step, judged by "
                                  "the same losses, as the official code's 4th example (on: as the paper; "
                                  "off: about a quarter less time per step)."}),
                **W.generator_inputs(_D.generator),
            },
        }

    @node_function
    def run(self, clip, atlas, frames, prompt, roi_text, layer, steps, seed, atlas_resolution, views,
            screen_prompt="", bootstrap_masks=None, run_dir="", device="auto",
            precision=_D.precision, lambda_structure=_D.lambda_structure,
            lambda_sparsity=_D.lambda_sparsity, lambda_screen=_D.lambda_screen,
            bootstrap_weight=_D.bootstrap_weight, bootstrap_steps=_D.bootstrap_steps,
            relevancy_blocks=_D.relevancy_blocks, distance=_D.distance, box_margin=_D.box_margin,
            box_min_size=_D.box_min_size, whole_every=_D.whole_every, frame_example=_D.frame_example,
            generator_scales=_D.generator.scales, generator_channels=_D.generator.channels_down):
        node = type(self).__name__
        plate = image_to_nchw(frames, node, "frames")
        for name, value, allowed in (("layer", layer, VIDEO_LAYERS),
                                     ("relevancy_blocks", relevancy_blocks, RELEVANCY_BLOCKS),
                                     ("distance", distance, DISTANCES), ("precision", precision, PRECISIONS),
                                     ("device", device, W.DEVICES)):
            if value not in allowed:
                raise InputError(node, name, f"is {value!r}", " | ".join(allowed))
        if atlas_resolution != 0 and not 16 <= atlas_resolution <= 8192:
            raise InputError(node, "atlas_resolution", f"is {atlas_resolution}", "0 (auto) or 16..8192")
        masks = None
        if bootstrap_masks is not None:
            masks = mask_to_n1hw(bootstrap_masks, node, "bootstrap_masks", size=tuple(plate.shape[-2:]))
        settings = VideoSettings(
            steps=int(steps), layer=layer, views=int(views), atlas_resolution=int(atlas_resolution),
            lambda_structure=lambda_structure, lambda_sparsity=lambda_sparsity,
            lambda_screen=lambda_screen, bootstrap_weight=bootstrap_weight,
            bootstrap_steps=int(bootstrap_steps), relevancy_blocks=relevancy_blocks, distance=distance,
            box_margin=int(box_margin), box_min_size=int(box_min_size), whole_every=int(whole_every),
            frame_example=bool(frame_example), device=device, precision=precision,
            generator=W.generator_config(generator_scales, generator_channels))
        folder = resolve_path(run_dir, "output") or None
        result = train_text2live_video(clip, atlas, plate, prompt.strip(), roi_text=roi_text.strip() or None,
                                       screen_text=screen_prompt.strip() or None, bootstrap_masks=masks,
                                       settings=settings, seed=int(seed), run_dir=folder,
                                       progress=progress_for(node), node=node)
        mid = atlas.n_frames // 2
        preview = render_video(atlas, result.edit, layer, [mid], plate=plate[mid:mid + 1], node=node)[2]
        written = [str(Path(folder) / GENERATOR_FILE), str(Path(folder) / EDIT_FILE)] if folder else []
        outputs = (nchw_to_image(result.edit.rgb), n1hw_to_mask(result.edit.alpha),
                   result.generator.cpu(), nchw_to_image(preview.clamp(0, 1)))
        return {"ui": {"text": written}, "result": outputs}


NODE_CLASS_MAPPINGS = {"LL_Text2LIVEVideo": LL_Text2LIVEVideo}
NODE_DISPLAY_NAME_MAPPINGS = {"LL_Text2LIVEVideo": "Text2LIVE video edit layer (LiveLayers)"}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "LL_Text2LIVEVideo"]
