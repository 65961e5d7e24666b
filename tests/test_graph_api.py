"""The Python graph API (livelayers.graph): building, defaults, errors, running, saving.

The graph built in code by examples/wedge_text2live.py must be the shipped
examples/text2live.json, run on the runner's executor (tensors back), and a
saved graph must run unchanged with `python -m livelayers run`, to the same
pixels.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from livelayers.engine import executor
from livelayers.engine.errors import Cancelled
from livelayers.graph import Graph, Output, WorkflowError, widget_defaults
from livelayers.nodes import NODE_CLASS_MAPPINGS

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "text2live.json"
PLATE = ROOT / "examples" / "assets" / "toy_scene.png"
# Tiny training: the plumbing does not depend on how well the edit is trained.
FAST = {"3.steps": 3, "3.views": 2, "3.resolution": 64}


def example_module():
    spec = importlib.util.spec_from_file_location("wedge_text2live",
                                                  ROOT / "examples" / "wedge_text2live.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fast_graph(tmp_path: Path) -> Graph:
    g = example_module().build_graph()
    g.set("1.path", str(PLATE))
    for target, value in FAST.items():
        g.set(target, value)
    g.set("3.run_dir", str(tmp_path / "run"))
    g.set("4.path", str(tmp_path / "out" / "edit.####.exr"))
    return g


def test_graph_built_in_python_equals_the_shipped_example():
    built = example_module().build_graph()
    shipped = json.loads(EXAMPLE.read_text())
    assert built.to_dict() == shipped
    assert Graph.load(EXAMPLE).to_dict() == shipped  # loading changes nothing either
    assert built.validate() == ["2", "1", "3", "4"]  # the runner's order


def test_widget_defaults_are_filled_as_comfyui_does():
    g = Graph()
    plate = g.add("LL_LoadImage", path="a.png")
    clip = g.add("LL_LoadCLIP")
    edit = g.add("LL_Text2LIVE", clip=clip, image=plate[0], title="Edit")  # one-output node as is
    inputs = g.workflow[edit.id]["inputs"]
    # every widget input, required and optional, at its INPUT_TYPES default; links as given
    defaults = widget_defaults(NODE_CLASS_MAPPINGS["LL_Text2LIVE"])
    assert {k: v for k, v in inputs.items() if k not in ("clip", "image")} == defaults
    assert inputs["steps"] == NODE_CLASS_MAPPINGS["LL_Text2LIVE"].INPUT_TYPES()[
        "required"]["steps"][1]["default"]
    assert inputs["clip"] == ["2", 0] and inputs["image"] == ["1", 0]
    assert "bootstrap_mask" not in inputs  # a link input nobody connected stays absent
    assert g.workflow["2"]["inputs"] == {"model": "toy-clip", "device": "auto", "precision": "auto"}
    assert g.workflow[edit.id]["_meta"] == {"title": "Edit"} and "_meta" not in g.workflow["1"]
    assert edit["composite"] == ["3", 2] and isinstance(edit[5], Output)


def test_set_by_id_and_title_and_command_line_text():
    g = example_module().build_graph()
    g.workflow["3"]["_meta"] = {"title": "Edit"}
    g.set("3.prompt", "a blue hat")
    g.set("Edit.steps", 20)
    assert g.get("Edit.prompt") == "a blue hat" and g.workflow["3"]["inputs"]["steps"] == 20
    g.set_text("Edit.seed", "7")
    g.set_text("3.prompt", "1")  # text inputs keep text (the runner's JSON parse would give 1)
    assert g.get("3.seed") == 7 and g.get("3.prompt") == "1"
    g.set_text("3.distance", "cosine")
    assert g.get("3.distance") == "cosine"


def test_errors_are_the_runners():
    """Each mistake, made in code, raises the message the runner gives for the same JSON."""
    def runner_error(edit) -> str:
        wf = json.loads(EXAMPLE.read_text())
        edit(wf)
        with pytest.raises(WorkflowError) as e:
            executor.validate_workflow(wf, NODE_CLASS_MAPPINGS)
        return str(e.value)

    g = example_module().build_graph()
    with pytest.raises(WorkflowError) as e:
        g.set("3.steps", 0)
    assert str(e.value) == runner_error(lambda wf: wf["3"]["inputs"].update(steps=0))
    assert "node 3 (LL_Text2LIVE) input 'steps'" in str(e.value) and "minimum" in str(e.value)
    with pytest.raises(WorkflowError) as e:
        g.set("3.image", g.node("2")[0])  # LL_CLIP into IMAGE
    assert str(e.value) == runner_error(lambda wf: wf["3"]["inputs"].update(image=["2", 0]))
    with pytest.raises(WorkflowError) as e:
        g.set("3.distance", "manhattan")
    assert str(e.value) == runner_error(lambda wf: wf["3"]["inputs"].update(distance="manhattan"))
    with pytest.raises(WorkflowError, match=r"input 'stepz': is not an input of LL_Text2LIVE"):
        g.add("LL_Text2LIVE", stepz=3)
    with pytest.raises(WorkflowError, match="unknown node class 'LL_Nope'"):
        g.add("LL_Nope")
    with pytest.raises(WorkflowError, match="no node with id or title 'Edit'"):
        g.set("Edit.steps", 3)
    lonely = Graph()
    lonely.add("LL_Text2LIVE")  # links missing: reported by the whole-graph check, as the runner
    with pytest.raises(WorkflowError, match=r"node 1 \(LL_Text2LIVE\) input 'clip': required"):
        lonely.validate()
    assert len(g) == 4  # the failed add added nothing


@pytest.mark.slow
def test_run_returns_tensors_and_paths_with_progress(tmp_path, one_thread):
    g = fast_graph(tmp_path)
    seen = []
    result = g.run(progress=lambda step, total, info: seen.append((step, total, info.get("node"))))
    edit, alpha, composite = result[g.node("3")][:3]
    assert edit.shape == (1, 128, 128, 3) and alpha.shape == (1, 128, 128)
    # the node's contract, checked on what came back: composite = alpha*edit + (1-alpha)*image
    image = result[g.node("1")[0]]
    a = alpha[..., None]
    assert torch.allclose(composite, a * edit + (1 - a) * image, atol=1e-5)
    assert result.written == [tmp_path / "out" / "edit.0001.exr"]
    assert result.executed == ["2", "1", "3", "4"]
    steps = [s for s, _, _ in seen]
    assert steps == sorted(steps) and seen[-1][:2] == (1000, 1000)
    assert {"LL_Text2LIVE", "LL_SaveEXR"} <= {n for _, _, n in seen}


@pytest.mark.slow
def test_stop_cancels_before_anything_is_written(tmp_path, one_thread):
    g = fast_graph(tmp_path)
    g.set("3.steps", 1000)
    stop = threading.Event()

    def progress(step, total, info):
        if info.get("node") == "LL_Text2LIVE" and step > 0:
            stop.set()  # the panel's Stop button, pressed during training

    with pytest.raises(Cancelled):
        g.run(progress=progress, stop=stop)
    assert not (tmp_path / "out").exists()
    assert (tmp_path / "run" / "checkpoint.pt").is_file()  # the trainer checkpointed first


@pytest.mark.slow
def test_saved_graph_runs_with_the_cli_to_the_same_pixels(tmp_path, one_thread):
    from livelayers.engine.io import read_exr_layers
    g = fast_graph(tmp_path)
    g.workflow["3"]["_meta"] = {"title": "Edit"}
    py = g.run()
    saved = g.copy()
    saved.set("3.run_dir", str(tmp_path / "run_cli"))
    saved.set("4.path", str(tmp_path / "cli" / "edit.####.exr"))
    path = saved.save(tmp_path / "graph.json")
    data = json.loads(path.read_text())
    assert all(set(node) <= {"class_type", "inputs", "_meta"} for node in data.values())
    assert data["3"]["_meta"] == {"title": "Edit"}
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-m", "livelayers", "run", str(path), "--progress",
                          "none"], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    cli_exr = tmp_path / "cli" / "edit.0001.exr"
    assert str(cli_exr) in run.stdout
    a, b = read_exr_layers(py.written[0]), read_exr_layers(cli_exr)
    assert a.keys() == b.keys()
    for layer in a:  # same executor, same seed: the same pixels, bit for bit
        assert np.array_equal(a[layer], b[layer]), layer


@pytest.mark.slow
def test_documented_api_example_and_run_command(tmp_path, one_thread, capsys):
    """docs/scripting.md's Python block (3 steps instead of 60), then its run command on
    the graph the block saved: the runner rewrites the same pixels."""
    import re
    import shlex

    from livelayers.__main__ import main
    from livelayers.engine.io import read_exr_layers
    doc = (ROOT / "docs" / "scripting.md").read_text()

    def block(marker):
        m = re.search(rf"<!-- {marker} -->\s*```(?:bash|python)?\n(.*?)```", doc, re.S)
        assert m, marker
        return m.group(1)

    (tmp_path / "examples").symlink_to(ROOT / "examples")
    code = block("api").replace("steps=60", "steps=3")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        exec(compile(code, "docs/scripting.md", "exec"), {})
        printed = capsys.readouterr().out
        assert "torch.Size([1, 128, 128, 3])" in printed
        assert "[PosixPath('out/scripted/edit.0001.exr')]" in printed
        assert re.search(r"^1000/1000 LL_SaveEXR$", printed, re.M)
        exr = tmp_path / "out" / "scripted" / "edit.0001.exr"
        before = read_exr_layers(exr)
        saved = json.loads((tmp_path / "out" / "scripted" / "graph.json").read_text())
        assert saved["3"]["_meta"] == {"title": "Edit"} and saved["3"]["inputs"]["seed"] == 1
        (cmd,) = [shlex.split(line) for line in block("run-saved").splitlines() if line]
        exr.unlink()
        assert main(cmd[3:] + ["--progress", "none"]) == 0
    after = read_exr_layers(exr)
    assert all(np.array_equal(before[k], after[k]) for k in before)
