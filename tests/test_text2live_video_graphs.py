"""The Text2LIVE video example graphs, run exactly as docs/video.md shows them:
the all-in-one graph, and the farm pair exported with `export-job` and run
under `openjd run`, chunk by chunk, whose frames must equal one render of all
frames.

The commands are read from docs/video.md's code blocks, so the page cannot
drift from what is tested. They run in a folder holding `examples/` (linked),
with only fewer training steps added (the decomposition's and the edit's: the
graphs' plumbing does not depend on how well they are trained) and
`--progress none`.
"""
from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from doc_blocks import marked_block

ROOT = Path(__file__).resolve().parents[1]
OPENJD = shutil.which("openjd") or str(Path(sys.executable).parent / "openjd")
HAVE_OPENJD = Path(OPENJD).exists()
N_FRAMES = 8
LAYERS = ("", "composite", "source", "alpha", "uv_fg", "uv_bg")
# fewer steps than the graphs' 250 / 100; node ids are the same in the one graph and the train graph
FAST = ["--set", "3.steps=30", "--set", "4.steps=3"]

pytestmark = pytest.mark.slow


def doc_commands(marker: str) -> list[str]:
    """The commands of the code block after ``<!-- marker -->`` in docs/video.md
    (line continuations joined, comments and VAR=... lines dropped)."""
    return marked_block("docs/video.md", marker).shell_lines()


def expand(line: str, root: Path, python: str = sys.executable) -> list[str]:
    """Shell-expand the docs' only variables: $ROOT (the folder) and $(which python)."""
    line = line.replace("$(which python)", python).replace("$ROOT", str(root))
    return shlex.split(line)


def logging_python(folder: Path) -> tuple[Path, Path]:
    """A stand-in for the workers' python that records its arguments, then runs
    this interpreter with them (so the real runner runs): (script, log file)."""
    script, log = folder / "python-logged", folder / "commands.log"
    script.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexec "{sys.executable}" "$@"\n')
    script.chmod(0o755)
    return script, log


def overrides(args: list[str]) -> dict[str, str]:
    """The ``--set ID.input=value`` pairs of a command."""
    return dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--set")


def run_livelayers(args: list[str], cwd: Path, extra: list[str]) -> None:
    from livelayers.__main__ import main
    assert args[:3] == ["python", "-m", "livelayers"], args
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        assert main(args[3:] + extra) == 0, args


def workspace(tmp_path: Path) -> Path:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    return tmp_path


def exr_frames(folder: Path, pattern: str = "edit.{:04d}.exr") -> dict[int, dict]:
    from livelayers.engine.io import read_exr_layers
    return {f: read_exr_layers(folder / pattern.format(f)) for f in range(1, N_FRAMES + 1)}


def test_documented_one_graph_writes_the_layered_exr_sequence(tmp_path):
    ws = workspace(tmp_path)
    (cmd,) = doc_commands("one-graph")
    run_livelayers(expand(cmd, ws), ws, FAST + ["--progress", "none"])
    out = ws / "out" / "video"
    frames = exr_frames(out)
    for f, layers in frames.items():
        assert set(LAYERS) <= set(layers), (f, sorted(layers))
        rgba, comp, src = (np.asarray(layers[k]) for k in ("", "composite", "source"))
        assert rgba.shape == (64, 96, 4)
        # the edit layer (premultiplied, linear: exr.md) over the source is the composite
        np.testing.assert_allclose(rgba[..., :3] + (1 - rgba[..., 3:]) * src[..., :3], comp[..., :3],
                                   atol=2e-3)
    assert (out / "toy.atlas.safetensors").is_file() and (out / "run" / "atlas_edit.png").is_file()


@pytest.mark.skipif(not HAVE_OPENJD, reason="openjd-cli not installed")
def test_documented_farm_pair_runs_chunk_by_chunk_like_one_render(tmp_path):
    import yaml

    from livelayers.engine import farm
    ws = workspace(tmp_path)
    export, openjd = doc_commands("farm-pair")
    python, log = logging_python(tmp_path)
    export_args = expand(export, ws, python=str(python))
    run_livelayers(export_args, ws, FAST)
    job = ws / "job" / "video"
    template = yaml.safe_load((job / "template.yaml").read_text())
    assert [s["name"] for s in template["steps"]] == ["train", "render"]
    assert template["steps"][1]["dependencies"] == [{"dependsOn": "train"}]
    assert farm.openjd_chunks(farm.validate_openjd(template, job)) == ["1-3", "4-6", "7-8"]

    args = expand(openjd, ws)
    assert args[0] == "openjd"
    res = subprocess.run([OPENJD] + args[1:], cwd=ws, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    # train ran once, first; then one render task per chunk, each with its own frames
    lines = log.read_text().splitlines()
    assert len(lines) == 4 and "train.json" in lines[0] and "--frames" not in lines[0], lines
    assert [ln.split("--frames ")[1].split()[0] for ln in lines[1:]] == ["1-3", "4-6", "7-8"], lines
    assert all("render.json" in ln for ln in lines[1:])
    out = ws / "out" / "video"
    assert (out / "run" / "atlas_edit.png").is_file()
    chunked = exr_frames(out)
    # the render graph names no prompt: LL_SaveEXR's edit_prompt / seed carry it into the headers
    from livelayers.engine.io.exr import read_exr_header
    header = read_exr_header(out / "edit.0004.exr")
    assert (header["livelayers/prompt"], header["livelayers/seed"]) == ("blue circle", 0)

    # one render of all frames from the same saved files, to another folder
    render_graph = set(json.loads((ROOT / "examples" / "text2live_video_render.json").read_text()))
    sets = {k: v for k, v in overrides(export_args).items() if k.split(".")[0] in render_graph}
    assert "16.path" in sets and "13.path" in sets      # the EXRs, the atlas edit the train step wrote
    sets["16.path"] = str(ws / "single" / "edit.####.exr")
    extra = [x for k, v in sets.items() for x in ("--set", f"{k}={v}")] + ["--progress", "none"]
    run_livelayers(["python", "-m", "livelayers", "run", "examples/text2live_video_render.json"], ws, extra)
    whole = exr_frames(ws / "single")
    exact = 0
    for f in range(1, N_FRAMES + 1):
        assert set(LAYERS) <= set(chunked[f])
        for name in LAYERS:
            a, b = np.asarray(chunked[f][name]), np.asarray(whole[f][name])
            assert a.shape == b.shape
            # colour layers are half floats: allow one half-precision step
            np.testing.assert_allclose(a, b, rtol=2 ** -10, atol=2 ** -24, err_msg=f"frame {f} {name!r}")
            exact += int(np.array_equal(a, b))
    print(f"chunked vs one render: {exact} of {N_FRAMES * len(LAYERS)} layers bit-identical")
