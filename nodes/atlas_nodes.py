"""Neural layered atlas nodes: decompose a clip, load a saved atlas, extract
atlas images / STMaps, render atlas edits to frames. The work is in
engine/atlas/; these classes only convert widgets and tensors."""
from __future__ import annotations

from pathlib import Path

import torch

from ..engine.atlas import ENCODINGS, AtlasSettings, decompose_or_reuse, load_atlas
from ..engine.atlas.flow import FLOW_METHODS
from ..engine.atlas.products import check_resolution, extract
from ..engine.atlas.render import Edit, render_edit
from ..engine.errors import InputError
from . import _widgets as W
from ._convert import image_to_nchw, mask_to_n1hw, n1hw_to_mask, nchw_to_image
from ._runtime import node_function, progress_for, resolve_path

CATEGORY = "LiveLayers/atlas"
FRAMES_TIP = ("Frame numbers to output, as an Open Job Description range ('1001-1010', "
              "'1-9:2', '1,4,7'); empty = every frame of the atlas. Set by the farm runner's --frames.")


class LL_AtlasDecompose:
    DESCRIPTION = ("Neural layered atlas decomposition of a clip: learns a foreground and a "
                   "background atlas, per-pixel UV mappings and an opacity (NLA objective; "
                   "fast hash-grid fields by default). The opacity is bootstrapped by masks, "
                   "or, with no masks, by naming the object (object_text + clip: per-frame CLIP "
                   "relevancy as a soft target). Saves the atlas to atlas_path so that "
                   "render jobs can load it; a second run with the same inputs just loads it.")
    CATEGORY = CATEGORY
    LL_TRAINS = True  # trains per run: a farm export keeps it out of the chunked render step
    FUNCTION = "run"
    RETURN_TYPES = ("LL_ATLAS",)
    RETURN_NAMES = ("atlas",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "frames": ("IMAGE", {"tooltip": "The clip, in order (batch = frames, at least 2)."}),
            "steps": ("INT", {"default": 1500, "min": 1, "max": 1000000,
                              "tooltip": "Training iterations (random pixel batches)."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2 ** 31 - 1,
                             "tooltip": "Seed: the same seed and inputs give the same atlas on the CPU."}),
            "encoding": (list(ENCODINGS), {"default": "hash",
                         "tooltip": "hash = multi-resolution hash grids (fast); positional = "
                                    "the original NLA positional-encoding MLPs (slow, for comparison)."}),
            "atlas_path": ("STRING", {"default": "atlas/shot.atlas.safetensors",
                           "tooltip": "Where to save the atlas file (render jobs load it with "
                                      "LL_LoadAtlas). Empty = keep it in memory only. Relative: "
                                      "ComfyUI's output folder (headless: the working directory)."}),
        }, "optional": {
            "masks": ("MASK", {"tooltip": "Optional foreground masks per frame (1 = object), e.g. "
                                          "painted or from a segmentation node; bootstrap the opacity. "
                                          "When given they win over object_text."}),
            "object_text": ("STRING", {"default": "", "tooltip":
                            "Name the foreground object instead of giving masks, e.g. 'the red "
                            "circle': each frame's CLIP relevancy of this text bootstraps the "
                            "opacity as a soft target (needs clip). Ignored when masks are given. "
                            "Empty = no text."}),
            "clip": ("LL_CLIP", {"tooltip": "CLIP model (LL_LoadCLIP) for object_text's relevancy; "
                                            "needed only when object_text is set and no masks."}),
            "relevancy_blocks": ("STRING", {"default": "all", "tooltip":
                                 "ViT blocks rolled out for object_text's relevancy: 'all' (needed on "
                                 "small models such as toy-clip), 'last', or 0-based indices '8,9,10'."}),
            "run_dir": W.run_dir("Folder for checkpoints; the same run_dir resumes an interrupted run. "
                                 "Empty = no checkpoints. Relative: ComfyUI's output folder."),
            "first_frame": ("INT", {"default": 1, "min": -1000000, "max": 10000000,
                                    "tooltip": "Frame number of the first image (the atlas "
                                               "remembers frame numbers for farm chunks)."}),
            "batch": ("INT", {"default": 2048, "min": 16, "max": 1 << 20,
                              "tooltip": "Random pixels per iteration."}),
            "device": W.device("auto = the GPU when present, else the CPU."),
            "flow": (list(FLOW_METHODS), {"default": "dis", "tooltip":
                     "Optical flow for the consistency losses: OpenCV DIS (default), Farneback, "
                     "or torchvision RAFT from local weights (raft_weights)."}),
            "raft_weights": ("STRING", {"default": "", "tooltip":
                             "For flow = raft: a local raft_large/raft_small state dict "
                             "(.safetensors or a torch file); nothing is downloaded."}),
        }}

    @node_function
    def run(self, frames, steps, seed, encoding, atlas_path, masks=None, run_dir="",
            first_frame=1, batch=2048, device="auto", flow="dis", raft_weights="",
            object_text="", clip=None, relevancy_blocks="all"):
        node = "LL_AtlasDecompose"
        x = image_to_nchw(frames, node, "frames")
        m = None if masks is None else mask_to_n1hw(masks, node, "masks", size=tuple(x.shape[-2:]))
        if encoding not in ENCODINGS:
            raise InputError(node, "encoding", f"is {encoding!r}", " or ".join(ENCODINGS))
        settings = AtlasSettings(encoding=encoding, steps=int(steps), batch=int(batch),
                                 flow_method=flow, raft_weights=raft_weights.strip())
        settings.validate(node)
        if m is not None and m.shape[0] != x.shape[0]:
            raise InputError(node, "masks", f"holds {m.shape[0]} masks for {x.shape[0]} frames",
                             "one mask per frame")
        # reuse this job's saved atlas, else decompose and save; relative paths: ComfyUI's output folder
        atlas = decompose_or_reuse(x, m, settings, int(seed), resolve_path(atlas_path, "output") or None,
                                   device=device, run_dir=resolve_path(run_dir, "output") or None,
                                   progress=progress_for(node), node=node,
                                   frame_numbers=list(range(first_frame, first_frame + x.shape[0])),
                                   object_text=object_text, clip=clip,
                                   relevancy_blocks=(relevancy_blocks or "all").strip())
        return (atlas,)


class LL_LoadAtlas:
    DESCRIPTION = "Load an atlas file written by LL_AtlasDecompose (checked: kind, version, digest)."
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("LL_ATLAS",)
    RETURN_NAMES = ("atlas",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"path": ("STRING", {"default": "atlas/shot.atlas.safetensors",
                                                 "tooltip": "Path of a .atlas.safetensors file. Relative: "
                                                            "ComfyUI's output folder (headless: the "
                                                            "working directory)."})}}

    @classmethod
    def IS_CHANGED(cls, path):
        """Reload when the file changes (a new decomposition at the same path)."""
        try:
            st = Path(resolve_path(path, "output")).stat()
            return f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            return float("nan")

    @node_function
    def run(self, path):
        if not path:
            raise InputError("LL_LoadAtlas", "path", "is empty", "the path of an atlas file")
        try:
            return (load_atlas(resolve_path(path, "output")),)
        except FileNotFoundError as e:
            raise InputError("LL_LoadAtlas", "path", f"is {path!r}: no such file",
                             "an atlas file written by LL_AtlasDecompose") from e


class LL_AtlasExtract:
    DESCRIPTION = ("Atlas products: the foreground and background atlas images (paint on "
                   "these), where the foreground atlas is seen, and per frame the UV maps as "
                   "STMaps (R = u, G = v, B = 0; use with Nuke's STMap node on the atlas image) "
                   "and the opacity.")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE", "MASK", "IMAGE", "IMAGE", "IMAGE", "MASK")
    RETURN_NAMES = ("fg_atlas", "fg_alpha", "bg_atlas", "uv_fg", "uv_bg", "alpha")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "atlas": ("LL_ATLAS", {"tooltip": "From LL_AtlasDecompose or LL_LoadAtlas."}),
            "resolution": ("INT", {"default": 512, "min": 16, "max": 8192,
                                   "tooltip": "Longer side of each atlas image in pixels; the "
                                              "STMaps refer to atlas images of this resolution."}),
            "frames": ("STRING", {"default": "", "tooltip": FRAMES_TIP}),
        }}

    @node_function
    def run(self, atlas, resolution, frames=""):
        node = "LL_AtlasExtract"
        check_resolution(resolution, node)
        out = extract(atlas, int(resolution), atlas.indices(frames, node))
        return (nchw_to_image(out["fg_atlas"]), n1hw_to_mask(out["fg_alpha"]),
                nchw_to_image(out["bg_atlas"]), nchw_to_image(out["uv_fg"]),
                nchw_to_image(out["uv_bg"]), n1hw_to_mask(out["alpha"]))


def _edit(image, mask, node: str, name: str) -> Edit | None:
    if image is None:
        if mask is not None:
            raise InputError(node, f"{name}_alpha", f"is connected but '{name}' is not",
                             f"an atlas image in '{name}' with its alpha")
        return None
    rgb = image_to_nchw(image, node, name)
    if rgb.shape[0] != 1:
        raise InputError(node, name, f"holds {rgb.shape[0]} images", "one atlas image")
    if mask is not None:
        alpha = mask_to_n1hw(mask, node, f"{name}_alpha", size=tuple(rgb.shape[-2:]))
    elif image.shape[-1] == 4:  # RGBA image: its own alpha
        alpha = image[..., 3:].permute(0, 3, 1, 2).float()
    else:  # no alpha: the edit covers its whole atlas
        alpha = torch.ones_like(rgb[:, :1])
    return Edit(rgb, alpha)


class LL_AtlasRender:
    DESCRIPTION = ("Render atlas-space edits (RGBA, painted on LL_AtlasExtract's atlas images) "
                   "to the frames: an edit layer (straight colour + alpha MASK, 1 = edit) and "
                   "its composite over the plate. Any frame subset; farm chunks render "
                   "independently from a saved atlas.")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE", "MASK", "IMAGE")
    RETURN_NAMES = ("layer", "layer_alpha", "composite")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "atlas": ("LL_ATLAS", {"tooltip": "From LL_AtlasDecompose or LL_LoadAtlas."}),
            "frames": ("STRING", {"default": "", "tooltip": FRAMES_TIP}),
        }, "optional": {
            "fg_edit": ("IMAGE", {"tooltip": "Edit colour on the foreground atlas image (its size "
                                             "must be an LL_AtlasExtract fg_atlas size)."}),
            "fg_edit_alpha": ("MASK", {"tooltip": "Alpha of fg_edit (1 = paint). Default: the "
                                                  "image's 4th channel, else fully opaque."}),
            "bg_edit": ("IMAGE", {"tooltip": "Edit colour on the background atlas image."}),
            "bg_edit_alpha": ("MASK", {"tooltip": "Alpha of bg_edit (1 = paint)."}),
            "plate": ("IMAGE", {"tooltip": "The original frames to composite over (all frames "
                                           "of the atlas, or exactly the frames rendered). "
                                           "Default: the atlas's reconstruction."}),
        }}

    @node_function
    def run(self, atlas, frames="", fg_edit=None, fg_edit_alpha=None, bg_edit=None,
            bg_edit_alpha=None, plate=None):
        node = "LL_AtlasRender"
        indices = atlas.indices(frames, node)
        fg = _edit(fg_edit, fg_edit_alpha, node, "fg_edit")
        bg = _edit(bg_edit, bg_edit_alpha, node, "bg_edit")
        p = atlas.plate_for(None if plate is None else image_to_nchw(plate, node, "plate"), indices)
        layer, alpha, comp = render_edit(atlas, indices, fg, bg, plate=p, node=node,
                                         progress=progress_for(node))
        return (nchw_to_image(layer), n1hw_to_mask(alpha), nchw_to_image(comp))


NODE_CLASS_MAPPINGS = {
    "LL_AtlasDecompose": LL_AtlasDecompose,
    "LL_LoadAtlas": LL_LoadAtlas,
    "LL_AtlasExtract": LL_AtlasExtract,
    "LL_AtlasRender": LL_AtlasRender,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "LL_AtlasDecompose": "Atlas Decompose (neural layered atlas)",
    "LL_LoadAtlas": "Load Atlas",
    "LL_AtlasExtract": "Atlas Extract (atlas images, STMaps, opacity)",
    "LL_AtlasRender": "Atlas Render Edit",
}
