"""PySide6 prompt panel for LiveLayers workflows.

``LiveLayersPanel`` is an embeddable QWidget (``as_dock()`` for a host's
QMainWindow); ``python -m livelayers panel [graph.json]`` opens it as a
standalone app. The panel edits the workflow dict and runs it through a back
end (``ui.backends``: the executor in a QThread, or a ComfyUI server); it
shows the plate, a live matte, the run's previews and the written layers
(``ui.viewer``). See docs/panel.md.
"""
from __future__ import annotations

__all__ = ["LiveLayersPanel"]


def __getattr__(name: str):
    # Lazy: importing the package must not pull in Qt (the CLI lists sub-commands).
    if name == "LiveLayersPanel":
        from .panel import LiveLayersPanel
        return LiveLayersPanel
    raise AttributeError(name)
