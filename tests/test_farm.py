"""Farm job export: Open Job Description template and OpenCue spec."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from livelayers.engine import farm
from livelayers.engine.frames import parse_frames

OPENJD = shutil.which("openjd") or str(Path(sys.executable).parent / "openjd")
HAVE_OPENJD = os.access(OPENJD, os.X_OK)


@pytest.fixture
def graphs(tmp_path):
    """A render graph and a train graph in API format (classes need not exist here)."""
    render = {"1": {"class_type": "LL_Fake", "inputs": {"prompt": "a red hat", "frames": ""}},
              "2": {"class_type": "LL_FakeSave", "inputs": {"image": ["1", 0]}}}
    train = {"7": {"class_type": "LL_FakeTrain", "inputs": {"prompt": "a red hat", "steps": 5}}}
    (tmp_path / "graph.json").write_text(json.dumps(render))
    (tmp_path / "train.json").write_text(json.dumps(train))
    return tmp_path / "graph.json", tmp_path / "train.json"


def _export_openjd(graphs, out, frames="1001-1100", chunk=10, **kw):
    job = farm.make_job(graphs[0], frames, chunk, train_graph=graphs[1], **kw)
    return farm.export_openjd(job, out)


def test_openjd_template_validates_with_chunks_and_dependency(graphs, tmp_path):
    path = _export_openjd(graphs, tmp_path / "job", overrides={"1.prompt": "a blue hat"})
    template = yaml.safe_load(path.read_text())
    assert template["specificationVersion"] == "jobtemplate-2023-09"
    assert template["extensions"] == ["TASK_CHUNKING"]
    steps = {s["name"]: s for s in template["steps"]}
    assert list(steps) == ["train", "render"]
    assert steps["render"]["dependencies"] == [{"dependsOn": "train"}]
    frame = steps["render"]["parameterSpace"]["taskParameterDefinitions"][0]
    assert frame["type"] == "CHUNK[INT]" and frame["range"] == "{{Param.Frames}}"
    assert frame["chunks"]["rangeConstraint"] == "CONTIGUOUS"
    args = steps["render"]["script"]["actions"]["onRun"]["args"]
    assert args[args.index("--frames") + 1] == "{{Task.Param.Frame}}"
    assert args[args.index("--progress") + 1] == "openjd"
    # the override only goes to the graph that has node 1, as its own job parameter
    assert "1.prompt={{Param.Set_1_prompt}}" in args
    assert "--set" not in steps["train"]["script"]["actions"]["onRun"]["args"]
    params = {p["name"]: p for p in template["parameterDefinitions"]}
    assert params["Frames"]["default"] == "1001-1100"          # range passes through
    assert params["ChunkSize"]["default"] == 10
    assert params["Set_1_prompt"]["default"] == "a blue hat"
    assert (path.parent / "graph.json").exists() and (path.parent / "train.json").exists()

    # openjd.model instantiates it; the chunks cover the range exactly, 10 frames each
    job = farm.validate_openjd(template, path.parent)
    chunks = farm.openjd_chunks(job)
    assert len(chunks) == 10 and chunks[0] == "1001-1010" and chunks[-1] == "1091-1100"
    covered = [f for c in chunks for f in parse_frames(c)]
    assert covered == list(range(1001, 1101))
    # other submission values: a stepped range and a different chunk size
    job = farm.validate_openjd(template, path.parent, {"Frames": "1-9:2", "ChunkSize": "2"})
    covered = [f for c in farm.openjd_chunks(job) for f in parse_frames(c)]
    assert covered == [1, 3, 5, 7, 9]
    with pytest.raises(farm.FarmExportError, match="Open Job Description rejected.*ChunkSize"):
        farm.validate_openjd(template, path.parent, {"ChunkSize": "0"})


def test_single_step_job_without_train_graph(graphs, tmp_path):
    job = farm.make_job(graphs[0], "1-5", 2)
    path = farm.export_openjd(job, tmp_path / "job")
    template = yaml.safe_load(path.read_text())
    assert [s["name"] for s in template["steps"]] == ["render"]
    assert "dependencies" not in template["steps"][0]
    assert "TrainWorkflowFile" not in {p["name"] for p in template["parameterDefinitions"]}
    chunks = farm.openjd_chunks(farm.validate_openjd(template, path.parent))
    assert [parse_frames(c) for c in chunks] == [[1, 2], [3, 4], [5]]


@pytest.mark.skipif(not HAVE_OPENJD, reason="openjd-cli not installed")
def test_openjd_check_accepts_the_file(graphs, tmp_path):
    path = _export_openjd(graphs, tmp_path / "job")
    res = subprocess.run([OPENJD, "check", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "passes validation" in res.stdout


@pytest.mark.skipif(not HAVE_OPENJD, reason="openjd-cli not installed")
def test_openjd_run_passes_each_chunk_to_the_command(graphs, tmp_path):
    """`openjd run` executes the template: train once, then one command per chunk.

    A stand-in "python" echoes its arguments, so this checks the command lines
    OpenJD builds (the real runner is exercised by test_openjd_run_real_runner).
    """
    path = _export_openjd(graphs, tmp_path / "job")
    fake = tmp_path / "fakepy"
    fake.write_text('#!/bin/sh\necho "ARGS: $*"\n')
    fake.chmod(0o755)
    res = subprocess.run([OPENJD, "run", str(path), "--step", "render", "--run-dependencies",
                          "-p", f"Python={fake}", "-p", "Frames=1001-1025", "-p", "ChunkSize=10"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = [ln.split("ARGS: ", 1)[1] for ln in res.stdout.splitlines() if "ARGS: " in ln]
    assert "train.json" in lines[0] and "--frames" not in lines[0]   # train first, once
    frames = [ln.split("--frames ")[1].split()[0] for ln in lines[1:]]
    covered = [f for c in frames for f in parse_frames(c)]
    assert covered == list(range(1001, 1026)) and len(frames) == 3
    assert all(len(parse_frames(c)) <= 10 for c in frames)


def test_opencue_spec_contents(graphs, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # nothing may land in the user's home
    job = farm.make_job(graphs[0], "1001-1100", 10, train_graph=graphs[1],
                        overrides={"7.steps": "50"}, name="shot010_hat")
    path = farm.export_opencue(job, tmp_path / "cue")
    root = ET.fromstring(path.read_text().split("?>", 1)[1].split(">", 1)[1])  # drop prolog+doctype
    assert root.tag == "spec"
    assert root.find("job").get("name") == "shot010_hat"
    layers = {ly.get("name"): ly for ly in root.iter("layer")}
    assert list(layers) == ["train", "render"]
    render, train = layers["render"], layers["train"]
    assert render.findtext("range") == "1001-1100" and render.findtext("chunk") == "10"
    cmd = render.findtext("cmd")
    assert "-m livelayers run" in cmd and str((tmp_path / "cue" / "graph.json").resolve()) in cmd
    assert "--frames #FRAME_START#-#FRAME_END#" in cmd
    assert "--set" not in cmd                                  # node 7 is in the train graph
    assert "train.json" in train.findtext("cmd") and "--set 7.steps=50" in train.findtext("cmd")
    assert train.findtext("chunk") == "1" and "-" not in train.findtext("range")  # runs once
    dep = root.find("depends/depend")
    assert dep.get("type") == "LAYER_ON_LAYER"
    assert (dep.findtext("deplayer"), dep.findtext("onlayer")) == ("render", "train")
    assert not (tmp_path / "home").exists()
    import outline
    assert outline.config.get("outline", "session_dir") != str(tmp_path)  # config restored


def test_opencue_range_conversion():
    assert farm.opencue_range([1, 2, 3, 5]) == "1-3,5"
    assert farm.opencue_range([1, 3, 5, 7, 20]) == "1-7x2,20"
    assert farm.opencue_range([4]) == "4"


def test_bad_inputs_give_clear_errors(graphs, tmp_path):
    with pytest.raises(farm.FarmExportError, match=r"--frames: .*'1-x'.*like '1-10'"):
        farm.make_job(graphs[0], "1-x", 10)
    with pytest.raises(farm.FarmExportError, match="needs a frame range"):
        farm.make_job(graphs[0], "", 10)
    with pytest.raises(farm.FarmExportError, match=r"--chunk is 0; allowed: an integer >= 1"):
        farm.make_job(graphs[0], "1-10", 0)
    with pytest.raises(farm.FarmExportError, match=r"--set 9.prompt: no node '9'"):
        farm.make_job(graphs[0], "1-10", 5, overrides={"9.prompt": "x"})
    with pytest.raises(farm.FarmExportError, match="NODE_ID.INPUT=VALUE"):
        farm.parse_overrides(["prompt=a hat"])
    (tmp_path / "ui.json").write_text(json.dumps({"nodes": [], "links": []}))
    with pytest.raises(farm.FarmExportError, match="UI-format"):
        farm.make_job(tmp_path / "ui.json", "1-10", 5)
    # OpenCue would hand a stepped chunk over as '1-9x2', which the runner cannot read
    job = farm.make_job(graphs[0], "1-9:2", 2)
    with pytest.raises(farm.FarmExportError, match="contiguous"):
        farm.export_opencue(job, tmp_path / "cue")


def test_cli_export_job(graphs, tmp_path, capsys):
    """`python -m livelayers export-job …`, through the runner's own argument parser,
    which validates the graph against the real node registry first."""
    from livelayers.__main__ import main
    demo = Path(__file__).resolve().parents[1] / "examples" / "demo.json"
    out = tmp_path / "job"
    # one chunk: the demo's trainer runs once (several chunks are refused: test below)
    argv = ["export-job", str(demo), "--frames", "1-20", "--chunk", "20",
            "--format", "openjd", "--out", str(out), "--set", "3.prompt=a hat"]
    assert main(argv) == 0
    template = yaml.safe_load((out / "template.yaml").read_text())
    assert {p["name"]: p.get("default") for p in template["parameterDefinitions"]}[
        "Set_3_prompt"] == "a hat"
    # a graph with classes this pack does not have is refused before anything is written
    assert main(["export-job", str(graphs[0]), "--frames", "1-20", "--out",
                 str(tmp_path / "bad")]) == 2
    assert "unknown node class 'LL_Fake'" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    assert main(argv[:2] + ["--frames", "1-20:"] + argv[4:]) == 2
    err = capsys.readouterr().err
    assert "export-job: --frames:" in err and "not an Open Job Description range" in err
    assert main(argv[:-4] + ["--format", "opencue", "--out", str(tmp_path / "cue")]) == 0
    assert ET.fromstring((tmp_path / "cue" / "job.xml").read_text().split(">", 2)[2]).tag == "spec"


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_OPENJD, reason="openjd-cli not installed")
def test_openjd_run_real_runner(tmp_path):
    """`openjd run` on an exported job runs the real runner: EXRs appear, progress is reported."""
    from livelayers.nodes import NODE_CLASS_MAPPINGS
    if not {"LL_LoadImage", "LL_SaveEXR"} <= set(NODE_CLASS_MAPPINGS):
        pytest.skip("io nodes not available")
    import numpy as np
    import OpenImageIO as oiio
    for f in (1001, 1002, 1003):
        img = np.full((16, 16, 3), (f - 1000) / 10, np.float32)
        assert oiio.ImageBuf(img).write(str(tmp_path / f"plate.{f}.png"), "uint8")
    workflow = {
        "1": {"class_type": "LL_LoadImage", "inputs": {"path": str(tmp_path / "plate.####.png"),
                                                        "frames": "", "colourspace": "auto",
                                                        "layer": ""}},
        "2": {"class_type": "LL_SaveEXR", "inputs": {"path": str(tmp_path / "out/edit.####.exr"),
                                                      "edit_image": ["1", 0],
                                                      "edit_alpha": ["1", 1], "plate": ["1", 2],
                                                      "frames": ""}}}
    (tmp_path / "graph.json").write_text(json.dumps(workflow))
    job = farm.make_job(tmp_path / "graph.json", "1001-1003", 3, python=sys.executable,
                        registry=NODE_CLASS_MAPPINGS)
    path = farm.export_openjd(job, tmp_path / "job")
    res = subprocess.run([OPENJD, "run", str(path), "--step", "render"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "openjd_progress: 100" in res.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "edit.1001.exr", "edit.1002.exr", "edit.1003.exr"]


def test_registry_validation_before_export(graphs):
    """With the node registry, a graph the runner would reject is never exported."""
    class LL_Fake:
        RETURN_TYPES, FUNCTION, OUTPUT_NODE = ("IMAGE",), "run", True

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"prompt": ("STRING", {}), "frames": ("STRING", {})}}

    class LL_FakeSave(LL_Fake):
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"image": ("IMAGE", {})}}

    registry = {"LL_Fake": LL_Fake, "LL_FakeSave": LL_FakeSave}
    farm.make_job(graphs[0], "1-4", 2, registry=registry)            # valid: no error
    # --set is read by the input's declared type, as the runner reads it: a STRING stays text
    farm.make_job(graphs[0], "1-4", 2, overrides={"1.prompt": "5"}, registry=registry)
    with pytest.raises(farm.FarmExportError, match=r"graph.json: node 1 \(LL_Fake\) input 'bogus'"):
        farm.make_job(graphs[0], "1-4", 2, overrides={"1.bogus": "5"}, registry=registry)
    with pytest.raises(farm.FarmExportError, match=r"train.json: node 7 .*unknown node class"):
        farm.make_job(graphs[0], "1-4", 2, train_graph=graphs[1], registry=registry)


ROOT = Path(__file__).resolve().parents[1]


def _readme_export_line() -> list[str]:
    """README's export-job line, as a user would paste it."""
    import shlex
    (line,) = [ln for ln in (ROOT / "README.md").read_text().splitlines()
               if ln.startswith(".venv/bin/python -m livelayers export-job")]
    return shlex.split(line)


def _in_fresh_clone(tmp_path, monkeypatch) -> Path:
    """A working directory like a fresh clone's: the examples there, nothing else."""
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_readme_export_line_writes_the_pair_job(tmp_path, monkeypatch, capsys):
    """README's farm line, verbatim: a train step once, then 4-frame render chunks
    over the toy clip's 16 frames; the template passes openjd's validation."""
    from livelayers.__main__ import main
    args = _readme_export_line()
    assert args[1:4] == ["-m", "livelayers", "export-job"] and "--train-graph" in args
    _in_fresh_clone(tmp_path, monkeypatch)
    assert main(args[3:]) == 0, capsys.readouterr().err
    out = Path(args[args.index("--out") + 1])
    template = yaml.safe_load((out / "template.yaml").read_text())
    steps = {s["name"]: s for s in template["steps"]}
    assert list(steps) == ["train", "render"]
    assert steps["render"]["dependencies"] == [{"dependsOn": "train"}]
    params = {p["name"]: p["default"] for p in template["parameterDefinitions"]}
    assert params["WorkflowFile"] == "atlas_render.json"
    assert params["TrainWorkflowFile"] == "atlas.json"
    # tasks run in OpenJD's session folder: the graphs' relative paths point
    # at the folder the job was exported from
    assert params["Root"] == str(tmp_path.resolve())
    for step in steps.values():
        args_ = step["script"]["actions"]["onRun"]["args"]
        assert args_[args_.index("--root") + 1] == "{{Param.Root}}"
    job = farm.validate_openjd(template, out)
    chunks = [parse_frames(c) for c in farm.openjd_chunks(job)]
    assert chunks == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]]
    assert len(list((ROOT / "examples/assets/toy_clip").glob("frame.*.png"))) == 16
    if HAVE_OPENJD:
        res = subprocess.run([OPENJD, "check", str(out / "template.yaml")],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0 and "passes validation" in res.stdout, res.stdout + res.stderr


def _refused(argv, tmp_path, capsys) -> str:
    from livelayers.__main__ import main
    assert main(argv + ["--format", "openjd", "--out", str(tmp_path / "job")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "job").exists()           # nothing written
    return err


def test_render_graph_that_trains_is_refused(tmp_path, monkeypatch, capsys):
    """The old README line: every chunk would retrain the atlas into one run folder."""
    _in_fresh_clone(tmp_path, monkeypatch)
    err = _refused(["export-job", "examples/atlas.json", "--frames", "1-16", "--chunk", "4"],
                   tmp_path, capsys)
    assert "node 3 (LL_AtlasDecompose) trains" in err and "4 render chunks" in err
    assert "--train-graph" in err and "docs/farm.md" in err
    # the render graph of a pair still may not train: the fix names the loader nodes
    err = _refused(["export-job", "examples/atlas.json", "--train-graph", "examples/atlas.json",
                    "--frames", "1-16", "--chunk", "4"], tmp_path, capsys)
    assert "node 3 (LL_AtlasDecompose) trains" in err and "LL_LoadAtlas" in err
    # a one-task job trains once: allowed
    from livelayers.__main__ import main
    assert main(["export-job", "examples/atlas.json", "--frames", "1-4", "--chunk", "4",
                 "--out", str(tmp_path / "one")]) == 0


def test_frame_range_beyond_the_plate_is_refused(tmp_path, monkeypatch, capsys):
    _in_fresh_clone(tmp_path, monkeypatch)
    err = _refused(["export-job", "examples/atlas_render.json", "--train-graph",
                    "examples/atlas.json", "--frames", "1-100", "--chunk", "10"], tmp_path, capsys)
    assert err.startswith("export-job: examples/atlas_render.json: node 2 (LL_LoadImage) "
                          "input 'frames': --frames 1-100: 84 of 100 frames")
    assert "frames 17-100" in err and "on disk: frames 1-16" in err
    # a sequence with no frame on disk yet may be the train step's: let through
    wf = json.loads((ROOT / "examples/atlas_render.json").read_text())
    wf["2"]["inputs"]["path"] = "out/train_writes/frame.####.png"
    (tmp_path / "later.json").write_text(json.dumps(wf))
    from livelayers.nodes import NODE_CLASS_MAPPINGS
    farm.make_job(tmp_path / "later.json", "1-100", 10, train_graph="examples/atlas.json",
                  registry=NODE_CLASS_MAPPINGS)


def test_run_root_resolves_the_graphs_relative_paths(tmp_path, monkeypatch, capsys):
    """`run --root DIR` from another working directory reads and writes where
    the graph's relative paths point from DIR (what a farm task does)."""
    from livelayers.__main__ import main
    project = tmp_path / "project"
    project.mkdir()
    (project / "examples").symlink_to(ROOT / "examples")
    graph = {"1": {"class_type": "LL_LoadImage",
                   "inputs": {"path": "examples/assets/toy_scene.png", "frames": "",
                              "colourspace": "auto", "layer": ""}},
             "2": {"class_type": "LL_SaveEXR",
                   "inputs": {"composite": ["1", 0], "plate": ["1", 2], "path": "out/still.####.exr",
                              "frames": ""}}}
    (project / "graph.json").write_text(json.dumps(graph))
    elsewhere = tmp_path / "session"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["run", str(project / "graph.json"), "--progress", "none"]) == 2  # not found here
    assert main(["run", str(project / "graph.json"), "--progress", "none", "--root", str(project)]) == 0
    assert (project / "out" / "still.0001.exr").is_file() and not (elsewhere / "out").exists()
    assert main(["run", str(project / "graph.json"), "--root", str(tmp_path / "nope")]) == 2
    assert "--root" in capsys.readouterr().err
