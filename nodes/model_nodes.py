"""Model loader nodes: LL_LoadCLIP → LL_CLIP handle."""
from __future__ import annotations

from ..engine.device import DEVICES, PRECISIONS
from ..engine.errors import InputError
from ..engine.models.clip import load_clip
from ._runtime import comfy_models_dir, node_function

DEFAULT_CLIP = "toy-clip"


class LL_LoadCLIP:
    DESCRIPTION = ("Load a CLIP model (frozen) for the LiveLayers nodes. Accepts a catalogue id "
                   "(toy-clip, openai-vit-b-32, …), an open_clip name/tag (ViT-B-32/openai), "
                   "hf-hub:org/repo, local-dir:/path or a folder with open_clip_config.json. "
                   "Weights are searched in $LIVELAYERS_MODELS/clip, ComfyUI's models/clip, the "
                   "Hugging Face cache, and downloaded only when not offline.")
    CATEGORY = "LiveLayers/models"
    FUNCTION = "load"
    RETURN_TYPES = ("LL_CLIP",)
    RETURN_NAMES = ("clip",)
    OUTPUT_TOOLTIPS = ("A frozen CLIP handle for Text2LIVE, relevancy, blended diffusion and regions.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("STRING", {"default": DEFAULT_CLIP, "tooltip":
                      "Catalogue id (toy-clip, openai-vit-b-32, openai-vit-b-16), open_clip "
                      "name/tag (ViT-B-32/openai), hf-hub:org/repo, local-dir:/path, or a folder "
                      "holding open_clip_config.json + weights. `livelayers models list` shows ids."}),
            "device": (list(DEVICES), {"default": "auto", "tooltip":
                       "auto = CUDA if present, else MPS, else CPU."}),
            "precision": (list(PRECISIONS), {"default": "auto", "tooltip":
                          "auto = bf16/fp16 autocast on GPU, fp32 on CPU. Weights stay fp32."}),
        }}

    @node_function
    def load(self, model: str, device: str = "auto", precision: str = "auto"):
        spec = (model or "").strip()
        if not spec:
            raise InputError("LL_LoadCLIP", "model", "is empty",
                             "a catalogue id, open_clip name/tag, hf-hub:org/repo or a folder")
        if device not in DEVICES and not str(device).startswith("cuda:"):
            raise InputError("LL_LoadCLIP", "device", f"is '{device}'", ", ".join(DEVICES) + ", cuda:N")
        if precision not in PRECISIONS:
            raise InputError("LL_LoadCLIP", "precision", f"is '{precision}'", ", ".join(PRECISIONS))
        try:
            handle = load_clip(spec, device=device, precision=precision,
                               search_dirs=comfy_models_dir("clip"))
        except ValueError as e:  # bad spec text (ModelNotFoundError passes through as is)
            raise InputError("LL_LoadCLIP", "model", f"is '{spec}': {e}",
                             "a catalogue id, name/tag like ViT-B-32/openai, hf-hub:org/repo, "
                             "local-dir:/path or a folder") from e
        return (handle,)


NODE_CLASS_MAPPINGS = {"LL_LoadCLIP": LL_LoadCLIP}
NODE_DISPLAY_NAME_MAPPINGS = {"LL_LoadCLIP": "Load CLIP (LiveLayers)"}
