"""Where the panel's runs execute: in this process, or on a ComfyUI server.

A back end makes the run thread for one run; both threads have the same
signals (``progressed``, ``preview``, ``succeeded``, ``failed``) and
``request_stop()``, so the panel does not care which it got.
"""
from __future__ import annotations

from pathlib import Path

from .worker import RunThread


class InProcessBackend:
    """The headless executor (``engine.executor.run_workflow``) in a QThread."""

    name = "in-process"

    def describe(self) -> str:
        return "in this process"

    def make_thread(self, workflow: dict, registry: dict, frames: list[int] | None, parent=None):
        return RunThread(workflow, registry, frames=frames, parent=parent)


class ComfyUIBackend:
    """A running ComfyUI server (``url``), which has this pack installed.

    ``download_dir``: where result files are fetched to when the server is
    not on this machine (default: a fresh temporary folder per run).
    ``input_dir``: the server's input folder when it is on this machine, so
    the viewer and the live matte find the plate of a graph whose paths are
    relative to it (as graphs exported from ComfyUI are).
    """

    name = "comfyui"

    def __init__(self, url: str, download_dir: str | Path | None = None,
                 input_dir: str | Path | None = None, timeout: float = 30.0):
        from .comfy import ComfyClient
        self.client = ComfyClient(url, timeout=timeout)
        self.download_dir = download_dir
        self.input_dir = input_dir

    @property
    def url(self) -> str:
        return self.client.url

    def describe(self) -> str:
        return f"on ComfyUI at {self.client.url}"

    def make_thread(self, workflow: dict, registry: dict, frames: list[int] | None, parent=None):
        from ..engine.executor import set_frames, validate_workflow
        from .comfy import ComfyRunThread
        if frames is not None:  # the server has no --frames: set the nodes' inputs here
            workflow = set_frames(workflow, registry, frames)
        try:
            order = validate_workflow(workflow, registry)
        except Exception:  # the server validates too, with its own message
            order = list(workflow)
        return ComfyRunThread(workflow, self.client, order=order, download_dir=self.download_dir,
                              parent=parent)
