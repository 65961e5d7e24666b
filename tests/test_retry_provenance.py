"""Retrying a run skips a frame only if its header provenance is this job's
(issue 11, "Retrying"): a frame left by another prompt is rendered again and the
log says so; the same job again skips it; which chunk wrote a frame does not matter."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from livelayers.__main__ import main
from livelayers.engine import provenance
from livelayers.engine.io import read_exr_header

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny_graph(tmp_path) -> Path:
    """The demo graph with a few training steps, writing a sequence into tmp_path/out."""
    graph = json.loads((ROOT / "examples" / "demo.json").read_text())
    graph["1"]["inputs"]["path"] = str(ROOT / "examples" / "assets" / "toy_scene.png")
    graph["3"]["inputs"].update(steps=3, views=2)
    graph["4"]["inputs"].update(path=str(tmp_path / "out" / "edit.####.exr"), frames="",
                                edit_prompt="")
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(graph))
    return path


def _run(capsys, graph, *extra) -> str:
    assert main(["run", str(graph), "--progress", "none", *extra]) == 0
    return capsys.readouterr().err


def _stamp(files):
    return [(f.stat().st_mtime_ns, f.stat().st_ino) for f in files]


def test_stale_frames_are_rendered_again_current_ones_skipped(tiny_graph, tmp_path, capsys,
                                                             one_thread):
    files = [tmp_path / "out" / f"edit.{f:04d}.exr" for f in (1, 2, 3)]
    _run(capsys, tiny_graph, "--frames", "1-3")
    assert all(read_exr_header(f)["livelayers/prompt"] == "blue circle" for f in files)
    first = _stamp(files)

    # the same job again (and another chunking of it): nothing runs, nothing is rewritten
    err = _run(capsys, tiny_graph, "--frames", "1-3")
    assert "frames 1-3 already written by this job, skipped" in err
    err = _run(capsys, tiny_graph, "--frames", "2-3")
    assert "frames 2-3 already written by this job, skipped" in err
    assert _stamp(files) == first

    # another prompt on the same output: every frame is stale, said so, and rewritten
    err = _run(capsys, tiny_graph, "--frames", "1-3", "--set", "3.prompt=green circle")
    for f in files:
        assert f"{f} was made by a different job" in err, err
    assert "skipped" not in err
    assert all(read_exr_header(f)["livelayers/prompt"] == "green circle" for f in files)
    assert all(a != b for a, b in zip(_stamp(files), first))

    # that job again is current; the first one now finds the frames stale
    err = _run(capsys, tiny_graph, "--frames", "1-3", "--set", "3.prompt=green circle")
    assert "frames 1-3 already written by this job, skipped" in err
    files[1].unlink()                                   # a lost frame: only it is rendered
    second = _stamp([files[0], files[2]])
    err = _run(capsys, tiny_graph, "--frames", "1-3", "--set", "3.prompt=green circle")
    assert "frames 1,3 already written by this job, skipped" in err and files[1].is_file()
    assert _stamp([files[0], files[2]]) == second


def test_output_state_explains_why_a_file_is_not_current(tmp_path):
    """The shared check: frames inputs are ignored, anything else counts."""
    import numpy as np
    import OpenImageIO as oiio
    wf = {"4": {"class_type": "LL_SaveEXR", "inputs": {"path": "e.####.exr", "frames": "1-5",
                                                       "metadata": ""}}}
    path = tmp_path / "e.0001.exr"
    assert provenance.output_state(path, wf) == provenance.MISSING
    spec = oiio.ImageSpec(4, 4, 3, oiio.HALF)
    out = oiio.ImageOutput.create(str(path))
    out.open(str(path), spec)
    out.write_image(np.zeros((4, 4, 3), np.float32))
    out.close()
    assert provenance.output_state(path, wf) == provenance.NO_PROVENANCE
    spec.attribute(provenance.PROVENANCE_KEY,
                   json.dumps({**wf, "4": {**wf["4"], "inputs": {**wf["4"]["inputs"],
                                                                 "frames": "1"}}}))
    out = oiio.ImageOutput.create(str(path))
    out.open(str(path), spec)
    out.write_image(np.zeros((4, 4, 3), np.float32))
    out.close()
    assert provenance.output_state(path, wf) == provenance.CURRENT   # chunk 1 of 1-5: same job
    other = {"4": {**wf["4"], "inputs": {**wf["4"]["inputs"], "metadata": '{"shot": 2}'}}}
    assert provenance.output_state(path, other) == provenance.STALE
    path.write_bytes(path.read_bytes()[:40])                         # truncated
    assert provenance.output_state(path, wf) == provenance.INCOMPLETE
