"""Wedges (livelayers.wedge): variations, folders, resume, contact sheet, farm export.

The wedge commands are read from docs/scripting.md's code blocks and run in a
folder holding `examples/` (linked), with only fewer training steps added
(`--set 3.steps=3`: what is tested is the plumbing, not the edit's quality).
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from livelayers.__main__ import main
from livelayers.wedge import Wedge, WedgeError

from doc_blocks import marked_block

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "text2live.json"
OPENJD = shutil.which("openjd") or str(Path(sys.executable).parent / "openjd")
HAVE_OPENJD = os.access(OPENJD, os.X_OK)
FAST = ["--set", "3.steps=3"]  # later --set wins over the docs' 3.steps=60
NAMES = ["prompt-blue_circle__seed-0", "prompt-blue_circle__seed-1",
         "prompt-green_circle__seed-0", "prompt-green_circle__seed-1"]


def doc_block(marker: str) -> str:
    return marked_block("docs/scripting.md", marker).text


def doc_commands(marker: str, root: Path) -> list[list[str]]:
    """The block's commands as argument lists ($ROOT and $(which python) expanded)."""
    return [shlex.split(line.replace("$(which python)", sys.executable).replace("$ROOT", str(root)))
            for line in marked_block("docs/scripting.md", marker).shell_lines()]


def livelayers(args: list[str], cwd: Path, extra: list[str] = ()) -> int:
    assert args[:3] == ["python", "-m", "livelayers"], args
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        return main(args[3:] + list(extra))


def workspace(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "examples").symlink_to(ROOT / "examples")
    return path


def wedge_of(args: list[str]) -> Wedge:
    """The Wedge a `wedge` command line makes (its graph, --set values in order, --vary, --out)."""
    from livelayers.graph import Graph
    graph = Graph.load(args[args.index("wedge") + 1])
    for i, a in enumerate(args):
        if a == "--set":
            graph.set_text(*args[i + 1].split("=", 1))
    return Wedge(graph, [args[i + 1] for i, a in enumerate(args) if a == "--vary"],
                 Path(args[args.index("--out") + 1]))


def layers(path: Path) -> dict[str, np.ndarray]:
    from livelayers.engine.io import read_exr_layers
    return read_exr_layers(path)


# ---------------------------------------------------------------- before any work

@pytest.mark.parametrize("vary, message", [
    ("3.seedx=0-1", "--vary 3.seedx: node 3 (LL_Text2LIVE) input 'seedx': is not an input"),
    ("3.steps=0|10", "input 'steps': value 0 is below the minimum 1"),
    ("9.seed=0-1", "--vary 9.seed: no node with id or title '9'"),
    ("3.seed", "--vary '3.seed' must look like NODE.input=VALUE|VALUE"),
    ("3.seed=0-x", "--vary 3.seed: '0-x' is not an integer or a range; allowed: 5, 0-3"),
    ("3.roi_text=red|red", "--vary 3.roi_text: the value 'red' is given twice"),
    ("3.prompt=c", "--vary 3.prompt: input 3.prompt is varied twice"),
    ("3.distance=cosine|manhattan", "value 'manhattan' is not one of ['spherical', 'cosine']"),
])
def test_bad_vary_is_one_error_line_before_any_work(tmp_path, capsys, vary, message):
    out = tmp_path / "wedge"
    assert main(["wedge", str(EXAMPLE), "--vary", "3.prompt=a|b", "--vary", vary,
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert "Traceback" not in err and not out.exists()


def test_variants_are_the_product_named_from_their_values(tmp_path):
    out = tmp_path / "w"
    w = Wedge(EXAMPLE, ["3.prompt=blue circle|green circle", "3.seed=0-3"], out)
    assert len(w.variants) == 8 and w.shape == (2, 4)
    assert [v.values for v in w.variants[:2]] == [{"3.prompt": "blue circle", "3.seed": 0},
                                                  {"3.prompt": "blue circle", "3.seed": 1}]
    first = w.variants[0]
    assert first.name == "prompt-blue_circle__seed-0" and first.dir == out / first.name
    # the variant's graph: its values set, its writes moved into its folder, the rest as given
    inputs = first.workflow["3"]["inputs"]
    assert inputs["prompt"] == "blue circle" and inputs["seed"] == 0
    assert inputs["run_dir"] == str(out / first.name / "run_3")
    assert first.workflow["4"]["inputs"]["path"] == str(out / first.name / "text2live.####.exr")
    assert first.workflow["1"] == json.loads(EXAMPLE.read_text())["1"]
    assert len({v.name for v in w.variants}) == 8
    assert w.variant(3) is w.variants[2] and w.variant(first.name) is first
    # JSON lists keep any text; names that collide once made safe get a hash
    w2 = Wedge(EXAMPLE, {"3.prompt": ["a/b", "a b", "x|y"], "3.steps": "5,10"}, out)
    names = [v.name for v in w2.variants]
    assert len(set(names)) == 6 and all(re.fullmatch(r"[A-Za-z0-9._+-]+", n) for n in names)
    assert re.fullmatch(r"prompt-a_b__steps-5-[0-9a-f]{6}", names[0])
    assert names[4] == "prompt-x_y__steps-5"
    with pytest.raises(WedgeError, match="at least one --vary"):
        Wedge(EXAMPLE, [], out)


# ---------------------------------------------------------------- running (the documented wedge)

@pytest.fixture(scope="module")
def documented_wedge(tmp_path_factory, one_thread):
    """docs/scripting.md's wedge command, run once: (workspace, Wedge, seconds)."""
    import time
    ws = workspace(tmp_path_factory.mktemp("wedge_doc"))
    (cmd,) = doc_commands("wedge", ws)
    started = time.time()
    assert livelayers(cmd, ws, FAST + ["--progress", "none"]) == 0
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ws)
        w = wedge_of(cmd + FAST)
    return ws, w, time.time() - started


@pytest.mark.slow
def test_wedge_of_2_prompts_x_2_seeds_writes_4_distinct_results(documented_wedge):
    ws, _, _ = documented_wedge
    out = ws / "out" / "wedge"
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == NAMES
    results = {n: layers(out / n / "text2live.0001.exr") for n in NAMES}
    for i, a in enumerate(NAMES):
        for b in NAMES[i + 1:]:  # another prompt or another seed: other pixels
            diff = np.abs(results[a]["composite"] - results[b]["composite"]).max()
            assert diff > 1e-3, (a, b, diff)
    manifest = json.loads((out / NAMES[2] / "variant.json").read_text())
    assert manifest["values"] == {"3.prompt": "green circle", "3.seed": 0}
    assert manifest["workflow"]["3"]["inputs"]["steps"] == 3
    assert not [p for p in out.rglob(".*")]  # no temp files left


@pytest.mark.slow
def test_a_repeated_variant_gives_the_same_pixels(documented_wedge, tmp_path):
    ws, _, _ = documented_wedge
    again = tmp_path / "again"
    assert livelayers(["python", "-m", "livelayers", "wedge", "examples/text2live.json",
                       "--vary", "3.prompt=blue circle", "--vary", "3.seed=1",
                       "--set", "3.resolution=64", "--out", str(again)], ws,
                      FAST + ["--progress", "none"]) == 0
    a = layers(ws / "out" / "wedge" / NAMES[1] / "text2live.0001.exr")
    b = layers(again / NAMES[1] / "text2live.0001.exr")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_the_sheet_tiles_are_the_results(documented_wedge):
    import OpenImageIO as oiio

    from livelayers.engine.io import read_exr_header
    from livelayers.wedge import _read_all_channels, display_rgb
    ws, w, _ = documented_wedge
    out = ws / "out" / "wedge"
    header = read_exr_header(out / "sheet.exr")
    tiles = json.loads(header["livelayers/wedge_tiles"])
    assert [t["name"] for t in tiles] == NAMES
    inp = oiio.ImageInput.open(str(out / "sheet.exr"))
    spec = inp.spec()
    sheet = np.asarray(inp.read_image(0, 0, 0, spec.nchannels, oiio.FLOAT)).reshape(
        spec.height, spec.width, spec.nchannels)
    inp.close()
    names = list(spec.channelnames)
    label = sheet[..., names.index("label.Y")]
    png = np.asarray(oiio.ImageBuf(str(out / "sheet.png")).get_pixels(oiio.FLOAT))
    assert png.shape[:2] == sheet.shape[:2]
    boxes = [t["box"] for t in tiles]
    # 2 rows (prompts) x 2 columns (seeds)
    assert boxes[0][:2] == [0, 0] and boxes[1][1] == 0 and boxes[2][0] == 0
    assert boxes[1][0] > 0 and boxes[2][1] > 0
    for tile in tiles:
        x, y, wd, ht = tile["box"]
        src = ws / tile["source"]  # as the graph names it: relative to where the wedge ran
        assert src == out / tile["name"] / "text2live.0001.exr"
        res, res_names, _, _ = _read_all_channels(str(src))
        for ch in names:  # every channel of the result, bit for bit
            if ch != "label.Y":
                np.testing.assert_array_equal(sheet[y:y + ht, x:x + wd, names.index(ch)],
                                              res[..., res_names.index(ch)], err_msg=ch)
        res = layers(src)
        assert label[y:y + ht, x:x + wd].max() == 0  # labels never cover pixels
        band = label[y + ht:y + ht + 30, x:x + wd]
        assert band.max() > 0.5 and (band > 0.5).mean() > 0.02  # the label is drawn under it
        # the PNG tile is the composite in sRGB, 8-bit
        comp = np.stack([res["composite"][..., i] for i in range(3)], axis=-1)
        expect = np.clip(display_rgb(comp, ["composite.R", "composite.G", "composite.B"],
                                     header["livelayers/colourspace"]), 0, 1)
        assert np.abs(png[y:y + ht, x:x + wd, :3] - expect).max() <= 1 / 255 + 1e-6
    assert tiles[3]["values"] == {"3.prompt": "green circle", "3.seed": 1}


@pytest.mark.slow
def test_documented_python_wedge_finds_the_command_line_one_complete(documented_wedge, capsys):
    ws, w, _ = documented_wedge
    code = doc_block("wedge-python").replace('g.set("3.steps", 60)', 'g.set("3.steps", 3)')
    out = ws / "out" / "wedge"
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/*.exr")}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ws)
        exec(compile(code, "docs/scripting.md", "exec"), {})
        assert all(w.is_complete(v) for v in w.variants)  # paths relative to the workspace
    printed = capsys.readouterr().out
    assert "0 4 (" in printed and printed.count("already complete, skipped") == 4, printed
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/*.exr")} == before


@pytest.mark.slow
def test_a_changed_graph_is_not_taken_for_a_finished_variant(documented_wedge):
    ws, w, _ = documented_wedge
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ws)
        other = Wedge(w.graph, {"3.prompt": ["blue circle", "green circle"], "3.seed": [0, 1]},
                      "out/wedge")  # as the command gave it (the graph's paths are provenance)
        assert all(other.is_complete(v) for v in other.variants)
        other.graph.set("3.lambda_l1", 0.02)  # same folders, another graph: not complete
        changed = Wedge(other.graph, {"3.prompt": ["blue circle"], "3.seed": [0]}, "out/wedge")
        assert changed.variants[0].dir == other.variants[0].dir
        assert not changed.is_complete(changed.variants[0])


@pytest.mark.slow
def test_documented_example_script_runs_a_3x2_wedge(tmp_path, one_thread):
    import importlib.util
    (cmd,) = doc_commands("wedge-example", tmp_path)
    assert cmd[:2] == ["python", "examples/wedge_text2live.py"]
    spec = importlib.util.spec_from_file_location("wedge_text2live", ROOT / cmd[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "out" / "wedge_text2live"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)  # no examples/ here: the script finds its plate itself
        assert module.main(cmd[2:] + ["--steps", "3"]) == 0
    assert len([p for p in out.glob("*/text2live.0001.exr")]) == 6
    import OpenImageIO as oiio
    spec = oiio.ImageBuf(str(out / "sheet.png")).spec()
    assert 2 * 128 <= spec.width < 3 * 128 and spec.height >= 3 * 128  # 3 rows x 2 columns


# ---------------------------------------------------------------- kill and resume

@pytest.mark.slow
def test_a_killed_wedge_resumes_without_redoing_finished_variants(tmp_path, one_thread):
    out = tmp_path / "w"
    args = ["wedge", str(EXAMPLE), "--vary", "3.prompt=blue circle|green circle", "--vary",
            "3.seed=0-1", "--set", "3.steps=12", "--set", "3.resolution=64", "--set",
            f"1.path={ROOT / 'examples' / 'assets' / 'toy_scene.png'}", "--out", str(out),
            "--progress", "none"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "livelayers", *args], cwd=tmp_path, env=env,
                            stderr=subprocess.PIPE, text=True)
    done = []
    for line in proc.stderr:  # kill -9 as soon as the first variant has finished
        if ": done in" in line:
            done.append(line.split()[4].rstrip(":"))
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL and done == [NAMES[0]]
    finished = {p: p.stat().st_mtime_ns for p in out.glob("*/*.exr")}
    assert [p.parent.name for p in finished] == done  # atomic writes: no half EXR of the next one
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        w = wedge_of(args)
        result = w.run()
    assert [v.name for v in result.skipped] == done
    assert [v.name for v in result.ran] == NAMES[1:]
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # not redone
    assert all(w.is_complete(v) for v in w.variants) and result.sheet[1].is_file()


# ---------------------------------------------------------------- farm

@pytest.mark.slow
@pytest.mark.skipif(not HAVE_OPENJD, reason="openjd-cli not installed")
def test_documented_openjd_wedge_passes_check_and_runs_one_task(tmp_path):
    import yaml
    ws = workspace(tmp_path / "ws")
    export, check, run, cue = doc_commands("wedge-farm", ws)
    assert livelayers(export, ws, FAST) == 0
    job = ws / "job" / "wedge"
    template = yaml.safe_load((job / "template.yaml").read_text())
    variants, sheet = template["steps"]
    assert variants["parameterSpace"]["taskParameterDefinitions"] == [
        {"name": "Variant", "type": "STRING", "range": NAMES}]
    assert sheet["dependencies"] == [{"dependsOn": "variants"}]
    assert "--sheet-only" in sheet["script"]["actions"]["onRun"]["args"]
    assert json.loads((job / "graph.json").read_text())["3"]["inputs"]["steps"] == 3

    res = subprocess.run([OPENJD] + check[1:], cwd=ws, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    res = subprocess.run([OPENJD] + run[1:], cwd=ws, capture_output=True, text=True, env=env,
                         timeout=300)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    assert "openjd_progress: 100" in res.stdout
    # the task ran exactly its variant, into the wedge folder, and it counts as complete
    out = ws / "out" / "wedge_farm"
    assert [p.parent.name for p in out.glob("*/text2live.0001.exr")] == [NAMES[0]]
    w = Wedge(job / "graph.json", [export[i + 1] for i, a in enumerate(export) if a == "--vary"],
              out)  # the bundle's graph holds the --set values
    assert [w.is_complete(v) for v in w.variants] == [True, False, False, False]

    assert livelayers(cue, ws, FAST) == 0
    xml = (ws / "job" / "wedge_cue" / "job.xml").read_text()
    spec = ET.fromstring(xml.split(">", 2)[2])
    layers_ = {layer.get("name"): layer for layer in spec.iter("layer")}
    assert set(layers_) == {"variants", "sheet"}
    assert layers_["variants"].findtext("range") == "1-4"
    assert layers_["variants"].findtext("chunk") == "1"
    assert "--variant #IFRAME#" in layers_["variants"].findtext("cmd")
    assert "--sheet-only" in layers_["sheet"].findtext("cmd")
    depends = [(d.get("type"), d.findtext("deplayer"), d.findtext("onlayer"))
               for d in spec.iter("depend")]
    assert depends == [("LAYER_ON_LAYER", "sheet", "variants")]  # the sheet waits for all


@pytest.mark.slow
def test_list_variant_and_sheet_only_on_the_documented_wedge(documented_wedge, capsys):
    ws, _, _ = documented_wedge
    (cmd,) = doc_commands("wedge", ws)
    out = ws / "out" / "wedge"
    assert livelayers(cmd, ws, FAST + ["--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed == [f"{i}\t{n}\tcomplete" for i, n in enumerate(NAMES, start=1)]
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/*.exr")}
    (out / "sheet.png").unlink()
    assert livelayers(cmd, ws, FAST + ["--sheet-only", "--progress", "none"]) == 0
    assert (out / "sheet.png").is_file()  # the sheet again, and no variant touched
    assert livelayers(cmd, ws, FAST + ["--variant", "2", "--force", "--progress", "none"]) == 0
    after = {p: p.stat().st_mtime_ns for p in out.glob("*/*.exr")}
    assert [p.parent.name for p in after if after[p] != before[p]] == [NAMES[1]]
    assert "variant 2/4" in capsys.readouterr().err
    # a wider wedge over the same folder: seeds 0-1 are found complete, seed 2 is missing
    wider = cmd[:cmd.index("3.seed=0-1")] + ["3.seed=0-2"] + cmd[cmd.index("3.seed=0-1") + 1:]
    assert livelayers(wider, ws, FAST + ["--sheet-only"]) == 0
    assert "2 variant(s) not complete yet" in capsys.readouterr().err
    from livelayers.engine.io import read_exr_header
    tiles = json.loads(read_exr_header(out / "sheet.exr")["livelayers/wedge_tiles"])
    assert [t["source"] is None for t in tiles] == [False, False, True, False, False, True]
    assert livelayers(cmd, ws, FAST + ["--sheet-only"]) == 0  # the 2 x 2 sheet back


@pytest.mark.slow
def test_readme_wedge_line_runs(documented_wedge, capsys):
    """README's "Using it" wedge line is the documented command (so: all four found complete)."""
    ws, _, _ = documented_wedge
    (line,) = [ln for ln in (ROOT / "README.md").read_text().splitlines()
               if ln.startswith(".venv/bin/python -m livelayers wedge")]
    args = ["python"] + shlex.split(line)[1:]
    assert args == doc_commands("wedge", ws)[0]
    assert livelayers(args, ws, FAST + ["--progress", "none"]) == 0
    assert capsys.readouterr().err.count("already complete, skipped") == 4
