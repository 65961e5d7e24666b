"""PySide6 prompt panel for LiveLayers workflows.

``LiveLayersPanel`` is an embeddable QWidget (a DCC's Qt window can host it);
``python -m livelayers panel [graph.json]`` opens it as a standalone app.
The panel only edits the workflow dict and calls ``engine.executor``.
"""
from __future__ import annotations

__all__ = ["LiveLayersPanel"]


def __getattr__(name: str):
    # Lazy: importing the package must not pull in Qt (the CLI lists sub-commands).
    if name == "LiveLayersPanel":
        from .panel import LiveLayersPanel
        return LiveLayersPanel
    raise AttributeError(name)
