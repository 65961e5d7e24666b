"""Where a headless graph's relative file paths point.

Inside ComfyUI a node's relative path is relative to ComfyUI's input or
output folder; headless it is relative to the **project root**: the working
directory, or the folder ``run --root DIR`` names. Farm jobs pass the folder
they were exported from, because a farm task runs in the farm's own session
folder (OpenJD) or wherever the render host starts it (OpenCue).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

ROOT_ENV = "LIVELAYERS_ROOT"


def headless_root() -> str | None:
    """The project root when one was set (``run --root``), else None (the working directory)."""
    root = os.environ.get(ROOT_ENV, "").strip()
    return root or None


@contextlib.contextmanager
def project_root(folder: str | os.PathLike | None) -> Iterator[None]:
    """Resolve relative node paths against ``folder`` inside the block (None: unchanged)."""
    if folder is None:
        yield
        return
    old = os.environ.get(ROOT_ENV)
    os.environ[ROOT_ENV] = str(Path(folder).resolve())
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ROOT_ENV, None)
        else:
            os.environ[ROOT_ENV] = old
