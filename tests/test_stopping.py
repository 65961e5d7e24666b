"""Every long loop honours a stop (issue: a farm's SIGTERM ends a task within a
frame): optical flow, atlas maps, atlas coverage, stylised render, tiled
inference and EXR sequence writes; and end to end, SIGTERM during an extract
or between the frames LL_SaveEXR writes exits 130 with no partial file."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch

from livelayers import __main__ as cli
from livelayers.engine import progress
from livelayers.engine.atlas import flow as flow_mod
from livelayers.engine.atlas import products
from livelayers.engine.atlas.store import Atlas, load_atlas
from livelayers.engine.errors import Cancelled
from livelayers.engine.io import exr
from livelayers.engine.stylise import render as stylise_render
from livelayers.engine.text2live.generator import GeneratorConfig, SkipGenerator, apply_generator
from livelayers.nodes import atlas_nodes as an
from livelayers.toyworld.clips import make_toy_clip


@pytest.fixture(autouse=True)
def clean_stop_flag():
    progress.clear_stop()
    yield
    progress.clear_stop()


def stop_on_call(fn, calls: list):
    """``fn`` that requests a stop the first time it runs (the farm's signal
    arriving during the first iteration) and counts how often it ran."""
    def wrapped(*args, **kwargs):
        calls.append(1)
        out = fn(*args, **kwargs)
        progress.request_stop()
        return out
    return wrapped


@pytest.fixture(scope="module")
def atlas_file(tmp_path_factory):
    clip = make_toy_clip(n_frames=4, height=24, width=32, seed=2)
    path = tmp_path_factory.mktemp("atlas") / "shot.atlas.safetensors"
    an.LL_AtlasDecompose().run(clip.frames.permute(0, 2, 3, 1), steps=3, seed=0, encoding="hash",
                               atlas_path=str(path), masks=clip.masks[:, 0], first_frame=1001,
                               batch=64, device="cpu")
    return path


@pytest.fixture
def atlas(atlas_file):
    return load_atlas(atlas_file)  # a fresh map cache: every frame is evaluated again


def test_flow_stops_after_the_current_frame_pair(monkeypatch):
    calls: list = []
    real = flow_mod.flow_function

    def counting_flow_function(*a, **kw):
        return stop_on_call(real(*a, **kw), calls)
    monkeypatch.setattr(flow_mod, "flow_function", counting_flow_function)
    frames = make_toy_clip(n_frames=6, height=24, width=32, seed=0).frames
    with pytest.raises(Cancelled, match="optical flow"):
        flow_mod.clip_flows(frames)
    assert len(calls) == 2  # forward + backward of pair 0; pairs 1-4 never started


def test_atlas_maps_stop_between_chunks_of_points(atlas):
    calls: list = []
    atlas.fields.alpha = stop_on_call(atlas.fields.alpha, calls)
    with pytest.raises(Cancelled, match="atlas maps"):
        atlas.frame_maps([0, 1, 2, 3], chunk=64)  # 24*32 = 768 points = 12 chunks a frame
    assert len(calls) == 1


def test_atlas_coverage_stops_between_frames(atlas, monkeypatch):
    calls: list = []
    monkeypatch.setattr(atlas, "frame_maps", stop_on_call(atlas.frame_maps, calls))
    with pytest.raises(Cancelled, match="atlas coverage"):
        products.atlas_coverage(atlas, 64)
    assert len(calls) == 1


def test_stylised_render_stops_between_batches(atlas, monkeypatch):
    calls: list = []
    monkeypatch.setattr(stylise_render, "frame_colour", stop_on_call(stylise_render.frame_colour, calls))
    plate = torch.zeros(4, 3, 24, 32)
    with pytest.raises(Cancelled, match="LL_StyliseRender"):
        stylise_render.render_stylised(atlas, [0, 1, 2, 3], plate=plate, batch=1)
    assert len(calls) == 1


def test_tiled_inference_stops_between_tiles():
    torch.manual_seed(0)
    gen = SkipGenerator(GeneratorConfig(scales=2, channels_down=4, channels_up=4, channels_skip=2))
    calls: list = []
    gen.forward = stop_on_call(gen.forward, calls)
    with pytest.raises(Cancelled, match="tiled inference"):
        apply_generator(gen, torch.rand(1, 3, 64, 64), tile=32, overlap=8)  # 3 x 3 tiles
    assert len(calls) == 1


def test_exr_sequence_stops_between_frames_and_keeps_finished_frames_whole(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(exr, "write_layered_exr", stop_on_call(exr.write_layered_exr, calls))
    pattern = tmp_path / "edit.####.exr"
    with pytest.raises(Cancelled, match="EXR sequence"):
        exr.write_exr_sequence(pattern, [1, 2, 3, 4], {"rgba": torch.rand(4, 4, 8, 8)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edit.0001.exr"]  # no temp files
    assert exr.exr_is_complete(tmp_path / "edit.0001.exr")


# ---------------------------------------------------------------- end to end (the CLI)


@pytest.fixture
def cli_env(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in handlers.items():
        signal.signal(s, h)


def extract_graph(tmp_path: Path, atlas_file: Path) -> str:
    graph = {
        "1": {"class_type": "LL_LoadAtlas", "inputs": {"path": str(atlas_file)}},
        "2": {"class_type": "LL_AtlasExtract", "inputs": {"atlas": ["1", 0], "resolution": 64,
                                                           "frames": ""}},
        "3": {"class_type": "LL_SaveEXR", "inputs": {
            "alpha": ["2", 5], "uv_fg": ["2", 3], "uv_bg": ["2", 4],
            "path": str(tmp_path / "out" / "maps.####.exr"), "frames": "1001-1004"}},
    }
    path = tmp_path / "extract.json"
    path.write_text(json.dumps(graph))
    return str(path)


def sigterm_on_first_call(fn, stamps: list, finished: list | None = None):
    def wrapped(*args, **kwargs):
        out = fn(*args, **kwargs)
        if finished is not None:
            finished.append(1)
        if not stamps:
            stamps.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGTERM)  # the farm stops the task here
        return out
    return wrapped


def test_sigterm_during_extract_exits_130_before_any_file(tmp_path, cli_env, atlas_file, monkeypatch, capsys):
    stamps: list = []
    finished: list = []
    monkeypatch.setattr(Atlas, "_evaluate_frame",
                        sigterm_on_first_call(Atlas._evaluate_frame, stamps, finished))
    assert cli.main(["run", extract_graph(tmp_path, atlas_file), "--progress", "none"]) == 130
    elapsed = time.monotonic() - stamps[0]
    assert len(finished) == 1  # frame 1002 stopped at its first chunk; 1003-1004 never began
    assert "stopped" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    # The issue asks for "within a second"; on this toy atlas the stop takes a
    # few ms (one chunk of points). 5 s leaves room for a loaded CI machine.
    assert elapsed < 5.0


def test_sigterm_between_saved_frames_keeps_the_written_ones_whole(tmp_path, cli_env, atlas_file,
                                                                   monkeypatch, capsys):
    stamps: list = []
    monkeypatch.setattr(exr, "write_layered_exr", sigterm_on_first_call(exr.write_layered_exr, stamps))
    assert cli.main(["run", extract_graph(tmp_path, atlas_file), "--progress", "none"]) == 130
    assert time.monotonic() - stamps[0] < 5.0
    assert "stopped" in capsys.readouterr().err
    written = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in written] == ["maps.1001.exr"]
    assert exr.exr_is_complete(written[0])
