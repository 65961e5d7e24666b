"""The ComfyUI side of nodes/_runtime.py and LL_LoadImage's input list, with
stand-ins for ComfyUI's modules (fast; tests/test_comfyui.py checks the same
against the real server): progress goes to ComfyUI's ProgressBar with a
preview, ComfyUI's interrupt becomes ``Cancelled`` inside the engine (so a
trainer saves its checkpoint) and leaves the node as ComfyUI's own
InterruptProcessingException."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from livelayers.engine.errors import Cancelled, InputError
from livelayers.nodes import _runtime
from livelayers.nodes import io_nodes


class InterruptProcessingException(Exception):
    pass


@pytest.fixture
def fake_comfy(monkeypatch, tmp_path):
    """comfy.utils / comfy.model_management / folder_paths as ComfyUI has them
    (the hook raises when the interrupt flag is set, and clears it)."""
    state = {"interrupt": False, "updates": []}

    def hook(value, total, preview):
        if state["interrupt"]:
            state["interrupt"] = False
            raise InterruptProcessingException()
        state["updates"].append((value, total, preview))

    class ProgressBar:
        def __init__(self, total):
            self.total = total

        def update_absolute(self, value, total=None, preview=None):
            hook(value, total or self.total, preview)

    mm = types.ModuleType("comfy.model_management")
    mm.InterruptProcessingException = InterruptProcessingException
    mm.processing_interrupted = lambda: state["interrupt"]
    utils = types.ModuleType("comfy.utils")
    utils.ProgressBar = ProgressBar
    comfy = types.ModuleType("comfy")
    comfy.model_management, comfy.utils = mm, utils
    folders = types.ModuleType("folder_paths")
    for kind in ("input", "output", "temp"):
        (tmp_path / kind).mkdir()
        setattr(folders, f"get_{kind}_directory", lambda k=kind: str(tmp_path / k))
    folders.get_annotated_filepath = lambda name: str(tmp_path / "input" / name.split(" [")[0])
    for name, module in (("comfy", comfy), ("comfy.model_management", mm), ("comfy.utils", utils),
                         ("folder_paths", folders)):
        monkeypatch.setitem(sys.modules, name, module)
    state["dir"] = tmp_path
    return state


class _Trainer:
    """A node whose engine call trains: checkpoints on Cancelled, like the real ones."""
    FUNCTION = "run"
    saved: list[int] = []

    def run(self, steps):
        progress = _runtime.progress_for("LL_Fake")
        done = 0
        try:
            for done in range(1, steps + 1):
                info = {"preview": torch.rand(1, 3, 8, 8)} if progress.wants_preview(done) else {}
                progress.update(done, steps, **info)
        except Cancelled:
            self.saved.append(done)
            raise
        return (done,)


def test_progress_reaches_comfyui_with_previews(fake_comfy):
    node = _Trainer()
    run = _runtime.node_function(_Trainer.run)
    assert run(node, 5) == (5,)
    values = [(v, t) for v, t, _ in fake_comfy["updates"]]
    assert values == [(i, 5) for i in range(1, 6)]
    previews = [p for _, _, p in fake_comfy["updates"] if p is not None]
    assert len(previews) == 1  # the first step, then at most one a second
    kind, image, size = previews[0]
    assert kind == "JPEG" and image.size == (8, 8) and size == _runtime.PREVIEW_SIZE


def test_interrupt_saves_the_checkpoint_and_leaves_as_comfyuis_exception(fake_comfy):
    node = _Trainer()
    _Trainer.saved.clear()
    run = _runtime.node_function(_Trainer.run)
    real_hook_updates = fake_comfy["updates"]

    class Stopper(list):  # press Cancel after the third update
        def append(self, item):
            super().append(item)
            if len(self) == 3:
                fake_comfy["interrupt"] = True

    fake_comfy["updates"] = Stopper(real_hook_updates)
    with pytest.raises(InterruptProcessingException) as raised:
        run(node, 10)
    assert isinstance(raised.value.__cause__, Cancelled)
    # Cancel pressed during update 3 is seen by that update's own check: step 3 is saved
    # (pressed between updates, the next update's ProgressBar call raises instead)
    assert _Trainer.saved == [3]


def test_headless_cancel_stays_cancelled():
    from livelayers.engine import progress
    run = _runtime.node_function(_Trainer.run)
    progress.request_stop()
    try:
        with pytest.raises(Cancelled):
            run(_Trainer(), 3)
    finally:
        progress.clear_stop()


def test_every_node_function_carries_the_decorator():
    """Each registered node's FUNCTION method is decorated with
    ``@node_function`` in its own class (nodes/__init__.py wraps nothing)."""
    from livelayers.nodes import NODE_CLASS_MAPPINGS
    missing = [name for name, cls in NODE_CLASS_MAPPINGS.items()
               if not getattr(getattr(cls, cls.FUNCTION), "__ll_node_function__", False)]
    assert missing == [], f"add @node_function above the FUNCTION method of {missing}"


def test_relative_paths_resolve_in_comfyuis_folders(fake_comfy):
    d = fake_comfy["dir"]
    assert _runtime.resolve_path("runs/a", "output") == str(d / "output" / "runs" / "a")
    assert _runtime.resolve_path("/abs/a", "output") == "/abs/a"
    assert _runtime.resolve_path("", "output") == ""
    # ComfyUI's folder annotation picks the folder, whatever the node's default
    assert _runtime.resolve_path("run/e.png [output]", "input") == str(d / "output" / "run" / "e.png")
    assert _runtime.resolve_path("e.png [temp]", "output") == str(d / "temp" / "e.png")


def test_input_list_collapses_sequences(tmp_path):
    for name in ("plate.0001.exr", "plate.0002.exr", "plate.0003.exr", "still.png", "notes.txt",
                 "one_7.png", ".hidden.png", "shot/a.1001.jpg", "shot/a.1002.jpg", ".cache/x.png",
                 "mixed.1.png", "mixed.02.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    choices = io_nodes.input_choices(str(tmp_path))
    assert choices == [io_nodes.PICK_NONE, "mixed.02.png", "mixed.1.png", "one_7.png",
                       "plate.####.exr", "shot/a.####.jpg", "still.png"]
    assert io_nodes.input_choices(None) == [io_nodes.PICK_NONE]


def _png(path, rgba):
    from PIL import Image
    Image.fromarray(rgba).save(path)


def test_load_image_takes_a_picked_file_or_a_path_not_both(fake_comfy):
    d = fake_comfy["dir"] / "input"
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 1], rgba[..., 3] = 255, 128
    _png(d / "picked.png", rgba)
    node = io_nodes.LL_LoadImage()
    image, alpha, plate = node.load("", image="picked.png")
    assert image.shape == (1, 4, 6, 3) and float(image[0, 0, 0, 1]) == 1.0
    assert float(alpha[0, 0, 0]) == pytest.approx(128 / 255)
    image2, _, _ = node.load("picked.png")  # the same file through 'path'
    assert torch.equal(image, image2)
    assert "picked.png" in io_nodes.LL_LoadImage.INPUT_TYPES()["optional"]["image"][0]
    with pytest.raises(InputError, match="input 'image'.*one of them"):
        node.load("picked.png", image="picked.png")
    with pytest.raises(InputError, match="input 'path' is empty and no 'image' is picked"):
        node.load("", image=io_nodes.PICK_NONE)
    with pytest.raises(InputError, match="input 'image'"):
        node.load("", image="missing.png")


def test_animated_preview_writes_one_webp(fake_comfy):
    from PIL import Image
    frames = torch.rand(5, 3, 16, 20)
    ui = _runtime.animated_preview(frames)
    assert ui["animated"] == (True,) and len(ui["images"]) == 1
    entry = ui["images"][0]
    with Image.open(fake_comfy["dir"] / "temp" / entry["filename"]) as im:
        assert im.format == "WEBP" and im.n_frames == 5 and im.size == (20, 16)
    assert _runtime.animated_preview(frames[:1]) == {}
