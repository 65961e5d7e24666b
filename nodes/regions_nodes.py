"""Learnable edit regions: LL_LoadDINO → LL_DINO, LL_LearnableRegions."""
from __future__ import annotations

from ..engine.device import DEVICES
from ..engine.errors import InputError, LiveLayersError
from ._convert import image_to_nchw, n1hw_to_mask, nchw_to_image
from ._runtime import comfy_models_dir, node_function, progress_for

DEFAULT_DINO = "toy-dino"


class LL_LoadDINO:
    DESCRIPTION = ("Load a DINO ViT (frozen) without torch hub or timm: a catalogue id (toy-dino, "
                   "dino-vitb8), a repo id (facebook/dino-vitb8), local-dir:/path or a folder with "
                   "config.json + model.safetensors (LiveLayers or transformers ViTModel layout), or "
                   "an original DINO .pth file. Used by Learnable Regions for its anchor points.")
    CATEGORY = "LiveLayers/regions"
    FUNCTION = "load"
    RETURN_TYPES = ("LL_DINO",)
    RETURN_NAMES = ("dino",)
    OUTPUT_TOOLTIPS = ("A frozen DINO handle: patch features and CLS attention maps.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("STRING", {"default": DEFAULT_DINO, "tooltip":
                      "Catalogue id (toy-dino, dino-vitb8), repo id facebook/dino-vitb8, "
                      "local-dir:/path, a folder (config.json + model.safetensors) or a DINO .pth file."}),
            "device": (list(DEVICES), {"default": "auto", "tooltip":
                       "auto = CUDA if present, else MPS, else CPU."}),
        }}

    @node_function
    def load(self, model: str, device: str = "auto"):
        from ..engine.models.dino import load_dino
        spec = (model or "").strip()
        if not spec:
            raise InputError("LL_LoadDINO", "model", "is empty",
                             "a catalogue id, repo id, local-dir:/path, a folder or a .pth file")
        if device not in DEVICES and not str(device).startswith("cuda:"):
            raise InputError("LL_LoadDINO", "device", f"is '{device}'", ", ".join(DEVICES) + ", cuda:N")
        try:
            handle = load_dino(spec, device=device, search_dirs=comfy_models_dir("dino"))
        except ValueError as e:  # bad spec text (our own errors pass through as they are)
            if isinstance(e, LiveLayersError):
                raise
            raise InputError("LL_LoadDINO", "model", f"is '{spec}': {e}",
                             "a catalogue id, repo id, local-dir:/path, a folder or a .pth file") from e
        return (handle,)


_REGION_MODELS: dict[str, object] = {}   # spec -> RegionModel, loaded once per process


def _region_model(spec: str, node: str):
    from ..engine.regions import load_region_model
    spec = (spec or "").strip()
    if not spec:
        return None
    if spec not in _REGION_MODELS:
        _REGION_MODELS[spec] = load_region_model(spec, search_dirs=comfy_models_dir("regions"), node=node)
    return _REGION_MODELS[spec]


class LL_LearnableRegions:
    DESCRIPTION = ("Learnable Regions: finds where to edit for a prompt and edits it. DINO (at its own "
                   "working size) gives K anchor points; each gets M square boxes; the editor (blended "
                   "diffusion) runs inside boxes and CLIP scores each edit exactly (cosine + directional + "
                   "structure). mode 'exhaustive' edits all K·M boxes and keeps each anchor's lowest-loss "
                   "box (the quality reference); 'amortised' edits only the region network's top "
                   "proposals_per_anchor boxes per anchor (K·r runs); 'per-image' trains a network on this "
                   "image (the paper). The anchors' picks are ranked by 2·CLIP(text, edit) + CLIP(source, "
                   "edit). The editor-run count is in the progress and in the 'info' output. MASK outputs "
                   "are alpha: 1 = edited (invert them for core nodes that expect LoadImage's 1 − alpha).")
    CATEGORY = "LiveLayers/regions"
    LL_TRAINS = True  # trains per run: a farm export keeps it out of the chunked render step
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE", "MASK", "IMAGE", "MASK", "STRING")
    RETURN_NAMES = ("edited", "box_mask", "layer", "layer_alpha", "info")
    OUTPUT_TOOLTIPS = ("The edited image (best anchor's chosen box).",
                       "The chosen box as a mask (1 inside).",
                       "The edit layer's straight colour.",
                       "The edit layer's alpha (1 = edit present; = the box).",
                       "JSON: mode, editor_runs, box, anchors, choices (e.g. into LL_SaveEXR's metadata).")

    @classmethod
    def INPUT_TYPES(cls):
        from ..engine.regions import MODES, RANKS
        return {"required": {
            "dino": ("LL_DINO", {"tooltip": "From LL_LoadDINO: anchors and region features."}),
            "clip": ("LL_CLIP", {"tooltip": "From LL_LoadCLIP: the losses, guidance and ranking."}),
            "diffusion": ("LL_DIFFUSION", {"tooltip":
                          "From the diffusion loader: the editor run in the boxes (pixel or latent)."}),
            "image": ("IMAGE", {"tooltip": "One image to edit (batch of 1), sides >= 16 pixels."}),
            "prompt": ("STRING", {"default": "a red circle", "multiline": False, "tooltip":
                       "What the edited region should show."}),
            "anchors": ("INT", {"default": 3, "min": 1, "max": 32, "tooltip":
                        "K: number of DINO anchor points tried (paper: 9)."}),
            "boxes_per_anchor": ("INT", {"default": 5, "min": 1, "max": 16, "tooltip":
                                 "M: box sizes per anchor, evenly spaced from smallest_box to "
                                 "largest_box (paper: 7; the toy region model was trained with 7)."}),
            "steps": ("INT", {"default": 30, "min": 0, "max": 2000, "tooltip":
                      "mode 'per-image' only: region-network training steps per anchor (Adam, lr 3e-3)."}),
            "diffusion_steps": ("INT", {"default": 100, "min": 2, "max": 1000, "tooltip":
                                "Diffusion schedule length for each box edit (a quarter is skipped)."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1, "tooltip":
                     "Seeds the diffusion samples, the network init and the Gumbel noise."}),
        }, "optional": {
            "mode": (list(MODES), {"default": "exhaustive", "tooltip":
                     "exhaustive = edit all K·M boxes, keep each anchor's lowest-loss box (the reference; "
                     "no network). amortised = edit only the region model's top proposals_per_anchor boxes "
                     "per anchor (K·r editor runs). per-image = train a region network on this image "
                     "(the paper; starts from the region model when one is given)."}),
            "proposals_per_anchor": ("INT", {"default": 1, "min": 0, "max": 16, "tooltip":
                                     "r: boxes per anchor the editor runs on in amortised / per-image "
                                     "mode (1 or 2 amortised; per-image needs >= 2); 0 = all M. "
                                     "Ignored by exhaustive."}),
            "region_model": ("STRING", {"default": "toy-regions", "tooltip":
                             "Amortised region network: catalogue id (toy-regions), local-dir:/path or a "
                             "folder; it must match the DINO and CLIP it was trained with. Empty = none "
                             "(per-image then trains from scratch). Not used by exhaustive."}),
            "rank": (list(RANKS), {"default": "score", "tooltip":
                     "How the anchors' picks are ranked: score = 2·CLIP(text, edit) + CLIP(source, edit) "
                     "(the paper), loss = the exact objective (uses source_prompt)."}),
            "source_prompt": ("STRING", {"default": "a photo", "tooltip":
                              "Describes the unedited image; reference of the directional loss."}),
            "objective": (["gumbel", "expected", "image"], {"default": "gumbel", "tooltip":
                          "mode 'per-image': how the box choice learns: 'gumbel' = straight-through "
                          "Gumbel sample of the exact per-box losses (default), 'expected' = "
                          "softmax-weighted losses, 'image' = CLIP loss of the blended edit (first-order)."}),
            "smallest_box": ("FLOAT", {"default": 0.2, "min": 0.02, "max": 1.0, "step": 0.01,
                             "tooltip": "Smallest box side, as a fraction of the shorter image side."}),
            "largest_box": ("FLOAT", {"default": 0.8, "min": 0.02, "max": 1.0, "step": 0.01,
                            "tooltip": "Largest box side, as a fraction of the shorter image side."}),
            "samples": ("INT", {"default": 2, "min": 1, "max": 32, "tooltip":
                        "Diffusion samples per box edit; the best-ranked one is used."}),
        }}

    @node_function
    def run(self, dino, clip, diffusion, image, prompt, anchors=3, boxes_per_anchor=5, steps=30,
            diffusion_steps=100, seed=0, source_prompt="a photo", smallest_box=0.2,
            largest_box=0.8, samples=2, objective="gumbel", mode="exhaustive", proposals_per_anchor=1,
            region_model="toy-regions", rank="score"):
        import json

        from ..engine.regions import MODES, box_sizes_for, diffusion_editor, learn_regions, quiet_progress
        node = "LL_LearnableRegions"
        x = image_to_nchw(image, node)
        if x.shape[0] != 1:
            raise InputError(node, "image", f"is a batch of {x.shape[0]}", "a single image (batch 1)")
        if not 0 < smallest_box <= largest_box <= 1:
            raise InputError(node, "smallest_box", f"is {smallest_box} with largest_box {largest_box}",
                             "0 < smallest_box <= largest_box <= 1")
        if mode not in MODES:
            raise InputError(node, "mode", f"is {mode!r}", ", ".join(MODES))
        model = _region_model(region_model, node) if mode != "exhaustive" else None
        progress = progress_for(node)
        # one bar for the whole node: the box edits report to a quiet reporter that stops with it
        editor = diffusion_editor(diffusion, clip, prompt, steps=diffusion_steps, samples=samples,
                                  seed=seed, progress=quiet_progress(progress, node))
        result = learn_regions(dino, clip, editor, x, prompt, K=anchors,
                               box_sizes=box_sizes_for(boxes_per_anchor, smallest_box, largest_box),
                               mode=mode, proposals_per_anchor=proposals_per_anchor, region_model=model,
                               rank=rank, steps=steps, seed=seed, source_prompt=source_prompt,
                               objective=objective, progress=progress, node=node)
        info = json.dumps(result.metadata())
        summary = (f"{result.mode}: {result.editor_runs} editor runs of {result.boxes.shape[0] * result.boxes.shape[1]} "
                   f"proposals; box {list(result.box)}")
        return {"ui": {"text": [summary]},
                "result": (nchw_to_image(result.image), n1hw_to_mask(result.mask),
                           nchw_to_image(result.layer_rgb), n1hw_to_mask(result.layer_alpha), info)}


NODE_CLASS_MAPPINGS = {"LL_LoadDINO": LL_LoadDINO, "LL_LearnableRegions": LL_LearnableRegions}
NODE_DISPLAY_NAME_MAPPINGS = {"LL_LoadDINO": "Load DINO (LiveLayers)",
                              "LL_LearnableRegions": "Learnable Regions (LiveLayers)"}
