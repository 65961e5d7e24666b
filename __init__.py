"""LiveLayers: text-driven RGBA edit layers for images and video.

This file is the ComfyUI entry point (ComfyUI imports ``<pack>/__init__.py``
under an absolute-path module name, so everything here is imported
relatively) and the top of the ``livelayers`` package when pip-installed.
"""
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__version__ = "0.1.0"
WEB_DIRECTORY = None

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "__version__"]
