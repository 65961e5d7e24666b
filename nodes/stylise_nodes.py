"""Text-driven stylisation of a video object in its layered atlas
(Loeschcke et al. 2022): train it once over the clip, render it per frame
(farm chunks). The work is in engine/stylise/; these classes only map
widgets to engine calls. MASK outputs are the layer's alpha (1 = object)."""
from __future__ import annotations

from ..engine.atlas import Atlas
from ..engine.atlas.products import atlas_image, check_resolution
from ..engine.errors import InputError
from ..engine.stylise import StyliseSettings, render_stylised, stylise_or_reuse
from . import _widgets as W
from ._convert import image_to_nchw, n1hw_to_mask, nchw_to_image
from ._runtime import node_function, progress_for, resolve_path

CATEGORY = "LiveLayers/video"
_D = StyliseSettings()
_ALPHA_TIP = ("Alpha of the stylised object layer [B,H,W], 1 = object: the atlas opacity, exactly 0 "
              "below alpha_cutoff (there the composite is the plate bit for bit). Core compositing "
              "nodes expect 1 - alpha: InvertMask first.")
_TERM_TIPS = {
    "global": ("global text: 1 - cos(mean embedding of the views covering the whole object, "
               "global text)"),
    "local": "local text: 1 - cos(mean embedding of the small object views, local text)",
    "temporal": ("temporal triplet: for frames t1 < t2 < t3 the nearer t2 must look more like t1 "
                 "than t3 does (CLIP similarity), weighted by a Gaussian (sigma 5 frames) of t3 - t1"),
    "sparsity": ("sparsity ||(1 - alpha) * colour||: keeps the stylised atlas dark where the frames "
                 "never show it as object"),
}


def _term_inputs() -> dict:
    out = {}
    for term, tip in _TERM_TIPS.items():
        out[f"use_{term}"] = ("BOOLEAN", {"default": True, "tooltip":
                              f"Switch the {tip} term on or off (ablation: see what it does)."})
        out[f"lambda_{term}"] = W.weight(getattr(_D, f"lambda_{term}"), f"Weight of the {tip} term.")
    return out


def _check_atlas(atlas, node: str) -> Atlas:
    if not isinstance(atlas, Atlas):
        raise InputError(node, "atlas", f"is a {type(atlas).__name__}",
                         "LL_ATLAS from LL_AtlasDecompose, LL_LoadAtlas or LL_StyliseVideoObject")
    return atlas


class LL_StyliseVideoObject:
    DESCRIPTION = ("Text-driven stylisation of a video object (Loeschcke et al. 2022): changes the look of "
                   "the atlas's foreground object itself, e.g. global text 'a swan with crocodile skin', "
                   "local text 'crocodile skin'. A copy of the foreground atlas colour is fine-tuned with "
                   "CLIP on crops around the object in batches of frames; the mappings, opacity and "
                   "background stay as decomposed, so the result follows the object through the shot "
                   "and the background is untouched. Returns the stylised atlas image, per frame the "
                   "object layer (colour + alpha) and its composite over the frames, and the stylised "
                   "LL_ATLAS (saved to atlas_path for LL_StyliseRender / LL_AtlasRender farm chunks). "
                   "Each loss term can be switched off. See docs/stylise.md.")
    CATEGORY = CATEGORY
    LL_TRAINS = True  # trains per run: a farm export keeps it out of the chunked render step
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE", "IMAGE", "MASK", "IMAGE", "LL_ATLAS")
    RETURN_NAMES = ("stylised_atlas", "layer", "layer_alpha", "composite", "atlas")
    OUTPUT_TOOLTIPS = (
        "The stylised foreground atlas image [1,Ha,Wa,3] (longer side = resolution).",
        "The stylised object per frame [N,H,W,3], straight colour (0 where the layer is empty).",
        _ALPHA_TIP,
        "The layer over the frames: alpha*colour + (1-alpha)*frame; the frame itself where alpha = 0.",
        "The stylised atlas (its fg atlas is the stylised one, marked 'stylised' in its info): "
        "LL_StyliseRender, LL_AtlasExtract and LL_AtlasRender take it.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "clip": ("LL_CLIP", {"tooltip": "CLIP model from LL_LoadCLIP (the paper: ViT-L/14)."}),
                "atlas": ("LL_ATLAS", {"tooltip": "The clip's decomposition (LL_AtlasDecompose or "
                                                  "LL_LoadAtlas); its foreground is the object to stylise."}),
                "frames": ("IMAGE", {"tooltip": "The plate: every frame the atlas was trained on, in order, "
                                                "at its size (nothing is resized). Composites go over it."}),
                "global_text": ("STRING", {"default": "", "tooltip":
                                "The whole stylised object, e.g. 'a swan with crocodile skin'. Neutral "
                                "prefixes ('a photo of a {}', ...) are added per step."}),
                "local_text": ("STRING", {"default": "", "tooltip":
                               "The look of its surface, seen in small views, e.g. 'crocodile skin'."}),
                "prefixes": ("INT", {"default": _D.prefixes, "min": 0, "max": 8, "step": 4, "tooltip":
                             "How many of the paper's 8 neutral prefixes to draw from each step: 0 (the "
                             "bare texts), 4 or 8 (paper)."}),
                "n_global": ("INT", {"default": _D.n_global, "min": 0, "max": 64, "tooltip":
                             "Global views per frame: crops of 90-100 % of the object box."}),
                "n_local": ("INT", {"default": _D.n_local, "min": 0, "max": 64, "tooltip":
                            "Local views per frame: crops of 10-50 % of the box, each at least a third "
                            "object."}),
                "batch_frames": ("INT", {"default": _D.batch_frames, "min": 1, "max": 64, "tooltip":
                                 "Frames per step (paper: 3, as t1 < t2 < t3 for the temporal term)."}),
                "steps": W.steps(_D.steps, "Training iterations (paper: 2000).", most=1000000),
                "lr": ("FLOAT", {"default": _D.lr, "min": 1e-7, "max": 1.0, "step": 1e-5, "round": False,
                       "tooltip": "Adam learning rate, x0.9 every 200 steps (paper: 1e-4 for an MLP "
                                  "atlas; the toy hash-grid atlases use 3e-2)."}),
                "seed": W.seed("Seed of every random choice (frames, views, prefixes); same seed and "
                               "inputs = same result on the CPU."),
            },
            "optional": {
                **_term_inputs(),
                "margin": ("FLOAT", {"default": _D.margin, "min": 0.0, "max": 2.0, "step": 0.01, "tooltip":
                           "The object box (opacity >= 0.5) grows by this fraction of its longer side "
                           "on every side before it is cropped."}),
                "alpha_cutoff": ("FLOAT", {"default": _D.alpha_cutoff, "min": 0.0, "max": 0.5,
                                 "step": 0.001, "round": False, "tooltip":
                                 "Opacity below this is no object: the layer alpha is exactly 0 there "
                                 "and the composite is the plate bit for bit (0 = keep the raw opacity)."}),
                "resolution": ("INT", {"default": 512, "min": 16, "max": 8192, "tooltip":
                               "Longer side of the stylised atlas image output."}),
                "atlas_path": ("STRING", {"default": "", "tooltip":
                               "Where to save the stylised atlas (LL_LoadAtlas reads it in render jobs). "
                               "If it already holds this job's result, training is skipped. '' = not saved."}),
                "run_dir": W.run_dir("Folder for checkpoints; the same inputs and run_dir resume an "
                                     "interrupted run. '' = no checkpoints."),
                "device": W.device("Where the atlas field trains: auto = the GPU when present."),
                "mlp_lr_ratio": ("FLOAT", {"default": _D.mlp_lr_ratio, "min": 0.001, "max": 1.0,
                                 "step": 0.01, "tooltip":
                                 "Hash-grid atlases: the field's small MLP learns at lr x this, its "
                                 "grid tables at lr (as in the decomposition). 1 = one rate for all."}),
            },
        }

    @node_function
    def run(self, clip, atlas, frames, global_text, local_text, prefixes, n_global, n_local,
            batch_frames, steps, lr, seed, use_global=True, lambda_global=_D.lambda_global,
            use_local=True, lambda_local=_D.lambda_local, use_temporal=True,
            lambda_temporal=_D.lambda_temporal, use_sparsity=True, lambda_sparsity=_D.lambda_sparsity,
            mlp_lr_ratio=_D.mlp_lr_ratio, margin=_D.margin, alpha_cutoff=_D.alpha_cutoff,
            resolution=512, atlas_path="", run_dir="", device="auto"):
        node = type(self).__name__
        atlas = _check_atlas(atlas, node)
        plate = image_to_nchw(frames, node, "frames")
        atlas.check_plate(plate, atlas.n_frames, node, "frames")
        check_resolution(resolution, node)
        s = StyliseSettings(
            steps=int(steps), lr=float(lr), batch_frames=int(batch_frames), n_global=int(n_global),
            n_local=int(n_local), prefixes=int(prefixes), margin=float(margin),
            mlp_lr_ratio=float(mlp_lr_ratio),
            alpha_cutoff=float(alpha_cutoff),
            use_global=bool(use_global), lambda_global=float(lambda_global),
            use_local=bool(use_local), lambda_local=float(lambda_local),
            use_temporal=bool(use_temporal), lambda_temporal=float(lambda_temporal),
            use_sparsity=bool(use_sparsity), lambda_sparsity=float(lambda_sparsity))
        done = stylise_or_reuse(clip, atlas, global_text, local_text, s, int(seed),
                                resolve_path(atlas_path, "output") or None, device=device,
                                run_dir=resolve_path(run_dir, "output") or None,
                                progress=progress_for(node), node=node)
        layer, alpha, comp = render_stylised(done, list(range(done.n_frames)), plate, node=node)
        return (nchw_to_image(atlas_image(done, "fg", int(resolution))), nchw_to_image(layer),
                n1hw_to_mask(alpha), nchw_to_image(comp), done)


class LL_StyliseRender:
    DESCRIPTION = ("Renders a stylised atlas (from LL_StyliseVideoObject, or LL_LoadAtlas of its saved "
                   "file) to any frames: the stylised object layer (colour + alpha) and its composite "
                   "over the plate, exactly as the training node renders them. Farm chunks run this "
                   "with --frames. On an ordinary atlas it renders the decomposition's own object layer.")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE", "MASK", "IMAGE")
    RETURN_NAMES = ("layer", "layer_alpha", "composite")
    OUTPUT_TOOLTIPS = ("The stylised object [K,H,W,3], straight colour.", _ALPHA_TIP,
                       "The layer over the plate (the plate itself where the alpha is 0).")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "atlas": ("LL_ATLAS", {"tooltip": "A stylised atlas (LL_StyliseVideoObject or LL_LoadAtlas)."}),
                "frames": ("STRING", {"default": "", "tooltip":
                           "Frame numbers to render, as an Open Job Description range ('1001-1010'); "
                           "empty = every frame. Set by the farm runner's --frames."}),
            },
            "optional": {
                "plate": ("IMAGE", {"tooltip": "The original frames to composite over (all frames of the "
                                               "atlas, or exactly the rendered ones). Default: the "
                                               "background atlas rendered (the clean plate)."}),
                "alpha_cutoff": ("FLOAT", {"default": -1.0, "min": -1.0, "max": 0.5, "step": 0.001,
                                 "round": False, "tooltip":
                                 "Opacity below this is no object (layer alpha exactly 0); -1 = the "
                                 "cut-off the atlas was stylised with."}),
            },
        }

    @node_function
    def run(self, atlas, frames="", plate=None, alpha_cutoff=-1.0):
        node = type(self).__name__
        atlas = _check_atlas(atlas, node)
        indices = atlas.indices(frames, node)
        p = atlas.plate_for(None if plate is None else image_to_nchw(plate, node, "plate"), indices)
        cut = None if alpha_cutoff < 0 else float(alpha_cutoff)
        layer, alpha, comp = render_stylised(atlas, indices, p, cutoff=cut, node=node)
        return (nchw_to_image(layer), n1hw_to_mask(alpha), nchw_to_image(comp))


NODE_CLASS_MAPPINGS = {
    "LL_StyliseVideoObject": LL_StyliseVideoObject,
    "LL_StyliseRender": LL_StyliseRender,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "LL_StyliseVideoObject": "Stylise Video Object (text, atlas)",
    "LL_StyliseRender": "Stylise Render (stylised atlas to frames)",
}
