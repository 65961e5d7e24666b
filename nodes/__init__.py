"""LiveLayers graph nodes (ComfyUI classic contract).

Each module below defines ``NODE_CLASS_MAPPINGS`` and
``NODE_DISPLAY_NAME_MAPPINGS``; this package merges them. Relative imports
only: ComfyUI imports the pack under an absolute-path module name.
"""
from __future__ import annotations

import importlib

from ._runtime import with_autograd

NODE_MODULES = (
    "io_nodes",
    "model_nodes",
    "relevancy_nodes",
    "text2live_nodes",
    "atlas_nodes",
    "diffusion_nodes",
    "regions_nodes",
    "stylise_nodes",
    "video_nodes",
)

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}

for _name in NODE_MODULES:
    _module = importlib.import_module(f".{_name}", __name__)
    for _cls in _module.NODE_CLASS_MAPPINGS.values():
        # ComfyUI runs nodes under torch.inference_mode(); ours need autograd.
        _function = getattr(_cls, _cls.FUNCTION)
        if not getattr(_function, "__ll_autograd__", False):
            setattr(_cls, _cls.FUNCTION, with_autograd(_function))
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(getattr(_module, "NODE_DISPLAY_NAME_MAPPINGS", {}))
