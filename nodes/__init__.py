"""LiveLayers graph nodes (ComfyUI classic contract).

Each module below defines ``NODE_CLASS_MAPPINGS`` and
``NODE_DISPLAY_NAME_MAPPINGS``; this package merges them, and does nothing
else to the classes (each node's method carries its own ``@node_function``
decorator, ``_runtime.py``). Relative imports only: ComfyUI imports the
pack under an absolute-path module name. How to add a node:
docs/developer.md.
"""
from __future__ import annotations

import importlib

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
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(getattr(_module, "NODE_DISPLAY_NAME_MAPPINGS", {}))
