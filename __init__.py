"""LiveLayers: text-driven RGBA edit layers for images and video.

This file is the ComfyUI entry point (ComfyUI imports ``<pack>/__init__.py``
under an absolute-path module name, so everything here is imported
relatively) and the top of the ``livelayers`` package when pip-installed.

The node registry is loaded on first access (PEP 562): ComfyUI's
``hasattr(module, "NODE_CLASS_MAPPINGS")`` triggers it, while
``python -m livelayers --help`` and the engine stay free of node imports.
"""
__version__ = "0.1.0"
WEB_DIRECTORY = None

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "__version__"]


def __getattr__(name):
    if name in ("NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"):
        from . import nodes
        return getattr(nodes, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
