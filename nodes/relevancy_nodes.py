"""LL_Relevancy: a text-driven soft matte from CLIP relevancy (Chefer et al.)."""
from __future__ import annotations

from ..engine.errors import InputError
from ..engine.relevancy import relevancy_map
from ._convert import image_to_nchw, n1hw_to_mask
from ._runtime import node_function, progress_for

NODE = "LL_Relevancy"


class LL_Relevancy:
    DESCRIPTION = ("Where in the image CLIP sees the text: a soft matte in [0,1] (1 = most "
                   "relevant), per frame, at the image's resolution (the whole frame is squashed "
                   "to CLIP's square input, so every pixel gets a value). Use as a rough mask, "
                   "or as Text2LIVE's bootstrap target.")
    CATEGORY = "LiveLayers/relevancy"
    FUNCTION = "run"
    RETURN_TYPES = ("MASK",)
    RETURN_NAMES = ("relevancy",)
    OUTPUT_TOOLTIPS = ("Relevancy in [0,1], min-max normalised per frame (MASK, 1 = relevant). "
                       "Feed core nodes that expect 1 = area to edit directly.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "clip": ("LL_CLIP", {"tooltip": "A CLIP handle from LL_LoadCLIP."}),
            "image": ("IMAGE", {"tooltip": "Images or video frames [B,H,W,C]; alpha is ignored."}),
            "text": ("STRING", {"default": "a red circle", "multiline": False, "tooltip":
                     "What to find, e.g. 'the cake' or 'a red circle'."}),
            "negative_text": ("STRING", {"default": "", "tooltip":
                              "Optional text whose relevancy is subtracted (what the two texts "
                              "share cancels out). Empty = none."}),
            "blocks": (["last", "all", "custom"], {"default": "last", "tooltip":
                       "ViT blocks to roll out: 'last' (the paper's choice for big models), 'all' "
                       "(needed on tiny models such as toy-clip), or 'custom' (use custom_blocks)."}),
            "custom_blocks": ("STRING", {"default": "", "tooltip":
                              "For blocks=custom: comma-separated 0-based block indices, negative "
                              "from the end (e.g. '10' = Text2LIVE's block 11 of ViT-B/32)."}),
        }}

    @node_function
    def run(self, clip, image, text, negative_text="", blocks="last", custom_blocks=""):
        if not hasattr(clip, "image_forward"):
            raise InputError(NODE, "clip", f"is a {type(clip).__name__}", "an LL_CLIP from LL_LoadCLIP")
        if blocks not in ("last", "all", "custom"):
            raise InputError(NODE, "blocks", f"is '{blocks}'", "last, all, custom")
        if blocks == "custom":
            if not custom_blocks.strip():
                raise InputError(NODE, "custom_blocks", "is empty while blocks=custom",
                                 f"comma-separated indices 0..{clip.n_blocks - 1}")
            choice, name = custom_blocks, "custom_blocks"
        else:
            choice, name = blocks, "blocks"
        x = image_to_nchw(image, NODE)
        try:
            m = relevancy_map(clip, x, text, blocks=choice, negative_text=negative_text or None,
                              progress=progress_for(NODE), node=NODE)
        except InputError as e:
            if e.input_name == "blocks" and name != "blocks":
                raise InputError(NODE, name, e.problem, e.allowed) from e
            raise
        return (n1hw_to_mask(m),)


NODE_CLASS_MAPPINGS = {"LL_Relevancy": LL_Relevancy}
NODE_DISPLAY_NAME_MAPPINGS = {"LL_Relevancy": "Relevancy Matte (LiveLayers)"}
